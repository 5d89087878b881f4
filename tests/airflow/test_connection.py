"""Every field of a ``mooncat`` connection is checked: the Test button, test_connection and the tasks
that use the connection refuse a bad one with a message that names the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mc_basic
import pytest
from conftest import STORE_URL
from support import calls, run_dag, ti_states


def _set_connection(monkeypatch: Any, conn_id: str, **fields: Any) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "mooncat", **fields}))


# (extra or other fields, text the refusal must contain: the library's own message where it has one)
BAD_CONNECTIONS: list[tuple[str, dict[str, Any], str]] = [
    ("slash-in-namespace", {"extra": {"url": STORE_URL, "namespace": "a/b"}}, "may contain only letters, digits"),
    ("empty-namespace", {"extra": {"url": STORE_URL, "namespace": ""}}, "namespace must be a non-empty string"),
    ("number-namespace", {"extra": {"url": STORE_URL, "namespace": 7}}, "namespace must be a non-empty string"),
    ("typo-namespace", {"extra": {"url": STORE_URL, "namepsace": "x"}}, "'namepsace' (did you mean 'namespace'?)"),
    ("typo-durability", {"extra": {"url": STORE_URL, "durabilty": "fast"}}, "'durabilty'"),
    ("bad-durability", {"extra": {"url": STORE_URL, "durability": "slow"}}, "'full' or 'fast', got 'slow'"),
    ("empty-url", {"extra": {"url": ""}}, "store URL must be a non-empty string"),
    ("bad-scheme", {"extra": {"url": "nope://x"}}, "unsupported store URL 'nope://x'"),
    ("host-not-a-url", {"host": "db.example.com", "extra": {"url": STORE_URL}}, "host"),
    ("login-unused", {"login": "someone", "extra": {"url": STORE_URL}}, "login"),
    ("two-stores", {"host": "sqlite:///elsewhere.db", "extra": {"url": STORE_URL}}, "different stores"),
]


@pytest.mark.parametrize(("name", "fields", "expected"), BAD_CONNECTIONS, ids=[c[0] for c in BAD_CONNECTIONS])
def test_bad_connection_fails_test_connection_and_the_hook(
    monkeypatch: Any, name: str, fields: dict[str, Any], expected: str
) -> None:
    from mooncat_airflow import CheckpointHook
    from mooncat_airflow.hooks.checkpoint import InvalidConnectionError

    _set_connection(monkeypatch, "mooncat_bad", **fields)
    ok, message = CheckpointHook(mooncat_conn_id="mooncat_bad").test_connection()
    assert not ok
    assert expected in message
    assert "mooncat_bad" in message

    hook = CheckpointHook(mooncat_conn_id="mooncat_bad")
    with pytest.raises(InvalidConnectionError, match="mooncat_bad"):
        hook.resolve_namespace("explicit-ns")
    with pytest.raises(InvalidConnectionError):
        hook.get_shared_conn()


def test_extra_that_is_not_json_is_reported(monkeypatch: Any) -> None:
    from mooncat_airflow import CheckpointHook

    monkeypatch.setenv("AIRFLOW_CONN_MOONCAT_BAD", json.dumps({"conn_type": "mooncat", "extra": "{url: sqlite"}))
    ok, message = CheckpointHook(mooncat_conn_id="mooncat_bad").test_connection()
    assert not ok and "extra is not valid JSON" in message


def test_namespace_too_long_for_the_file_store_fails_test_connection(monkeypatch: Any, tmp_path: Path) -> None:
    """The length limit belongs to the store, so the store itself is asked, with the namespace in use."""
    from mooncat_airflow import CheckpointHook

    _set_connection(monkeypatch, "mooncat_long", extra={"url": f"file://{tmp_path / 'files'}", "namespace": "n" * 300})
    ok, message = CheckpointHook(mooncat_conn_id="mooncat_long").test_connection()
    assert not ok
    assert "file store keeps namespaces as folder names" in message


def test_good_connection_reports_its_store_and_namespace(monkeypatch: Any) -> None:
    from mooncat_airflow import CheckpointHook

    _set_connection(monkeypatch, "mooncat_good", extra={"url": STORE_URL, "namespace": "good-ns", "durability": None})
    ok, message = CheckpointHook(mooncat_conn_id="mooncat_good").test_connection()
    assert ok, message
    assert STORE_URL in message and "'good-ns'" in message
    # The spelling older Airflow forms stored is still read.
    _set_connection(monkeypatch, "mooncat_legacy", extra={"extra__mooncat__url": STORE_URL})
    legacy = CheckpointHook(mooncat_conn_id="mooncat_legacy")
    assert legacy.url == STORE_URL and legacy.default_namespace is None and legacy.durability == "full"


def test_task_using_a_connection_with_a_typo_fails_and_writes_nothing(
    monkeypatch: Any, namespace: str, marker: Path, client: Any, capfd: Any, caplog: Any
) -> None:
    # The task names its namespace, so before the check the typo went unnoticed and the work ran.
    _set_connection(monkeypatch, "mooncat_typo", extra={"url": STORE_URL, "durabilty": "fast"})
    run = run_dag(mc_basic.mc_typo_conn, {"ns": namespace, "marker": str(marker)})
    assert ti_states(run)[("work", -1)] == "failed"
    assert calls(marker) == []
    assert client.list(namespace) == []
    out, err = capfd.readouterr()
    assert "unknown key(s) in extra: 'durabilty'" in out + err + caplog.text
