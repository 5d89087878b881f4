"""SQLite's one-statement paths (claim_once, finish_once, collect_expired) against the rules they stand for.

gc deletes a chunk of rows with one DELETE whose WHERE clause is partly SQL: these tests put rows of every
shape the table can hold (wrong types, misplaced keys, hashed keys, unreadable results) and check that it
deletes exactly the claims a record-by-record gc would, and leaves every other row as it was. `done`,
`fail` and `claim` must raise on an unreadable row and leave it untouched, as the machine's path does.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
from core_support import FakeClock, install_clock
from hypothesis import HealthCheck, given, settings
from mooncat_checkpoint import Checkpoint, CheckpointClient, CorruptRecordError, KeyConflictError, Status
from mooncat_checkpoint.backends import sqlite as sqlite_backend
from mooncat_checkpoint.keys import storage_segment
from mooncat_checkpoint.machine import lease_expired

NOW = 1_700_000_000_000
COLUMNS = sqlite_backend.COLUMNS.split(", ")
SAFE = 2**53


def _client(tmp_path: Path, name: str = "cp.db") -> tuple[CheckpointClient, Path]:
    db = tmp_path / name
    cp = CheckpointClient(f"sqlite://{db}", durability="fast")
    install_clock(cp, FakeClock(NOW))
    return cp, db


def _rows(db: Path) -> list[tuple[Any, ...]]:
    """Every row with each value's SQLite type, so a change of type shows too."""
    typed = ", ".join(f"{c}, typeof({c})" for c in COLUMNS)
    with sqlite3.connect(db) as conn:
        return sorted(conn.execute(f"SELECT {typed} FROM checkpoints"), key=repr)


def _insert(db: Path, rows: list[dict[str, Any]]) -> None:
    with sqlite3.connect(db) as conn:
        conn.executemany(
            f"INSERT OR IGNORE INTO checkpoints ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
            [tuple(row[c] for c in COLUMNS) for row in rows],
        )


# ---- gc ----

KEYS = ["a", "b-1.x", "k" * 128, "k" * 129, "with space", "x\n", ".", "..", "ключ", "", "A_b", "a*", "a]", "-"]
keys = st.sampled_from(KEYS)
lease_ends = st.sampled_from([None, NOW - 10_000, NOW - 501, NOW - 500, NOW - 499, NOW - 1, NOW, NOW + 1, -SAFE])
# Values of the wrong type or range for some column; a row gets up to two of them.
DAMAGE = {
    "key": [b"k", 5],
    "status": ["CLAIMED", 1, "paused"],
    "owner_run_id": [7, 1.5, b"\x00"],
    "lease_token": [None, 9, b"t"],
    "lease_until": [SAFE + 1, -SAFE - 1, float(NOW - 5), NOW - 0.5, "soon", b"\x01"],
    "result": ["{broken", "NaN", "1e400", 3],
    "result_ref": [7, b"\xff"],
    "error": [1.5, b"\x00"],
    "attempts": [SAFE + 1, 1.5, "many", None],
    "created_at": [-SAFE - 1, 2.5, "then", b"\x02"],
    "updated_at": [SAFE + 1, 0.5, "now"],
}


@st.composite
def table_rows(draw: st.DrawFn) -> dict[str, Any]:
    """A row as a store writes it (in either namespace, any status, a result or not), then, often, a column
    or two of the wrong type or range, or the row stored under a name its key does not map to."""
    key = draw(keys)
    placement = draw(st.sampled_from(["own", "own", "own", "key itself", "other key"]))
    status = draw(st.sampled_from(["claimed", "claimed", "claimed", "done", "failed"]))
    row = {
        "namespace": draw(st.sampled_from(["ns", "other"])),
        "storage_key": {"own": storage_segment(key) if key else "e", "key itself": key, "other key": "zz"}[placement],
        "key": key,
        "status": status,
        "owner_run_id": draw(st.sampled_from([None, "run-1"])),
        "lease_token": "t" * 32 if status == "claimed" else None,
        "lease_until": draw(lease_ends) if status == "claimed" else None,
        "result": draw(st.sampled_from([None, None, "[1]"])),
        "result_ref": draw(st.sampled_from([None, "r"])),
        "error": draw(st.sampled_from([None, "e"])),
        "attempts": draw(st.sampled_from([0, 1, SAFE, -SAFE])),
        "created_at": draw(st.sampled_from([NOW - 100, SAFE, -SAFE])),
        "updated_at": draw(st.sampled_from([NOW - 50, SAFE, -SAFE])),
    }
    for column in draw(st.lists(st.sampled_from(sorted(DAMAGE)), max_size=2, unique=True)):
        row[column] = draw(st.sampled_from(DAMAGE[column]))
    return row


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(table_rows(), max_size=25), older_than=st.sampled_from([0, 1, 500, 10_000]),
       chunk=st.sampled_from([1, 3, 5000]))
