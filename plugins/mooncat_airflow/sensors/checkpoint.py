"""Wait until someone — an Airflow task, a Prefect flow, a TypeScript job — finishes a checkpoint key."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink, BaseSensorOperator, PokeReturnValue, conf
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from mooncat_airflow.hooks.checkpoint import CheckpointHook
from mooncat_airflow.operators.checkpoint import failed_record_message
from mooncat_airflow.triggers.checkpoint import STATUS_DONE, STATUS_FAILED, CheckpointTrigger

if TYPE_CHECKING:
    import jinja2
    from airflow.sdk import Context


class CheckpointSensor(BaseSensorOperator):
    """
    Succeed when a checkpoint key is ``done`` and return its stored result as the task's XCom.

    A ``failed`` record fails the sensor (skips it with ``soft_fail=True``). ``mode="poke"`` and
    ``mode="reschedule"`` wait in the worker; ``deferrable=True`` hands the wait to the triggerer.

    :param key: the checkpoint key (templated).
    :param namespace: the namespace (templated); default: the connection's namespace.
    :param mooncat_conn_id: connection naming the store.
    :param deferrable: wait on the triggerer.
    """

    template_fields: Sequence[str] = ("namespace", "key")
    # The plugin supplies the "Checkpoint" link from the rendered fields (see CheckpointLink); a link
    # declared here would be written as one more XCom at the end of every try.
    operator_extra_links: Collection[BaseOperatorLink] = ()
    ui_color = "#e8e3f7"

    def __init__(
        self,
        *,
        key: str,
        namespace: str | None = None,
        mooncat_conn_id: str | None = CheckpointHook.default_conn_name,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.key = key
        self.namespace = namespace
        self.mooncat_conn_id = mooncat_conn_id
        self.deferrable = deferrable
        self.checkpoint_target: tuple[str, str] | None = None

    def _target(self, hook: CheckpointHook) -> tuple[str, str]:
        if self.checkpoint_target is None:
            if not isinstance(self.key, str) or not self.key:
                raise ValueError(f"checkpoint key rendered to {self.key!r}; it must be a non-empty string")
            self.checkpoint_target = (hook.resolve_namespace(self.namespace), self.key)
        return self.checkpoint_target

    def _do_render_template_fields(
        self,
        parent: Any,
        template_fields: Iterable[str],
        context: Context,
        jinja_env: jinja2.Environment,
        seen_oids: set[int],
    ) -> None:
        super()._do_render_template_fields(parent, template_fields, context, jinja_env, seen_oids)
        if parent is self:
            # The connection's default namespace goes into the rendered fields Airflow stores, which
            # the "Checkpoint" link is built from.
            self.namespace, self.key = self._target(CheckpointHook(mooncat_conn_id=self.mooncat_conn_id))

    def poke(self, context: Context) -> PokeReturnValue:
        hook = CheckpointHook(mooncat_conn_id=self.mooncat_conn_id)
        namespace, key = self._target(hook)
        record = hook.get_shared_conn().get(namespace, key)
        status = None if record is None else str(getattr(record.status, "value", record.status))
        if record is not None and status == STATUS_DONE:
            self.log.info("Checkpoint %s/%s is done (by %s)", namespace, key, record.owner_run_id)
            return PokeReturnValue(is_done=True, xcom_value=record.result)
        if record is not None and status == STATUS_FAILED:
            # The sensor base turns AirflowFailException into a skip when soft_fail is set.
            raise AirflowFailException(failed_record_message(namespace, key, record.error, hook.get_shared_conn()))
        self.log.info("Checkpoint %s/%s is %s; waiting", namespace, key, status or "absent")
        return PokeReturnValue(is_done=False)

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        # Look once here: a key that is already done costs no trip through the triggerer.
        first = self.poke(context)
        if first.is_done:
            return first.xcom_value
        namespace, key = self.checkpoint_target or self._target(CheckpointHook(mooncat_conn_id=self.mooncat_conn_id))
        self.defer(
            trigger=CheckpointTrigger(
                namespace=namespace,
                key=key,
                mooncat_conn_id=self.mooncat_conn_id,
                poll_interval=self.poke_interval,
                stop_when_free=False,
            ),
            method_name="execute_complete",
            timeout=dt.timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        """Return the stored result the trigger found, or fail on a failed record."""
        namespace, key = event["namespace"], event["key"]
        self.checkpoint_target = (namespace, key)
        status = event.get("status")
        if status == STATUS_DONE:
            self.log.info("Checkpoint %s/%s is done (by %s)", namespace, key, event.get("owner_run_id"))
            return event.get("result")
        if status == STATUS_FAILED:
            store = CheckpointHook(mooncat_conn_id=self.mooncat_conn_id).get_shared_conn()
            raise AirflowFailException(failed_record_message(namespace, key, event.get("error"), store))
        raise AirflowException(f"Unexpected checkpoint trigger event: {event!r}")
