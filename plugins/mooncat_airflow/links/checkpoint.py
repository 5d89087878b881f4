"""Task-instance link to the checkpoint record on the Mooncat Checkpoints page."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlencode

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

#: Where the plugin mounts its FastAPI app inside the API server.
UI_URL_PREFIX = "/mooncat"


def checkpoint_page_url(namespace: str, key: str | None = None) -> str:
    """The page for a namespace (optionally scrolled to one key), relative to the API server's base URL."""
    from airflow.sdk import conf

    base = (conf.get("api", "base_url", fallback="") or "").rstrip("/")
    query = {"namespace": namespace} if key is None else {"namespace": namespace, "key": key}
    return f"{base}{UI_URL_PREFIX}/?{urlencode(query)}"


class CheckpointLink(BaseOperatorLink):
    """
    "Checkpoint" button on a task instance.

    Airflow 3 evaluates links in the worker when the task finishes and keeps the URL in XCom, so the
    namespace and key this try actually used (after templating and key rendering) are known here.
    """

    name = "Checkpoint"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        target = getattr(operator, "checkpoint_target", None)
        if not target:
            return ""
        namespace, key = target
        return checkpoint_page_url(namespace, key)
