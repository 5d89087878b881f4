"""FastAPI app behind the Mooncat Checkpoints page; mounted by the plugin inside Airflow's API server."""

from __future__ import annotations

import html
import json
import time
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.base_auth_manager import ResourceMethod
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import Depends, FastAPI, Form, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse

from mooncat_airflow.hooks.checkpoint import CheckpointHook
from mooncat_airflow.links.checkpoint import UI_URL_PREFIX

#: Resource name handed to the auth manager; deployments grant access to the page under this name.
RESOURCE_NAME = "Mooncat Checkpoints"
_PREVIEW_CHARS = 160


def _authorize(method: ResourceMethod, user: BaseUser) -> None:
    allowed = get_auth_manager().is_authorized_custom_view(method=method, resource_name=RESOURCE_NAME, user=user)
    if not allowed:
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail="Forbidden")


def can_read(user: GetUserDep) -> BaseUser:
    """Authenticated by Airflow (bearer token or the UI's session cookie) and allowed to view the page."""
    _authorize("GET", user)
    return user


def can_reset(request: Request, user: GetUserDep) -> BaseUser:
    """Allowed to reset, and not a cross-site form post riding on the session cookie."""
    _authorize("DELETE", user)
    # A reset makes finished work run again, as clearing a task instance does, so it also takes the right
    # to change task instances. Some auth managers (the simple one among them) grant every method of a
    # custom view to anyone who may see it.
    if not get_auth_manager().is_authorized_dag(method="PUT", access_entity=DagAccessEntity.TASK_INSTANCE, user=user):
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail="Forbidden")
    if not request.headers.get("authorization"):
        source = request.headers.get("origin") or request.headers.get("referer")
        if not source or urlsplit(source).netloc != request.url.netloc:
            raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail="Cross-site request refused")
    return user


ReaderDep = Annotated[BaseUser, Depends(can_read)]
ResetterDep = Annotated[BaseUser, Depends(can_reset)]


def _status(record: Any) -> str:
    return str(getattr(record.status, "value", record.status))