def test_gc_deletes_exactly_the_expired_claims_a_record_by_record_gc_would(
    tmp_path_factory: pytest.TempPathFactory, rows: list[dict[str, Any]], older_than: int, chunk: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sqlite_backend, "COLLECT_CHUNK", chunk)
    cp, db = _client(tmp_path_factory.mktemp("gc"))
    _insert(db, rows)
    before = _rows(db)
    # What the generic gc deletes: the records scan returns (readable, stored under their key's name)
    # that machine.collect picks.
    doomed = {
        (ns, storage_segment(item.key))
        for ns in ("ns", "other")
        for item in cp.scan(ns)
        if isinstance(item, Checkpoint) and item.status is Status.CLAIMED and lease_expired(item, NOW, older_than)
    }

    assert cp.gc(older_than=older_than) == len(doomed)

    assert _rows(db) == [row for row in before if (row[0], row[2]) not in doomed]
    cp.close()


def test_gc_over_every_key_placement_and_damaged_column_matches_the_record_by_record_rule(tmp_path: Path) -> None:
    """Every key shape under every placement, each alone and with each damaged value, all expired claims
    at the boundary or past it: one gc, compared with what the generic gc picks."""
    cp, db = _client(tmp_path)
    rows: list[dict[str, Any]] = []
    for index, key in enumerate(KEYS):
        for placement, segment in (("own", storage_segment(key) if key else "e"), ("key itself", key),
                                   ("other key", "zz")):
            variants: list[tuple[str, Any]] = [("", None)]
            variants += [(column, value) for column, values in DAMAGE.items() for value in values]
            for number, (column, value) in enumerate(variants):
                row = {
                    "namespace": "ns", "storage_key": f"{segment}", "key": key, "status": "claimed",
                    "owner_run_id": "run-1", "lease_token": "t" * 32, "lease_until": NOW - 500 - number % 2,
                    "result": None, "result_ref": None, "error": None, "attempts": 1, "created_at": NOW - 900,
                    "updated_at": NOW - 900,
                }
                if column:
                    row[column] = value
                # One row per (namespace, storage_key): the variants of a placement go to namespaces of their own.
                row["namespace"] = f"ns{index}-{placement.replace(' ', '_')}-{number}"
                rows.append(row)
    _insert(db, rows)
    before = _rows(db)
    doomed = {
        (ns, storage_segment(item.key))
        for ns in cp.namespaces()
        for item in cp.scan(ns)
        if isinstance(item, Checkpoint) and item.status is Status.CLAIMED and lease_expired(item, NOW, 500)
    }
    assert 0 < len(doomed) < len(before)

    assert cp.gc(older_than=500) == len(doomed)

    assert _rows(db) == [row for row in before if (row[0], row[2]) not in doomed]


def test_gc_in_chunks_keeps_the_count_exact_and_spares_live_and_corrupt_claims(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_backend, "COLLECT_CHUNK", 4)
    cp, db = _client(tmp_path)
    for index in range(10):
        cp.claim("ns", f"old{index}", lease_ms=1)
        cp.claim("ns", f"x {index}", lease_ms=1)  # hashed segments
    cp.claim("ns", "live", lease_ms=60_000)
    cp.claim("ns", "broken", lease_ms=1)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE checkpoints SET attempts = 'many' WHERE key = 'broken'")
    cp.backend.now_ms = FakeClock(NOW + 2)  # type: ignore[method-assign]

    assert cp.gc(namespace="ns") == 20
    assert cp.gc(namespace="ns") == 0
    assert {row[4] for row in _rows(db)} == {"live", "broken"}


