"""Async wait for a checkpoint key, run by the triggerer instead of holding a worker slot."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

#: Event statuses. ``done`` and ``failed`` describe the record; ``free`` means nobody holds a live
#: lease any more (the record vanished or its lease expired), which lets a waiting operator claim.
STATUS_DONE = "done"
STATUS_FAILED = "failed"
STATUS_FREE = "free"


def _epoch_ms() -> int:
    return int(time.time() * 1000)


class CheckpointTrigger(BaseTrigger):
    """
    Poll a checkpoint key until it is finished, whoever finishes it.

    All I/O goes through the library's async client, so the triggerer's event loop never blocks.

    :param namespace: checkpoint namespace.
    :param key: checkpoint key.
    :param mooncat_conn_id: connection naming the store; missing falls back to the library's resolution.
    :param poll_interval: seconds between reads.
    :param stop_when_free: also fire when no live lease is left (record gone or lease expired). An
        operator waiting to claim wants this; a sensor waiting for a result does not.
    """

    def __init__(
        self,
        *,
        namespace: str,
        key: str,
        mooncat_conn_id: str | None = "mooncat_default",
        poll_interval: float = 5.0,
        stop_when_free: bool = False,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.namespace = namespace
        self.key = key
        self.mooncat_conn_id = mooncat_conn_id
        self.poll_interval = float(poll_interval)
        self.stop_when_free = bool(stop_when_free)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        # Only JSON values: the triggerer may be another process or machine that re-creates us.
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "namespace": self.namespace,
                "key": self.key,
                "mooncat_conn_id": self.mooncat_conn_id,
                "poll_interval": self.poll_interval,
                "stop_when_free": self.stop_when_free,
            },
        )

    def _event(self, status: str, **fields: Any) -> TriggerEvent:
        payload = {"status": status, "namespace": self.namespace, "key": self.key, **fields}
        return TriggerEvent(payload)  # type: ignore[no-untyped-call]

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from mooncat_airflow.hooks.checkpoint import CheckpointHook

        hook = CheckpointHook(mooncat_conn_id=self.mooncat_conn_id)
        client = await hook.aget_conn()
        async with client:
            while True:
                record = await client.get(self.namespace, self.key)
                status = None if record is None else str(getattr(record.status, "value", record.status))
                if record is not None and status == STATUS_DONE:
                    yield self._event(
                        STATUS_DONE,
                        result=record.result,
                        result_ref=record.result_ref,
                        owner_run_id=record.owner_run_id,
                    )
                    return
                if record is not None and status == STATUS_FAILED:
                    yield self._event(STATUS_FAILED, error=record.error, owner_run_id=record.owner_run_id)
                    return
                if self.stop_when_free:
                    lease_until = None if record is None else record.lease_until
                    live = status == "claimed" and lease_until is not None and lease_until > _epoch_ms()
                    if not live:
                        yield self._event(STATUS_FREE)
                        return
                self.log.debug(
                    "Checkpoint %s/%s is %s; next look in %ss",
                    self.namespace,
                    self.key,
                    status or "absent",
                    self.poll_interval,
                )
                await asyncio.sleep(self.poll_interval)
