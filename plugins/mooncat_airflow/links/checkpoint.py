"""Task-instance link to the checkpoint record on the Mooncat Checkpoints page."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

#: Where the plugin mounts its FastAPI app inside the API server.
UI_URL_PREFIX = "/mooncat"

# The rendered template fields holding the (namespace, key) a task instance worked on: checkpointed
# operators resolve both while their templates are rendered, so what Airflow stores is the final value.
_TARGET_FIELDS = (("checkpoint_namespace", "checkpoint_key"), ("namespace", "key"))


def checkpoint_page_url(namespace: str, key: str | None = None) -> str:
    """The page for a namespace (optionally scrolled to one key), relative to the API server's base URL."""
    from airflow.sdk import conf

    base = (conf.get("api", "base_url", fallback="") or "").rstrip("/")
    query = {"namespace": namespace} if key is None else {"namespace": namespace, "key": key}
    return f"{base}{UI_URL_PREFIX}/?{urlencode(query)}"


def _rendered_fields(ti_key: TaskInstanceKey) -> dict[str, Any] | None:
    from airflow.models.renderedtifields import RenderedTaskInstanceFields

    fields = RenderedTaskInstanceFields.get_templated_fields(ti_key)
    return fields if isinstance(fields, dict) else None


class CheckpointLink(BaseOperatorLink):
    """
    "Checkpoint" button on a task instance.

    Airflow writes every link an operator class declares as one more XCom when the task ends. The
    provider's own operators (``CheckpointOperator``, ``@task.mooncat``, ``CheckpointSensor``) therefore
    declare none: the plugin registers this link for them, and the API server builds the URL from the
    rendered template fields Airflow stores for every task instance anyway. Operators made with
    ``checkpointed()`` or the mixin are classes the API server never imports, so they declare the link and
    it is evaluated in the worker from the target the try used (one XCom per task instance).
    """

    name = "Checkpoint"

    @property
    def operators(self) -> list[type[BaseOperator]]:  # type: ignore[override]
        # Read only by the API server when it loads serialized DAGs; importing lazily keeps the plugin
        # cheap for the scheduler and workers, which import every plugin too.
        from mooncat_airflow.decorators.checkpoint import _CheckpointDecoratedOperator
        from mooncat_airflow.operators.checkpoint import CheckpointOperator
        from mooncat_airflow.sensors.checkpoint import CheckpointSensor

        return [CheckpointOperator, _CheckpointDecoratedOperator, CheckpointSensor]

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        target = getattr(operator, "checkpoint_target", None)
        if target:
            namespace, key = target
            return checkpoint_page_url(namespace, key)
        if not str(getattr(operator, "_task_module", "") or "").startswith("mooncat_airflow."):
            return ""
        fields = _rendered_fields(ti_key)
        if fields is None:
            # Airflow keeps rendered fields for the latest runs only ([core] max_num_rendered_ti_fields_per_task).
            return ""
        for namespace_field, key_field in _TARGET_FIELDS:
            namespace, key = fields.get(namespace_field), fields.get(key_field)
            if isinstance(namespace, str) and namespace and isinstance(key, str) and key:
                return checkpoint_page_url(namespace, key)
        return ""
