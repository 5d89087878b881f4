"""An unreadable record is never treated as absent: claim and get raise, list warns, quarantine repairs."""

from __future__ import annotations

import json
import sqlite3
import warnings
from pathlib import Path

import pytest
from mooncat_checkpoint import (
    CheckpointClient,
    CorruptRecord,
    CorruptRecordError,
    CorruptRecordWarning,
    Status,
)


def _good_record(key: str) -> dict[str, object]:
    return {
        "namespace": "ns", "key": key, "status": "done", "ownerRunId": None, "leaseToken": None,
        "leaseUntil": None, "result": {"n": 1}, "resultRef": None, "attempts": 1,
        "createdAt": 1, "updatedAt": 2,
    }


FILE_CORRUPTIONS = {
    "not json": "{\"namespace\": \"ns\", \"key\": ",
    "empty": "",
    "binary": "\udcff\x00garbage",
    "array": "[1, 2]",
    "unknown status": json.dumps({**_good_record("k"), "status": "paused"}),
    "missing status": json.dumps({k: v for k, v in _good_record("k").items() if k != "status"}),
    "claimed without token": json.dumps({**_good_record("k"), "status": "claimed", "leaseUntil": 10}),
    "key not a string": json.dumps({**_good_record("k"), "key": 5}),
    "attempts not a number": json.dumps({**_good_record("k"), "attempts": "one"}),
    "nan result": json.dumps({**_good_record("k"), "result": float("nan")}),
}


def _file_store(tmp_path: Path) -> tuple[CheckpointClient, Path]:
    root = tmp_path / "store"
    cp = CheckpointClient(f"file://{root}")
    held = cp.claim("ns", "fine")
    assert held.lease_token is not None
    cp.done("ns", "fine", held.lease_token, result="ok")
    return cp, root


@pytest.mark.parametrize("name", list(FILE_CORRUPTIONS))
def test_corrupt_record_files_are_reported_and_can_be_quarantined(tmp_path: Path, name: str) -> None:
    cp, root = _file_store(tmp_path)
    path = root / "ns" / "k.json"
    text = FILE_CORRUPTIONS[name]
    path.write_bytes(text.encode("utf-8", "surrogateescape"))

    for call in (lambda: cp.claim("ns", "k"), lambda: cp.get("ns", "k"), lambda: cp.claim_many("ns", ["k"])):
        with pytest.raises(CorruptRecordError) as caught:
            call()
        assert str(path) in str(caught.value)
    assert path.read_bytes() == text.encode("utf-8", "surrogateescape")  # the evidence is untouched

    with pytest.warns(CorruptRecordWarning, match="k.json"):
        listed = cp.list("ns")
    assert [r.key for r in listed] == ["fine"]
    assert cp.gc() == 0

    problems = [item for item in cp.scan("ns") if isinstance(item, CorruptRecord)]
    assert [p.location for p in problems] == [str(path)]
    moved = Path(cp.quarantine(problems[0]))
    assert moved.read_bytes() == text.encode("utf-8", "surrogateescape")
    assert not moved.name.endswith(".json")  # never mistaken for a record again
    assert cp.claim("ns", "k").kind == "claimed"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sorted(r.key for r in cp.list("ns")) == ["fine", "k"]


def test_a_directory_in_place_of_a_record_is_reported(tmp_path: Path) -> None:
    cp, root = _file_store(tmp_path)
    (root / "ns" / "k.json").mkdir()
    with pytest.raises(CorruptRecordError, match=r"k\.json"):
        cp.get("ns", "k")
    with pytest.warns(CorruptRecordWarning):
        assert [r.key for r in cp.list("ns")] == ["fine"]


def test_quarantining_twice_keeps_both_copies(tmp_path: Path) -> None:
    cp, root = _file_store(tmp_path)
    path = root / "ns" / "k.json"
    kept = []
    for text in ("first broken", "second broken"):
        path.write_text(text)
        [problem] = [p for p in cp.scan("ns") if isinstance(p, CorruptRecord)]
        kept.append(Path(cp.quarantine(problem)))
    assert kept[0] != kept[1]
    assert [p.read_text() for p in kept] == ["first broken", "second broken"]


SQL_CORRUPTIONS = {
    "unknown status": "UPDATE checkpoints SET status = 'paused' WHERE storage_key = 'k'",
    "result not json": "UPDATE checkpoints SET result = '{broken' WHERE storage_key = 'k'",
}


@pytest.mark.parametrize("name", list(SQL_CORRUPTIONS))
def test_corrupt_sqlite_rows_are_reported_and_can_be_quarantined(tmp_path: Path, name: str) -> None:
    db = tmp_path / "cp.db"
    cp = CheckpointClient(f"sqlite://{db}")
    for key in ("fine", "k"):
        held = cp.claim("ns", key)
        assert held.lease_token is not None
        cp.done("ns", key, held.lease_token, result=[key])
    with sqlite3.connect(db) as conn:
        conn.execute(SQL_CORRUPTIONS[name])

    for call in (lambda: cp.claim("ns", "k"), lambda: cp.get("ns", "k"), lambda: cp.get_many("ns", ["k"])):
        with pytest.raises(CorruptRecordError) as caught:
            call()
        assert str(db) in str(caught.value) and "'k'" in str(caught.value)
    with pytest.warns(CorruptRecordWarning):
        assert [r.key for r in cp.list("ns")] == ["fine"]

    [problem] = [p for p in cp.scan("ns") if isinstance(p, CorruptRecord)]
    cp.quarantine(problem)
    with sqlite3.connect(db) as conn:
        kept = conn.execute("SELECT key, status, result FROM checkpoints_quarantine").fetchall()
    assert [row[0] for row in kept] == ["k"]
    assert cp.claim("ns", "k").kind == "claimed"
    assert {r.key: r.status for r in cp.list("ns")} == {"fine": Status.DONE, "k": Status.CLAIMED}


@pytest.mark.parametrize("scheme", ["file", "sqlite"])
def test_a_record_stored_under_another_keys_name_is_reported_and_can_be_moved_aside(
    tmp_path: Path, scheme: str
) -> None:
    from mooncat_checkpoint import KeyConflictError

    url = f"file://{tmp_path / 'store'}" if scheme == "file" else f"sqlite://{tmp_path / 'cp.db'}"
    cp = CheckpointClient(url)
    held = cp.claim("ns", "k")
    cp.done("ns", "k", held.lease_token, result=1)
    if scheme == "file":  # edited by hand: the file k.json now says it is the record of "other"
        path = tmp_path / "store" / "ns" / "k.json"
        path.write_text(path.read_text().replace('"key": "k"', '"key": "other"'))
    else:
        with sqlite3.connect(tmp_path / "cp.db") as conn:
            conn.execute("UPDATE checkpoints SET key = 'other' WHERE storage_key = 'k'")

    with pytest.raises(KeyConflictError):
        cp.claim("ns", "k")
    assert cp.get("ns", "other") is None
    with pytest.warns(CorruptRecordWarning, match="other"):
        assert cp.list("ns") == []
    [problem] = [p for p in cp.scan("ns") if isinstance(p, CorruptRecord)]
    assert "'other'" in problem.reason
    cp.quarantine(problem)
    assert cp.claim("ns", "k").kind == "claimed"
    assert cp.claim("ns", "other").kind == "claimed"
