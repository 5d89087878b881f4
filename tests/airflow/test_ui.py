"""The Mooncat Checkpoints page inside Airflow's own API server app, behind Airflow's auth."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import mc_basic
import pytest
from conftest import UI_PASSWORDS
from support import run_dag, xcom


@pytest.fixture(scope="module")
def api() -> Iterator[Any]:
    from airflow.api_fastapi.app import create_app, purge_cached_app
    from fastapi.testclient import TestClient

    purge_cached_app()
    app = create_app()
    with TestClient(app, base_url="http://localhost:8080") as test_client:
        yield test_client
    purge_cached_app()


def _token(api: Any, user: str) -> str:
    response = api.post("/auth/token", json={"username": user, "password": UI_PASSWORDS[user]})
    assert response.status_code == 201, response.text
    return str(response.json()["access_token"])


@pytest.fixture
def seeded(namespace: str, client: Any) -> str:
    for key, result in (("alpha", {"n": 1}), ("beta", "x" * 500)):
        claim = client.claim(namespace, key, owner_run_id=f"seed-{key}")
        client.done(namespace, key, claim.lease_token, result)
    claim = client.claim(namespace, "gamma", owner_run_id="seed-gamma")
    client.fail(namespace, "gamma", "boom", claim.lease_token)
    return namespace


def test_anonymous_requests_are_refused(api: Any, seeded: str, client: Any) -> None:
    page = api.get("/mooncat/", params={"namespace": seeded})
    assert page.status_code == 401
    assert "alpha" not in page.text
    assert api.get("/mooncat/api/checkpoints", params={"namespace": seeded}).status_code == 401
    reset = api.post("/mooncat/reset", data={"namespace": seeded, "key": "alpha"}, follow_redirects=False)
    assert reset.status_code == 401
    assert client.get(seeded, "alpha") is not None
    forged = api.get("/mooncat/", params={"namespace": seeded}, headers={"Authorization": "Bearer not-a-jwt"})
    assert forged.status_code in (401, 403)


def test_page_lists_each_key_with_status_owner_attempts_age_and_preview(api: Any, seeded: str) -> None:
    headers = {"Authorization": f"Bearer {_token(api, 'viewer')}"}
    page = api.get("/mooncat/", params={"namespace": seeded, "key": "alpha"}, headers=headers)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    for text in ("alpha", "beta", "gamma", "seed-alpha", "st-done", "st-failed", "boom", "{&quot;n&quot;:1}"):
        assert text in page.text
    assert "x" * 500 not in page.text  # previews are cut short

    data = api.get("/mooncat/api/checkpoints", params={"namespace": seeded}, headers=headers).json()
    rows = {row["key"]: row for row in data["checkpoints"]}
    assert rows["alpha"]["status"] == "done"
    assert rows["alpha"]["owner"] == "seed-alpha"
    assert rows["alpha"]["attempts"] == 1
    assert rows["alpha"]["age"].endswith("s")
    assert rows["gamma"]["status"] == "failed"

    assert api.get("/mooncat/", params={"namespace": "../etc"}, headers=headers).status_code == 400


def test_reset_action_deletes_the_record(api: Any, seeded: str, client: Any) -> None:
    headers = {"Authorization": f"Bearer {_token(api, 'admin')}"}
    response = api.post(
        "/mooncat/reset", data={"namespace": seeded, "key": "gamma"}, headers=headers, follow_redirects=False
    )
    assert response.status_code == 303
    assert parse_qs(urlsplit(response.headers["location"]).query)["namespace"] == [seeded]
    assert client.get(seeded, "gamma") is None
    assert client.get(seeded, "alpha") is not None


def test_cookie_session_reset_needs_a_same_origin_request(api: Any, seeded: str, client: Any) -> None:
    api.cookies.set("_token", _token(api, "admin"))
    try:
        cross = api.post(
            "/mooncat/reset",
            data={"namespace": seeded, "key": "alpha"},
            headers={"Origin": "http://evil.example"},
            follow_redirects=False,
        )
        assert cross.status_code == 403
        assert client.get(seeded, "alpha") is not None
        same = api.post(
            "/mooncat/reset",
            data={"namespace": seeded, "key": "alpha"},
            headers={"Origin": "http://localhost:8080"},
            follow_redirects=False,
        )
        assert same.status_code == 303
        assert client.get(seeded, "alpha") is None
    finally:
        api.cookies.clear()


def _links(api: Any, run: Any, task_id: str, map_index: int = -1) -> dict[str, Any]:
    """The task instance's extra links as the UI asks for them."""
    headers = {"Authorization": f"Bearer {_token(api, 'viewer')}"}
    response = api.get(
        f"/api/v2/dags/{run.dag_id}/dagRuns/{run.run_id}/taskInstances/{task_id}/links",
        params={"map_index": map_index},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    return dict(response.json()["extra_links"])


def _target_of(link: str) -> dict[str, list[str]]:
    parts = urlsplit(link)
    assert parts.path == "/mooncat/"
    return parse_qs(parts.query)


def test_task_instance_links_to_its_checkpoint_without_storing_anything(api: Any, namespace: str, marker: Path) -> None:
    run = run_dag(mc_basic.mc_basic, {"ns": namespace, "marker": str(marker)})
    links = _links(api, run, "work")
    assert _target_of(links["Checkpoint"]) == {"namespace": [namespace], "key": ["basic/one"]}
    # Built in the API server from the rendered fields: the task wrote no XCom for it.
    with pytest.raises(LookupError):
        xcom(run, "work", key="_link_CheckpointLink")


def test_mapped_task_instances_link_to_their_own_keys(api: Any, namespace: str, marker: Path) -> None:
    import mc_taskflow

    run = run_dag(mc_taskflow.mc_mapped(), {"ns": namespace, "marker": str(marker), "names": ["ada", "bob"]})
    assert str(run.state) == "success"
    for index, name in enumerate(["ada", "bob"]):
        link = _links(api, run, "shout", index)["Checkpoint"]
        assert _target_of(link) == {"namespace": [namespace], "key": [f"item/{name}"]}


def test_sensor_links_to_the_key_it_waited_for(api: Any, namespace: str, client: Any) -> None:
    import mc_sensor

    claim = client.claim(namespace, "ready", owner_run_id="writer")
    client.done(namespace, "ready", claim.lease_token, 1)
    run = run_dag(mc_sensor.mc_sensor, {"ns": namespace, "key": "ready"})
    assert _target_of(_links(api, run, "wait")["Checkpoint"]) == {"namespace": [namespace], "key": ["ready"]}


def test_wrapped_operator_links_to_its_checkpoint(api: Any, namespace: str, marker: Path) -> None:
    import mc_wrapped

    run = run_dag(mc_wrapped.mc_wrapped_deferring, {"ns": namespace, "marker": str(marker)})
    assert str(run.state) == "success"
    assert _target_of(_links(api, run, "job")["Checkpoint"]) == {"namespace": [namespace], "key": ["job/2024-01-02"]}


def test_other_operators_get_no_checkpoint_link(api: Any) -> None:
    import wait_for_ts_export

    # Only the provider's operators carry the link; a plain @task downstream of the sensor does not.
    dag = wait_for_ts_export.wait_for_ts_export()
    assert "Checkpoint" not in [link.name for link in dag.get_task("publish").operator_extra_links]
    from airflow.serialization.serialized_objects import DagSerialization

    serialized = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    assert "Checkpoint" in serialized.get_task("wait_for_export").extra_links
    assert "Checkpoint" not in serialized.get_task("publish").extra_links


def test_viewer_may_look_but_not_reset(api: Any, seeded: str, client: Any) -> None:
    headers = {"Authorization": f"Bearer {_token(api, 'viewer')}"}
    response = api.post(
        "/mooncat/reset", data={"namespace": seeded, "key": "alpha"}, headers=headers, follow_redirects=False
    )
    assert response.status_code == 403
    assert client.get(seeded, "alpha") is not None


def test_plugin_registers_the_app_and_a_menu_entry() -> None:
    from airflow import plugins_manager

    apps, _ = plugins_manager.get_fastapi_plugins()
    assert any(app["url_prefix"] == "/mooncat" for app in apps)
    plugin = next(p for p in plugins_manager._get_plugins()[0] if p.name == "mooncat_checkpoint")
    assert plugin.external_views[0]["href"] == "/mooncat/"


def test_connection_form_test_button_reaches_the_store(api: Any, tmp_path: Path) -> None:
    """What the connection form's Test button does: POST the unsaved connection to the API."""
    headers = {"Authorization": f"Bearer {_token(api, 'admin')}"}
    url = f"sqlite://{tmp_path / 'form.db'}"
    body = {"connection_id": "mooncat_form", "conn_type": "mooncat", "extra": json.dumps({"url": url})}
    response = api.post("/api/v2/connections/test", json=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["status"] is True
    assert url in response.json()["message"]

    bad = {"connection_id": "mooncat_form", "conn_type": "mooncat", "extra": json.dumps({"url": "nope://x"})}
    assert api.post("/api/v2/connections/test", json=bad, headers=headers).json()["status"] is False

    # A default namespace the library refuses, and a misspelt key, fail the button with the reason.
    for extra, reason in (
        ({"url": url, "namespace": "a/b"}, "may contain only letters, digits"),
        ({"url": url, "namepsace": "ns"}, "did you mean 'namespace'?"),
    ):
        body = {"connection_id": "mooncat_form", "conn_type": "mooncat", "extra": json.dumps(extra)}
        answer = api.post("/api/v2/connections/test", json=body, headers=headers).json()
        assert answer["status"] is False and reason in answer["message"], answer


def test_connection_type_and_form_fields_are_registered() -> None:
    from airflow.providers_manager import ProvidersManager
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    manager = ProvidersManager()
    assert manager.providers["mooncat-checkpoint"].data["package-name"] == "mooncat-checkpoint"
    hook = ProvidersManagerTaskRuntime().hooks["mooncat"]
    assert hook is not None and hook.hook_class_name == "mooncat_airflow.hooks.checkpoint.CheckpointHook"
    widgets = manager.connection_form_widgets
    assert {"extra__mooncat__url", "extra__mooncat__namespace"} <= set(widgets)
    assert "host" in manager.field_behaviours["mooncat"]["hidden_fields"]
