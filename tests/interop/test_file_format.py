"""The bytes of record files: Python writes what TS writes for the same content, and keeps what it
does not know. Each case builds the same record through both languages, in two stores, and compares
the files; only the values that cannot agree (random lease tokens, clock readings) are equalised, by
reading them from the files themselves."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from interop_cases import KEYS, NS, RESULTS, record_path
from interop_node import ts_run
from mooncat_checkpoint import CheckpointClient, Status

pytestmark = pytest.mark.interop

UNEQUAL_FIELDS = ("leaseToken", "leaseUntil", "createdAt", "updatedAt")


def equalise(ts_text: str, py_text: str) -> str:
    """TS's text with each token and timestamp replaced by Python's value for the same field."""
    ts_record, py_record = json.loads(ts_text), json.loads(py_text)
    for field in UNEQUAL_FIELDS:
        old, new = ts_record[field], py_record[field]
        if old is None or new is None:
            assert old == new, field
            continue
        spelled = f'"{field}": {json.dumps(old)}'
        assert ts_text.count(spelled) == 1, (field, ts_text)
        ts_text = ts_text.replace(spelled, f'"{field}": {json.dumps(new)}')
    return ts_text


def cases() -> list[tuple[str, Any, str | None]]:
    """(key, result, result_ref): every key, and every result without floats."""
    out: list[tuple[str, Any, str | None]] = [(key, {"k": key}, None) for key in KEYS]
    out += [(f"result-{i}", result, None) for i, result in enumerate(RESULTS)]
    out += [("no-result", None, None), ("ref-only", None, "s3://bücket/ärtifact"), ("both", [1], "ref")]
    return out


@pytest.fixture
def stores(node_ready: Path, tmp_path: Path) -> tuple[str, str]:
    return f"file://{tmp_path / 'ts'}", f"file://{tmp_path / 'py'}"


def test_claimed_and_done_records_are_byte_identical(stores: tuple[str, str]) -> None:
    ts_url, py_url = stores
    claimed_ns, done_ns = "claimed", "done"
    ops: list[dict[str, Any]] = []
    for key, result, ref in cases():
        ops.append({"op": "claim", "ns": claimed_ns, "key": key, "ownerRunId": "run-ü", "leaseMs": 90_000})
        ops.append({"op": "claim", "ns": done_ns, "key": key, "ownerRunId": "run-ü"})
        done: dict[str, Any] = {"op": "done", "ns": done_ns, "key": key, "leaseToken": {"from": len(ops) - 1}}
        if result is not None:
            done["result"] = result
        if ref is not None:
            done["resultRef"] = ref
        ops.append(done)
    ts_run(ts_url, ops)

    with CheckpointClient(py_url) as py:
        for key, result, ref in cases():
            py.claim(claimed_ns, key, owner_run_id="run-ü", lease_ms=90_000)
            token = py.claim(done_ns, key, owner_run_id="run-ü").lease_token
            assert token is not None
            py.done(done_ns, key, token, result=result, result_ref=ref)

    compared = 0
    for ns in (claimed_ns, done_ns):
        for key, _, _ in cases():
            ts_bytes = record_path(ts_url, ns, key).read_bytes()
            py_bytes = record_path(py_url, ns, key).read_bytes()
            assert not py_bytes.endswith(b"\n")
            assert b'"error"' not in py_bytes
            ts_text = equalise(ts_bytes.decode("utf-8"), py_bytes.decode("utf-8"))
            assert py_bytes.decode("utf-8") == ts_text, (ns, key)
            compared += 1
    assert compared == 2 * len(cases())


def test_python_reproduces_every_file_ts_wrote(stores: tuple[str, str]) -> None:
    """Read back by Python and written out again, a TS file comes out byte for byte the same."""
    from mooncat_checkpoint.serialize import record_text

    ts_url, _ = stores
    ops: list[dict[str, Any]] = []
    for key, result, ref in cases():
        ops.append({"op": "claim", "ns": NS, "key": key})
        done: dict[str, Any] = {"op": "done", "ns": NS, "key": key, "leaseToken": {"from": len(ops) - 1}}
        if result is not None:
            done["result"] = result
        if ref is not None:
            done["resultRef"] = ref
        ops.append(done)
    ops.append({"op": "claim", "ns": "claimed", "key": "still claimed", "ownerRunId": "ö"})
    ts_run(ts_url, ops)

    with CheckpointClient(ts_url) as py:
        for ns, key in [*((NS, key) for key, _, _ in cases()), ("claimed", "still claimed")]:
            record = py.get(ns, key)
            assert record is not None
            assert record_text(record).encode("utf-8") == record_path(ts_url, ns, key).read_bytes(), key


def test_non_ascii_is_written_as_is_and_error_only_when_failed(tmp_path: Path, node_ready: Path) -> None:
    url = f"file://{tmp_path}"
    with CheckpointClient(url) as py:
        claim = py.claim(NS, "ключ/キー", owner_run_id="прогон")
        assert claim.lease_token is not None
        py.fail(NS, "ключ/キー", "ошибка: 失敗", claim.lease_token)
        text = record_path(url, NS, "ключ/キー").read_bytes().decode("utf-8")
    assert '"key": "ключ/キー"' in text and '"ownerRunId": "прогон"' in text
    assert '"error": "ошибка: 失敗"' in text
    assert "\\u" not in text and not text.endswith("\n")
    # TS reads the failed record, error included, and its list sees it.
    got, listed = ts_run(url, [{"op": "get", "ns": NS, "key": "ключ/キー"}, {"op": "list", "ns": NS}])
    assert got["status"] == "failed" and got["error"] == "ошибка: 失敗"
    assert listed == [got]


def add_fields(path: Path, extra: dict[str, Any]) -> None:
    """Edit a record by hand, as another tool would: add fields, write it back in the same form."""
    record = json.loads(path.read_bytes())
    record.update(extra)
    path.write_bytes(json.dumps(record, indent=2, ensure_ascii=False).encode("utf-8"))


def test_unknown_fields_of_a_ts_record_survive_python_rewrites(tmp_path: Path, node_ready: Path) -> None:
    url = f"file://{tmp_path}"
    extra = {"tsOnly": {"deep": [1, "é", None]}, "labels": ["a", "b"], "schemaHint": 3}
    claims = ts_run(url, [
        {"op": "claim", "ns": NS, "key": key, "ownerRunId": "ts-run"} for key in ("touched", "finished", "failed")
    ])
    for key in ("touched", "finished", "failed"):
        add_fields(record_path(url, NS, key), extra)
    tokens = {claim["checkpoint"]["key"]: claim["leaseToken"] for claim in claims}

    with CheckpointClient(url) as py:
        touched = py.touch(NS, "touched", tokens["touched"])
        finished = py.done(NS, "finished", tokens["finished"], result={"x": 1})
        failed = py.fail(NS, "failed", "boom", tokens["failed"])
    assert touched is not None and touched.status is Status.CLAIMED
    assert finished.status is Status.DONE and failed.status is Status.FAILED

    rewritten = {key: record_path(url, NS, key).read_bytes() for key in ("touched", "finished", "failed")}
    for key, data in rewritten.items():
        on_disk = json.loads(data)
        assert {name: on_disk[name] for name in extra} == extra, key
    # In the bytes TS itself would write for that content: extras after the known fields, where TS keeps them.
    [printed] = ts_run(url, [{"op": "stringify", "values": [json.loads(data) for data in rewritten.values()]}])
    assert [p["pretty"].encode("utf-8") for p in printed] == list(rewritten.values())
    # TS's own next rewrite (a done over Python's touch) keeps them too, and TS reads them back.
    done, got = ts_run(url, [
        {"op": "done", "ns": NS, "key": "touched", "leaseToken": tokens["touched"], "result": 2},
        {"op": "get", "ns": NS, "key": "finished"},
    ])
    assert {name: done[name] for name in extra} == extra
    assert {name: got[name] for name in extra} == extra and got["result"] == {"x": 1}


def test_our_lock_files_do_not_disturb_ts_listing_gc_or_abandon_owned(tmp_path: Path, node_ready: Path) -> None:
    url = f"file://{tmp_path}"
    root = tmp_path
    with CheckpointClient(url) as py:
        for ns in ("ns-a", "ns_b"):
            for i in range(3):
                py.claim(ns, f"owned {i}", owner_run_id="py-owner")
            lapsed = py.claim(ns, "lapsed", owner_run_id="other", lease_ms=1)
            token = py.claim(ns, "done", owner_run_id="py-owner").lease_token
            assert token is not None
            py.done(ns, "done", token, result=ns)
    assert lapsed.checkpoint.lease_until is not None
    # What Python leaves beside the records: a lock file per namespace, nothing in the root but namespaces.
    assert sorted(os.listdir(root)) == ["ns-a", "ns_b"]
    leftovers = {name for ns in ("ns-a", "ns_b") for name in os.listdir(root / ns) if not name.endswith(".json")}
    assert leftovers == {".lock"}

    answers = ts_run(url, [
        {"op": "list", "ns": "ns-a"},
        {"op": "list", "ns": "ns_b", "status": "claimed"},
        {"op": "waitPast", "ms": lapsed.checkpoint.lease_until},
        {"op": "gc"},
        {"op": "abandonOwned", "ownerRunId": "py-owner"},
        {"op": "list", "ns": "ns-a"},
        {"op": "list", "ns": "ns_b"},
    ])
    assert sorted(r["key"] for r in answers[0]) == ["done", "lapsed", "owned 0", "owned 1", "owned 2"]
    assert sorted(r["key"] for r in answers[1]) == ["lapsed", "owned 0", "owned 1", "owned 2"]
    assert answers[3] == 2  # one lapsed lease per namespace
    assert answers[4] == 6  # three live claims per namespace; the done record stays
    assert [r["key"] for r in answers[5]] == ["done"] and [r["key"] for r in answers[6]] == ["done"]
    with CheckpointClient(url) as py:
        assert [r.key for r in py.list("ns-a")] == ["done"]
        assert py.namespaces() == ["ns-a", "ns_b"]
