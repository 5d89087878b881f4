"""Reading commands refuse a PostgreSQL store that is not there, as they do a missing file or SQLite store,
and create nothing; `import` still creates it. Found with a read-only query before any backend opens."""

from __future__ import annotations

import contextlib
import io
import json
from typing import Any

import pytest
from mooncat_checkpoint import CheckpointClient, cli
from pg_server import store_url

READING = [
    ["list", "ns"], ["get", "ns", "k"], ["stats"], ["export"], ["doctor"], ["reset", "ns", "k"], ["gc"],
]


def _cli(*argv: str, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), _stdin(stdin):
        code = cli.main(list(argv))
    return code, out.getvalue(), err.getvalue()


@contextlib.contextmanager
def _stdin(text: str) -> Any:
    import sys

    saved = sys.stdin
    sys.stdin = io.StringIO(text)
    try:
        yield
    finally:
        sys.stdin = saved


def _schema_exists(admin: Any, schema: str) -> bool:
    return bool(admin.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchall())


@pytest.mark.parametrize("command", READING, ids=lambda c: c[0])
def test_a_reading_command_refuses_a_missing_schema_and_creates_nothing(
    command: list[str], schema: str, admin: Any
) -> None:
    url = store_url(schema)
    code, out, err = _cli(*command, "--url", url)
    assert code == 2 and out == ""
    assert err.startswith("mooncat-checkpoint: error: no checkpoint store at ") and err.count("\n") == 1
    assert f"schema {schema}" in err and "check --url" in err
    assert not _schema_exists(admin, schema)


def test_a_missing_table_in_an_existing_schema_is_refused_too(schema: str, admin: Any) -> None:
    with CheckpointClient(store_url(schema)) as cp:
        cp.claim("ns", "k")
    code, _, err = _cli("stats", "--url", store_url(schema, table="typo"))
    assert code == 2 and "table typo" in err
    tables = {t for (t,) in admin.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))}
    assert not any(t.startswith("typo") for t in tables)


def test_the_message_leaves_the_password_out(schema: str) -> None:
    url = store_url(schema).replace("postgres@", "postgres:hunter2@", 1)
    code, _, err = _cli("stats", "--url", url)
    assert code == 2 and "no checkpoint store" in err and "hunter2" not in err


def test_an_existing_store_is_read_and_import_creates_a_missing_one(schema: str, admin: Any) -> None:
    # A mixed-case table: the existence check must quote the name as the store does, or it finds nothing.
    url = store_url(schema, table="DoneJobs")
    line = json.dumps({"namespace": "ns", "key": "k", "status": "done", "result": 7, "attempts": 1,
                       "createdAt": 1, "updatedAt": 1})
    code, _, err = _cli("import", "--url", url, stdin=line + "\n")
    assert code == 0, err
    code, out, err = _cli("get", "ns", "k", "--url", url, "--json")
    assert code == 0, err
    assert json.loads(out)["result"] == 7
    assert admin.execute("SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}"."DoneJobs"',)).fetchone() == (True,)
