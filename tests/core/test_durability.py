"""No data lost: a failing write leaves the previous record and no temp file; done and fail are synced."""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from core_support import store_files
from mooncat_checkpoint import CheckpointClient, KeyConflictError, Status, storage_segment


def _file_client(tmp_path: Path, durability: str = "full") -> tuple[CheckpointClient, Path]:
    root = tmp_path / "store"
    return CheckpointClient(f"file://{root}", durability=durability), root  # type: ignore[arg-type]


def _disk_fault(name: str) -> Callable[..., Any]:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.ENOSPC, f"simulated: no space left ({name})")

    return fail


@pytest.mark.parametrize("syscall", ["replace", "write", "fsync"])
def test_a_failing_write_keeps_the_previous_record_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, syscall: str
) -> None:
    cp, root = _file_client(tmp_path)
    held = cp.claim("ns", "k", owner_run_id="run", lease_ms=600_000)
    assert held.lease_token is not None
    path = root / "ns" / f"{storage_segment('k')}.json"
    before_bytes = path.read_bytes()

    with monkeypatch.context() as patch:
        patch.setattr(os, syscall, _disk_fault(syscall))
        with pytest.raises(OSError, match="simulated"):
            cp.done("ns", "k", held.lease_token, result={"lost": False})

    assert path.read_bytes() == before_bytes
    assert store_files(root) == ["ns/.lock", "ns/k.json"]
    record = cp.get("ns", "k")
    assert record is not None and record.status is Status.CLAIMED and record.lease_token == held.lease_token
    # The holder still holds the key and can finish once the disk recovers.
    assert cp.done("ns", "k", held.lease_token, result={"lost": False}).status is Status.DONE
    assert store_files(root) == ["ns/.lock", "ns/k.json"]


def test_a_failing_first_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cp, root = _file_client(tmp_path)
    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", _disk_fault("replace"))
        with pytest.raises(OSError, match="simulated"):
            cp.claim("ns", "fresh")
    assert cp.get("ns", "fresh") is None
    assert store_files(root) == ["ns/.lock"]


class _CountingFsync:
    def __init__(self) -> None:
        self.calls = 0
        self.real = os.fsync

    def __call__(self, fd: int) -> None:
        self.calls += 1
        self.real(fd)


@pytest.mark.parametrize("durability", ["full", "fast"])
def test_done_and_fail_are_synced_claims_are_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, durability: str
) -> None:
    cp, _ = _file_client(tmp_path, durability)
    counter = _CountingFsync()
    monkeypatch.setattr(os, "fsync", counter)
    synced = durability == "full"

    def syncs(operation: Callable[[], Any]) -> int:
        start = counter.calls
        operation()
        return counter.calls - start

    claims: dict[str, str] = {}

    def claim(key: str) -> None:
        outcome = cp.claim("ns", key)
        assert outcome.lease_token is not None
        claims[key] = outcome.lease_token

    assert syncs(lambda: claim("a")) == 0
    assert syncs(lambda: claim("b")) == 0
    assert syncs(lambda: cp.touch("ns", "a", claims["a"])) == 0
    # The record file and then its directory, so the rename itself survives a crash.
    assert syncs(lambda: cp.done("ns", "a", claims["a"], result=1)) == (2 if synced else 0)
    assert syncs(lambda: cp.fail("ns", "b", "boom", claims["b"])) == (2 if synced else 0)


def _synchronous_level(cp: CheckpointClient) -> int:
    conn = cp.backend._conn()  # type: ignore[attr-defined]
    level: int = conn.execute("PRAGMA synchronous").fetchone()[0]
    return level


def test_sqlite_commits_done_with_full_sync(tmp_path: Path) -> None:
    full, normal = 2, 1
    cp = CheckpointClient(f"sqlite://{tmp_path / 'cp.db'}")
    held = cp.claim("ns", "k")
    assert held.lease_token is not None
    assert _synchronous_level(cp) == normal
    cp.done("ns", "k", held.lease_token)
    assert _synchronous_level(cp) == full
    fast = CheckpointClient(f"sqlite://{tmp_path / 'fast.db'}", durability="fast")
    held = fast.claim("ns", "k")
    assert held.lease_token is not None
    fast.done("ns", "k", held.lease_token)
    assert _synchronous_level(fast) == normal


def test_sqlite_rolls_back_and_reraises_the_original_error(tmp_path: Path) -> None:
    db = tmp_path / "cp.db"
    cp = CheckpointClient(f"sqlite://{db}")
    held = cp.claim("ns", "k", lease_ms=600_000)
    assert held.lease_token is not None
    before = cp.get("ns", "k")
    # A real failure inside SQLite, in the middle of the write that records `done`.
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE TRIGGER refuse_done BEFORE UPDATE ON checkpoints WHEN NEW.status = 'done' "
            "BEGIN SELECT RAISE(ABORT, 'refused by trigger'); END"
        )
    with pytest.raises(sqlite3.DatabaseError, match="refused by trigger"):
        cp.done("ns", "k", held.lease_token, result=1)
    assert cp.get("ns", "k") == before
    # The failed transaction was rolled back: this connection still writes.
    assert cp.claim("ns", "other").kind == "claimed"
    with pytest.raises(KeyConflictError):
        cp.claim("ns", _impostor_of(cp))
    assert cp.claim("ns", "third").kind == "claimed"
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TRIGGER refuse_done")
    assert cp.done("ns", "k", held.lease_token, result=1).status is Status.DONE


def _impostor_of(cp: CheckpointClient) -> str:
    original = "needs hashing"
    cp.claim("ns", original)
    return storage_segment(original)
