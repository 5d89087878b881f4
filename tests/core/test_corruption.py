"""An unreadable record is never treated as absent: claim and get raise, list warns, quarantine repairs."""

from __future__ import annotations

import asyncio
import json
import pickle
import shlex
import sqlite3
import warnings
from pathlib import Path

import pytest
from mooncat_checkpoint import (
    AsyncCheckpointClient,
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
    # Numbers that rewriting as integers would change, or that no SQL store or JavaScript reader keeps exactly.
    "fractional attempts": json.dumps({**_good_record("k"), "attempts": 1.5}),
    "boolean attempts": json.dumps({**_good_record("k"), "attempts": True}),
    "lease end past 2**53": json.dumps(
        {**_good_record("k"), "status": "claimed", "leaseToken": "t" * 32, "leaseUntil": 10**30}
    ),
    "lease end overflowing a double": json.dumps({**_good_record("k"), "leaseUntil": 1}).replace(
        '"leaseUntil": 1', '"leaseUntil": 1e400'
    ),
    # Read as infinity by Python and JavaScript alike; written back, it could only become null.
    "result overflowing a double": json.dumps({**_good_record("k"), "result": [1]}).replace("[1]", "[-1e400]"),
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
    # SQLite keeps any type in any column: each of these once crashed claim, gc or list with a TypeError,
    # or was returned as a record no other store could hold.
    "text lease end": "UPDATE checkpoints SET status = 'claimed', lease_token = 't', lease_until = 'soon' "
    "WHERE storage_key = 'k'",
    "text attempts": "UPDATE checkpoints SET attempts = 'many' WHERE storage_key = 'k'",
    "fractional created_at": "UPDATE checkpoints SET created_at = 1.5 WHERE storage_key = 'k'",
    "blob key": "UPDATE checkpoints SET key = CAST('k' AS BLOB) WHERE storage_key = 'k'",
    "blob result_ref": "UPDATE checkpoints SET result_ref = x'00ff' WHERE storage_key = 'k'",
    "integer status": "UPDATE checkpoints SET status = 1 WHERE storage_key = 'k'",
    "claimed without token": "UPDATE checkpoints SET status = 'claimed', lease_until = 5 WHERE storage_key = 'k'",
    "lease end past 2**53": "UPDATE checkpoints SET status = 'claimed', lease_token = 't', "
    "lease_until = 4611686018427387904 WHERE storage_key = 'k'",
    "nan result": "UPDATE checkpoints SET result = 'NaN' WHERE storage_key = 'k'",
    "infinite result": "UPDATE checkpoints SET result = '[-Infinity]' WHERE storage_key = 'k'",
    "result overflowing a double": "UPDATE checkpoints SET result = '{\"x\": 1e400}' WHERE storage_key = 'k'",
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
    assert cp.gc() == 0
    assert cp.abandon_owned("anyone") == 0

    [problem] = [p for p in cp.scan("ns") if isinstance(p, CorruptRecord)]
    cp.quarantine(problem)
    with sqlite3.connect(db) as conn:
        kept = conn.execute("SELECT storage_key, status, result FROM checkpoints_quarantine").fetchall()
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


def test_a_record_of_another_namespace_is_never_returned_for_this_one(tmp_path: Path) -> None:
    """Namespace folders differing only in case are one folder on a case-insensitive filesystem (macOS,
    Windows), and a file may be copied between folders: the record's own namespace must match too."""
    cp, root = _file_store(tmp_path)
    (root / "NS").mkdir()
    copied = root / "NS" / "fine.json"
    copied.write_bytes((root / "ns" / "fine.json").read_bytes())

    from mooncat_checkpoint import KeyConflictError

    for call in (lambda: cp.claim("NS", "fine"), lambda: cp.get("NS", "fine"),
                 lambda: cp.get_many("NS", ["fine"]), lambda: cp.claim_many("NS", ["fine"])):
        with pytest.raises(KeyConflictError, match="namespace 'ns'") as caught:
            call()
        assert caught.value.stored_namespace == "ns"
    with pytest.warns(CorruptRecordWarning, match="namespace 'ns'"):
        assert cp.list("NS") == []
    assert copied.read_bytes() == (root / "ns" / "fine.json").read_bytes()  # nothing overwritten
    assert cp.claim("ns", "fine").kind == "done"


def test_an_unreadable_record_names_the_doctor_command_for_its_store(tmp_path: Path) -> None:
    cp, root = _file_store(tmp_path)
    (root / "ns" / "k.json").write_text("{not json")
    doctor = f"mooncat-checkpoint doctor --url {shlex.quote(cp.location.command_url or '')}"
    for call in (lambda: cp.get("ns", "k"), lambda: cp.claim("ns", "k"), lambda: cp.get_many("ns", ["k"]),
                 lambda: cp.claim_many("ns", ["k"]), lambda: cp.reset("ns", "k")):
        with pytest.raises(CorruptRecordError) as caught:
            call()
        assert f"`{doctor}`" in str(caught.value) and f"`{doctor} --quarantine`" in str(caught.value)
    copy = pickle.loads(pickle.dumps(caught.value))
    assert (copy.location, copy.reason, str(copy)) == (caught.value.location, caught.value.reason, str(caught.value))

    async def from_async() -> str:
        async with AsyncCheckpointClient(cp.shareable_url) as acp:
            with pytest.raises(CorruptRecordError) as raised:
                await acp.claim("ns", "k")
            return str(raised.value)

    assert doctor in asyncio.run(from_async())
    with pytest.warns(CorruptRecordWarning, match="doctor --url"):
        cp.list("ns")