def _span(start_ms: int | None, end_ms: int) -> str:
    """A short human duration from start to end (epoch milliseconds)."""
    if not start_ms:
        return ""
    seconds = max(0, (end_ms - start_ms) // 1000)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _preview(record: Any, now_ms: int) -> str:
    if _status(record) == "claimed":
        if record.lease_until is None or record.lease_until <= now_ms:
            return "lease expired: the next claim takes it over"
        return f"working; lease ends in {_span(now_ms, record.lease_until)}"
    if record.result_ref:
        return f"ref: {record.result_ref}"
    if record.result is None:
        return record.error or ""
    text = json.dumps(record.result, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= _PREVIEW_CHARS else text[: _PREVIEW_CHARS - 1] + "…"


def _row(record: Any, now_ms: int) -> dict[str, Any]:
    return {
        "key": record.key,
        "status": _status(record),
        "owner": record.owner_run_id,
        "attempts": record.attempts,
        "age": _span(record.updated_at, now_ms),
        "lease_until": record.lease_until,
        "updated_at": record.updated_at,
        "preview": _preview(record, now_ms),
    }


def _rows(namespace: str, status_filter: str | None) -> list[dict[str, Any]]:
    hook = CheckpointHook()
    try:
        records = hook.get_conn().list(namespace, status_filter or None)
    finally:
        hook.close()
    now_ms = int(time.time() * 1000)
    return [_row(r, now_ms) for r in sorted(records, key=lambda r: r.key)]


def _default_namespace() -> str:
    try:
        return CheckpointHook().default_namespace or ""
    except Exception:  # an unreadable connection must not take the page down
        return ""


_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1f2328}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border-bottom:1px solid #d0d7de;padding:.35rem .5rem;text-align:left;vertical-align:top}
tr.hl{background:#fff8c5} .st-done{color:#1a7f37} .st-failed{color:#cf222e} .st-claimed{color:#9a6700}
code{font-size:.85rem;word-break:break-all} form.inline{display:inline}
"""


def _page(namespace: str, status_filter: str | None, highlight: str | None, rows: list[dict[str, Any]]) -> str:
    esc = html.escape
    body: list[str] = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{RESOURCE_NAME}</title>",
        f"<style>{_STYLE}</style></head><body><h1>{RESOURCE_NAME}</h1>",
        f"<form method='get' action='{UI_URL_PREFIX}/'>",
        f"<label>Namespace <input name='namespace' value='{esc(namespace)}' pattern='[A-Za-z0-9_-]+'></label> ",
        "<label>Status <select name='status'>",
    ]
    for option in ("", "claimed", "done", "failed"):
        selected = " selected" if option == (status_filter or "") else ""
        body.append(f"<option value='{option}'{selected}>{option or 'any'}</option>")
    body.append("</select></label> <button>Show</button></form>")
    if namespace:
        body.append(f"<p>{len(rows)} record(s) in <b>{esc(namespace)}</b></p>")
        body.append(
            "<table><thead><tr><th>Key</th><th>Status</th><th>Owner</th><th>Attempts</th>"
            "<th>Age</th><th>Result</th><th></th></tr></thead><tbody>"
        )
        for row in rows:
            css = " class='hl'" if highlight is not None and row["key"] == highlight else ""
            body.append(
                f"<tr{css}><td><code>{esc(row['key'])}</code></td>"
                f"<td class='st-{esc(row['status'])}'>{esc(row['status'])}</td>"
                f"<td><code>{esc(row['owner'] or '')}</code></td><td>{row['attempts']}</td>"
                f"<td>{esc(row['age'])}</td><td><code>{esc(row['preview'])}</code></td>"
                f"<td><form class='inline' method='post' action='{UI_URL_PREFIX}/reset' "
                f"onsubmit=\"return confirm('Reset this checkpoint? The work will run again.')\">"
                f"<input type='hidden' name='namespace' value='{esc(namespace)}'>"
                f"<input type='hidden' name='key' value='{esc(row['key'])}'>"
                "<button>Reset</button></form></td></tr>"
            )
        body.append("</tbody></table>")
    else:
        body.append("<p>Choose a namespace.</p>")
    body.append("</body></html>")
    return "".join(body)


def _check_namespace(namespace: str) -> None:
    if not namespace.replace("-", "").replace("_", "").isalnum() or not namespace.isascii():
        raise HTTPException(status_code=status.HTTP_400_BAD_REQUEST, detail="Invalid namespace")


def create_app() -> FastAPI:
    """Create the app; routes are plain ``def`` so store I/O runs in the thread pool, off the event loop."""
    app = FastAPI(title=RESOURCE_NAME, docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/", response_class=HTMLResponse)
    def page(
        user: ReaderDep,
        namespace: Annotated[str | None, Query()] = None,
        status_filter: Annotated[str | None, Query(alias="status")] = None,
        key: Annotated[str | None, Query()] = None,
    ) -> HTMLResponse:
        chosen = namespace if namespace is not None else _default_namespace()
        rows: list[dict[str, Any]] = []
        if chosen:
            _check_namespace(chosen)
            rows = _rows(chosen, status_filter)
        return HTMLResponse(_page(chosen, status_filter, key, rows))

    @app.get("/api/checkpoints")
    def list_checkpoints(
        user: ReaderDep,
        namespace: Annotated[str, Query()],
        status_filter: Annotated[str | None, Query(alias="status")] = None,
    ) -> dict[str, Any]:
        _check_namespace(namespace)
        return {"namespace": namespace, "checkpoints": _rows(namespace, status_filter)}

    @app.post("/reset")
    def reset(
        request: Request,
        user: ResetterDep,
        namespace: Annotated[str, Form()],
        key: Annotated[str, Form()],
    ) -> RedirectResponse:
        _check_namespace(namespace)
        hook = CheckpointHook()
        try:
            removed = hook.get_conn().reset(namespace, key)
        finally:
            hook.close()
        query = urlencode({"namespace": namespace, "reset": key if removed else ""})
        return RedirectResponse(f"{UI_URL_PREFIX}/?{query}", status_code=status.HTTP_303_SEE_OTHER)

    return app
