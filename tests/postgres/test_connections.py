"""Connections the server ends: idle ones are replaced before use, and work killed midway is reported
whole or not at all, never half-applied."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from mooncat_checkpoint import AsyncCheckpointClient, CheckpointClient, LeaseLostError, Status
from mooncat_checkpoint.backends.postgres import PostgresUnavailableError
from pg_support import terminate_clients

NS = "conn"
KILL_ROUNDS = 15


def test_next_call_after_the_server_ended_idle_connections_just_works(
    client: CheckpointClient, admin: Any, schema: str
) -> None:
    first = client.claim(NS, "a")
    assert first.lease_token is not None
    assert terminate_clients(admin, schema) >= 1
    time.sleep(0.1)  # let the goodbye reach the client's sockets
    client.done(NS, "a", first.lease_token, result=1)  # no error: the dead connection is not used
    assert client.claim(NS, "a").kind == "done"
    assert terminate_clients(admin, schema) >= 1
    time.sleep(0.1)
    assert [r.key for r in client.list(NS)] == ["a"]


def test_async_client_reconnects_too(pg_url: str, admin: Any, schema: str) -> None:
    async def main() -> None:
        async with AsyncCheckpointClient(pg_url) as cp:
            got = await cp.claim(NS, "a")
            assert got.lease_token is not None
            assert terminate_clients(admin, schema) >= 1
            await asyncio.sleep(0.1)
            assert (await cp.done(NS, "a", got.lease_token)).status is Status.DONE
            assert (await cp.claim(NS, "a")).kind == "done"

    asyncio.run(main())


def test_work_survives_connections_killed_mid_run(pg_url: str, admin: Any, schema: str) -> None:
    keys = [f"k{i}" for i in range(300)]
    failures: list[BaseException] = []
    gate = threading.Barrier(2)
    stop = threading.Event()
    killed = [0]

    def killer() -> None:
        gate.wait(30)
        for _ in range(KILL_ROUNDS):  # bounded: the store comes back for good after these
            if stop.wait(0.15):
                return
            killed[0] += terminate_clients(admin, schema)

    def finish(cp: CheckpointClient, key: str) -> None:
        # What a worker with a retry policy does: a reported failure means "try again", and the
        # lease token decides whether the earlier attempt had in fact landed.
        while True:
            try:
                outcome = cp.claim(NS, key, lease_ms=300)
                if outcome.kind == "done":
                    return
                if outcome.kind == "busy":
                    time.sleep(0.05)
                    continue
                assert outcome.lease_token is not None
                cp.done(NS, key, outcome.lease_token, result=key)
                return
            except (PostgresUnavailableError, LeaseLostError) as exc:
                failures.append(exc)

    thread = threading.Thread(target=killer)
    with CheckpointClient(pg_url) as cp:
        cp.get(NS, "warm-up")
        thread.start()
        gate.wait(30)
        try:
            for key in keys:
                finish(cp, key)
        finally:
            stop.set()
            thread.join(30)
        records = cp.list(NS)
    assert killed[0] > 0
    assert sorted(r.key for r in records) == sorted(keys)
    assert {r.status for r in records} == {Status.DONE}
    assert all(r.result == r.key for r in records)
    # Reported failures name the store; a broken commit is never passed off as a success.
    assert all(
        isinstance(f, LeaseLostError) or "127.0.0.1" in str(f) for f in failures
    )
