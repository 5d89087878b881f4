"""The SQLite table as both languages fill it: the same rows, whichever side created the database."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from interop_cases import KEYS, NS, RESULTS
from interop_node import ts_run
from mooncat_checkpoint import CheckpointClient, Status, storage_segment

pytestmark = pytest.mark.interop

# Everything but what cannot agree between two runs: tokens and clock readings.
COMPARED = "namespace, storage_key, key, status, owner_run_id, result, result_ref, error, attempts"


def cases() -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = [(f"result {i}", result) for i, result in enumerate(RESULTS)]
    return out + [(key, {"key": key}) for key in KEYS] + [("no result", None)]


def rows(db: Path, where: str = "") -> dict[tuple[str, str], tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        found = conn.execute(
            f"SELECT {COMPARED}, typeof(lease_until), typeof(created_at), typeof(updated_at), "
            f"typeof(result) FROM checkpoints {where}"
        ).fetchall()
    return {(row[0], row[2]): row for row in found}


def journal_mode(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0])


def test_rows_written_by_python_equal_rows_written_by_ts(node_ready: Path, tmp_path: Path) -> None:
    ts_db, py_db = tmp_path / "ts.db", tmp_path / "py.db"
    ops: list[dict[str, Any]] = []
    for key, result in cases():
        ops.append({"op": "claim", "ns": NS, "key": key, "ownerRunId": "run"})
        done: dict[str, Any] = {"op": "done", "ns": NS, "key": key, "leaseToken": {"from": len(ops) - 1}}
        if result is not None:
            done["result"] = result
        ops.append(done)
        ops.append({"op": "claim", "ns": "claimed", "key": key, "ownerRunId": "run"})
    ts_run(f"sqlite://{ts_db}", ops)

    with CheckpointClient(f"sqlite://{py_db}") as py:
        for key, result in cases():
            token = py.claim(NS, key, owner_run_id="run").lease_token
            assert token is not None
            py.done(NS, key, token, result=result)
            py.claim("claimed", key, owner_run_id="run")

    ours, theirs = rows(py_db), rows(ts_db)
    assert len(ours) == 2 * len(cases())
    assert ours == theirs
    # Compact JSON text like TS, SQL NULL where there is no result (and for every claim).
    no_result = ours[NS, "no result"]
    assert no_result[5] is None and no_result[-1] == "null"
    assert all(row[5] is None for (ns, _), row in ours.items() if ns == "claimed")
    with sqlite3.connect(py_db) as conn:
        text = conn.execute(
            "SELECT result FROM checkpoints WHERE namespace=? AND storage_key=?", (NS, storage_segment("result 0"))
        ).fetchone()[0]
    assert text == '{"n":1,"s":"é","nested":{"list":[1,"2",null,true,false],"empty":{},"none":[]}}'
    assert journal_mode(py_db) == journal_mode(ts_db) == "wal"


def test_each_side_opens_a_database_the_other_created(node_ready: Path, tmp_path: Path) -> None:
    created_by_ts, created_by_py = tmp_path / "by-ts.db", tmp_path / "by-py.db"
    ts_run(f"sqlite://{created_by_ts}", [
        {"op": "claim", "ns": NS, "key": "from ts"},
        {"op": "done", "ns": NS, "key": "from ts", "leaseToken": {"from": 0}, "result": [1, "ü"]},
        # An explicit null result: TS stores the text 'null', which must read back as no result.
        {"op": "claim", "ns": NS, "key": "null from ts"},
        {"op": "done", "ns": NS, "key": "null from ts", "leaseToken": {"from": 2}, "result": None},
    ])
    with CheckpointClient(f"sqlite://{created_by_ts}") as py:
        assert [(r.key, r.result) for r in py.list(NS)] in (
            [("from ts", [1, "ü"]), ("null from ts", None)], [("null from ts", None), ("from ts", [1, "ü"])]
        )
        claim = py.claim(NS, "null from ts")
        assert claim.kind == "done" and claim.checkpoint.result is None

    with CheckpointClient(f"sqlite://{created_by_py}") as py:
        token = py.claim(NS, "from py", owner_run_id="py").lease_token
        assert token is not None
        py.done(NS, "from py", token, result={"ok": True})
    got, claim_ts, listed = ts_run(f"sqlite://{created_by_py}", [
        {"op": "get", "ns": NS, "key": "from py"},
        {"op": "claim", "ns": NS, "key": "from py"},
        {"op": "list", "ns": NS},
    ])
    assert got["result"] == {"ok": True} and got["ownerRunId"] == "py"
    assert claim_ts["kind"] == "done" and listed == [got]
    with sqlite3.connect(created_by_py) as conn:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    assert tables == ["checkpoints"]


def test_columns_we_do_not_know_survive_python_writes(node_ready: Path, tmp_path: Path) -> None:
    """A newer writer may add a column; rewriting a row must not clear it."""
    db = tmp_path / "store.db"
    claims = ts_run(f"sqlite://{db}", [{"op": "claim", "ns": NS, "key": k} for k in ("touched", "finished")])
    with sqlite3.connect(db) as conn:
        conn.execute("ALTER TABLE checkpoints ADD COLUMN note TEXT")
        conn.execute("UPDATE checkpoints SET note = 'kept: ' || key")
    with CheckpointClient(f"sqlite://{db}") as py:
        assert py.touch(NS, "touched", claims[0]["leaseToken"]) is not None
        assert py.done(NS, "finished", claims[1]["leaseToken"], result=1).status is Status.DONE
    with sqlite3.connect(db) as conn:
        notes = dict(conn.execute("SELECT key, note FROM checkpoints").fetchall())
    assert notes == {"touched": "kept: touched", "finished": "kept: finished"}