def test_async_gc_uses_the_same_bulk_delete(tmp_path: Path) -> None:
    from mooncat_checkpoint import AsyncCheckpointClient

    async def body() -> None:
        async with AsyncCheckpointClient(f"sqlite://{tmp_path / 'cp.db'}") as cp:
            for index in range(5):
                await cp.claim("ns", f"k{index}", lease_ms=1)
            await cp.claim("ns", "live", lease_ms=60_000)
            backend = await cp._ready()
            assert hasattr(backend, "collect_expired")
            backend.sync.now_ms = FakeClock(time.time_ns() // 1_000_000 + 1000)  # type: ignore[attr-defined]
            assert await cp.gc() == 5
            assert [r.key for r in await cp.list("ns")] == ["live"]

    asyncio.run(body())


# ---- done, fail and claim on rows the guarded statements must not touch ----

# Each makes the claimed row of "k" unreadable in a column that `done` replaces or in one it keeps.
CLAIMED_CORRUPTIONS = {
    "text lease end": "lease_until = 'soon'",
    "fractional lease end": "lease_until = 1.5",
    "result not json": "result = '{broken'",
    "blob result_ref": "result_ref = x'00ff'",
    "blob error": "error = x'00ff'",
    "fractional updated_at": "updated_at = 2.5",
    "text attempts": "attempts = 'many'",
    "fractional created_at": "created_at = 1.5",
    "blob owner": "owner_run_id = x'00'",
    "attempts past 2**53": "attempts = 9007199254740993",
}


@pytest.mark.parametrize("finish", ["done", "fail"])
@pytest.mark.parametrize("name", list(CLAIMED_CORRUPTIONS))
def test_done_and_fail_on_an_unreadable_claim_raise_and_change_nothing(
    tmp_path: Path, name: str, finish: str
) -> None:
    cp, db = _client(tmp_path)
    held = cp.claim("ns", "k")
    assert held.lease_token is not None
    with sqlite3.connect(db) as conn:
        conn.execute(f"UPDATE checkpoints SET {CLAIMED_CORRUPTIONS[name]} WHERE key = 'k'")
    before = _rows(db)

    with pytest.raises(CorruptRecordError) as caught:
        if finish == "done":
            cp.done("ns", "k", held.lease_token, result={"a": 1})
        else:
            cp.fail("ns", "k", "boom", held.lease_token)
    assert "'k'" in str(caught.value)
    with pytest.raises(CorruptRecordError):
        cp.claim("ns", "k")
    assert _rows(db) == before


def test_done_on_a_claim_holding_an_old_result_runs_the_machine_and_replaces_it(tmp_path: Path) -> None:
    """A row the one-statement `done` does not vouch for is left to the machine's transition."""
    cp, db = _client(tmp_path)
    held = cp.claim("ns", "k")
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE checkpoints SET result = '[\"old\"]', result_ref = 'r', error = 'e' WHERE key = 'k'")
    record = cp.done("ns", "k", held.lease_token or "", result=[1])
    assert (record.status, record.result, record.result_ref, record.error) == (Status.DONE, [1], None, None)
    assert cp.get("ns", "k") == record


def test_done_on_a_misplaced_claim_is_a_conflict_and_changes_nothing(tmp_path: Path) -> None:
    cp, db = _client(tmp_path)
    held = cp.claim("ns", "k")
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE checkpoints SET key = 'other' WHERE key = 'k'")
    before = _rows(db)
    with pytest.raises(KeyConflictError):
        cp.done("ns", "k", held.lease_token or "", result=1)
    assert _rows(db) == before


def test_a_claim_that_finds_no_row_and_then_meets_one_under_the_lock_runs_the_machine(tmp_path: Path) -> None:
    """Between claim_once's unlocked read and its insert another process claims the key: the insert
    must not replace that claim; the answer is the machine's (busy), from the row read under the lock."""
    cp, db = _client(tmp_path)
    rival = CheckpointClient(f"sqlite://{db}", durability="fast")
    install_clock(rival, FakeClock(NOW))
    backend = cp.backend
    real = backend._conn()  # type: ignore[attr-defined]

    class RacingConnection:
        """Runs the rival's claim right after claim_once's first (unlocked) read."""

        raced = False

        def execute(self, sql: str, params: Any = ()) -> Any:
            cursor = real.execute(sql, params)
            if sql == sqlite_backend.SELECT_ONE and not self.raced:
                self.raced = True
                rows = cursor.fetchall()
                assert rival.claim("ns", "k", owner_run_id="rival").kind == "claimed"
                return ReadRows(rows)
            return cursor

        @property
        def in_transaction(self) -> bool:
            return real.in_transaction

    class ReadRows:
        def __init__(self, rows: list[Any]) -> None:
            self.rows = rows

        def fetchone(self) -> Any:
            return self.rows[0] if self.rows else None

    racing = RacingConnection()
    backend._conn = lambda: racing  # type: ignore[attr-defined]
    answer = cp.claim("ns", "k", owner_run_id="me")
    assert answer.kind == "busy"
    assert answer.checkpoint.owner_run_id == "rival"
    stored = rival.get("ns", "k")
    assert stored is not None and stored.owner_run_id == "rival" and stored.attempts == 1
    rival.close()
