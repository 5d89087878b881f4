"""The Mooncat Checkpoints page: an Airflow 3 plugin serving a small FastAPI app in the API server."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from airflow.sdk.plugins_manager import AirflowPlugin

from mooncat_airflow.links.checkpoint import UI_URL_PREFIX, CheckpointLink

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class _LazyASGIApp:
    """
    Build the FastAPI app on its first request.

    Workers and the scheduler import every plugin too, and they have no use for the web app or for
    the API server's security module it pulls in; only the API server ever calls this.
    """

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._app: Any = None

    @property
    def app(self) -> Any:
        if self._app is None:
            self._app = self._factory()
        return self._app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def _build_app() -> Any:
    from mooncat_airflow.plugins.app import create_app

    return create_app()


checkpoints_app = _LazyASGIApp(_build_app)


class MooncatCheckpointPlugin(AirflowPlugin):
    """
    Registers the checkpoints page, its menu entry, and the "Checkpoint" link of the provider's operators.

    The API server builds that link from the rendered template fields it already stores, so the
    operators need not declare it (which would cost one XCom write per task instance).
    """

    name = "mooncat_checkpoint"
    fastapi_apps = [  # noqa: RUF012  (AirflowPlugin declares these as class-level lists)
        {"app": checkpoints_app, "url_prefix": UI_URL_PREFIX, "name": "Mooncat Checkpoints"},
    ]
    operator_extra_links = [CheckpointLink()]  # noqa: RUF012
    external_views = [  # noqa: RUF012
        {
            "name": "Checkpoints",
            "href": f"{UI_URL_PREFIX}/",
            "destination": "nav",
            "category": "browse",
            "url_route": "mooncat-checkpoints",
        },
    ]
