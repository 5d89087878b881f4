"""What one language does to a store, the other sees: on the file and the SQLite backend alike."""

from __future__ import annotations

from typing import Any

import pytest
from interop_cases import KEYS, NS, RESULTS, wait_past
from interop_node import TsError, ts_run
from mooncat_checkpoint import CheckpointClient, KeyConflictError, LeaseLostError, Status, storage_segment

pytestmark = pytest.mark.interop


def expected_result(index: int) -> Any:
    """Key number `index` is finished with this result; every fourth has none, to cover NULL / null."""
    return None if index % 4 == 3 else RESULTS[index % len(RESULTS)]


def test_ts_finishes_python_claim_returns_done(store_url: str, py: CheckpointClient) -> None:
    ops: list[dict[str, Any]] = []
    for index, key in enumerate(KEYS):
        ops.append({"op": "claim", "ns": NS, "key": key, "ownerRunId": "ts-run"})
        done: dict[str, Any] = {"op": "done", "ns": NS, "key": key, "leaseToken": {"from": len(ops) - 1}}
        if expected_result(index) is not None:
            done["result"] = expected_result(index)
        if index % 5 == 0:
            done["resultRef"] = f"s3://bucket/{index}"
        ops.append(done)
    ts_run(store_url, ops)

    for index, key in enumerate(KEYS):
        claim = py.claim(NS, key, owner_run_id="py-run")
        assert claim.kind == "done", key
        assert claim.lease_token is None
        record = claim.checkpoint
        assert record.key == key
        assert record.status is Status.DONE
        assert record.result == expected_result(index)
        assert record.result_ref == (f"s3://bucket/{index}" if index % 5 == 0 else None)
        assert record.owner_run_id == "ts-run"
        assert record.attempts == 1
        assert record.error is None
        assert py.get(NS, key) == record
    assert sorted(r.key for r in py.list(NS, status="done")) == sorted(KEYS)


def test_python_finishes_ts_claim_returns_done(store_url: str, py: CheckpointClient) -> None:
    for index, key in enumerate(KEYS):
        token = py.claim(NS, key, owner_run_id="py-run").lease_token
        assert token is not None
        py.done(NS, key, token, result=expected_result(index), result_ref="ref" if index % 5 == 0 else None)

    ops = [{"op": "claim", "ns": NS, "key": key, "ownerRunId": "ts-run"} for key in KEYS]
    ops += [{"op": "get", "ns": NS, "key": key} for key in KEYS]
    ops.append({"op": "list", "ns": NS, "status": "done"})
    answers = ts_run(store_url, ops)

    claims, gets, listed = answers[: len(KEYS)], answers[len(KEYS) : 2 * len(KEYS)], answers[-1]
    for index, (key, claim, got) in enumerate(zip(KEYS, claims, gets, strict=True)):
        assert claim["kind"] == "done", key
        assert "leaseToken" not in claim
        record = claim["checkpoint"]
        assert record["key"] == key
        assert record["status"] == "done"
        assert record["result"] == expected_result(index)
        assert record["resultRef"] == ("ref" if index % 5 == 0 else None)
        assert record["ownerRunId"] == "py-run"
        assert record["leaseToken"] is None and record["leaseUntil"] is None
        assert got == record
    assert sorted(r["key"] for r in listed) == sorted(KEYS)


def test_a_claim_is_finished_by_the_other_language_with_its_token(store_url: str, py: CheckpointClient) -> None:
    # TS claims, Python touches and finishes with TS's token.
    ts_claim = ts_run(store_url, [{"op": "claim", "ns": NS, "key": "ts→py", "ownerRunId": "ts-run"}])[0]
    token = ts_claim["leaseToken"]
    touched = py.touch(NS, "ts→py", token, extend_ms=120_000)
    assert touched is not None and touched.lease_token == token
    assert touched.lease_until is not None and touched.lease_until > ts_claim["checkpoint"]["leaseUntil"]
    assert py.done(NS, "ts→py", token, result={"by": "python"}).status is Status.DONE

    # Python claims, TS touches and finishes with Python's token.
    claim = py.claim(NS, "py→ts", owner_run_id="py-run", lease_ms=60_000)
    assert claim.lease_token is not None
    touched_ts, done_ts, got_ts = ts_run(store_url, [
        {"op": "touch", "ns": NS, "key": "py→ts", "leaseToken": claim.lease_token, "extendMs": 120_000},
        {"op": "done", "ns": NS, "key": "py→ts", "leaseToken": claim.lease_token, "result": {"by": "ts"}},
        {"op": "get", "ns": NS, "key": "ts→py"},
    ])
    assert touched_ts["leaseToken"] == claim.lease_token
    assert done_ts["status"] == "done"
    assert got_ts["status"] == "done" and got_ts["result"] == {"by": "python"}
    record = py.get(NS, "py→ts")
    assert record is not None and record.status is Status.DONE and record.result == {"by": "ts"}
    assert record.owner_run_id == "py-run" and record.attempts == 1


def test_live_leases_are_respected_both_ways(store_url: str, py: CheckpointClient) -> None:
    ts_claim = ts_run(store_url, [{"op": "claim", "ns": NS, "key": "held by ts", "ownerRunId": "ts-run"}])[0]
    busy = py.claim(NS, "held by ts", owner_run_id="py-run")
    assert busy.kind == "busy" and busy.lease_token is None
    assert busy.checkpoint.owner_run_id == "ts-run"
    assert busy.checkpoint.lease_token == ts_claim["leaseToken"]
    with pytest.raises(LeaseLostError):
        py.done(NS, "held by ts", "0" * 32, result=1)
    assert py.touch(NS, "held by ts", "0" * 32) is None
    assert py.abandon(NS, "held by ts", "0" * 32) is False

    mine = py.claim(NS, "held by python", owner_run_id="py-run")
    assert mine.kind == "claimed"
    ts_busy, ts_done, ts_touch, ts_abandon, ts_get = ts_run(store_url, [
        {"op": "claim", "ns": NS, "key": "held by python", "ownerRunId": "ts-run"},
        {"op": "done", "ns": NS, "key": "held by python", "leaseToken": "f" * 32, "raises": True},
        {"op": "touch", "ns": NS, "key": "held by python", "leaseToken": "f" * 32},
        {"op": "abandon", "ns": NS, "key": "held by python", "leaseToken": "f" * 32},
        {"op": "get", "ns": NS, "key": "held by ts"},
    ])
    assert ts_busy["kind"] == "busy"
    assert ts_busy["checkpoint"]["ownerRunId"] == "py-run"
    assert isinstance(ts_done, TsError) and ts_done.name == "LeaseLostError"
    assert ts_touch is None and ts_abandon is False
    # Nothing Python tried changed TS's claim, and nothing TS tried changed Python's.
    assert ts_get == ts_claim["checkpoint"]
    assert py.get(NS, "held by python") == mine.checkpoint


def test_expired_leases_are_taken_over_both_ways(store_url: str, py: CheckpointClient) -> None:
    ts_claim = ts_run(store_url, [{"op": "claim", "ns": NS, "key": "ts lapses", "leaseMs": 1}])[0]
    wait_past(ts_claim["checkpoint"]["leaseUntil"])
    taken = py.claim(NS, "ts lapses", owner_run_id="py-run")
    assert taken.kind == "claimed"
    assert taken.checkpoint.attempts == 2
    assert taken.checkpoint.created_at == ts_claim["checkpoint"]["createdAt"]
    assert taken.lease_token != ts_claim["leaseToken"]

    mine = py.claim(NS, "python lapses", owner_run_id="py-run", lease_ms=1)
    assert mine.checkpoint.lease_until is not None
    _, ts_taken, old_done = ts_run(store_url, [
        {"op": "waitPast", "ms": mine.checkpoint.lease_until},
        {"op": "claim", "ns": NS, "key": "python lapses", "ownerRunId": "ts-run"},
        # The lapsed Python token can no longer finish the key: fencing holds across languages.
        {"op": "done", "ns": NS, "key": "python lapses", "leaseToken": mine.lease_token, "raises": True},
    ])
    assert ts_taken["kind"] == "claimed"
    assert ts_taken["checkpoint"]["attempts"] == 2
    assert ts_taken["checkpoint"]["createdAt"] == mine.checkpoint.created_at
    assert isinstance(old_done, TsError) and old_done.name == "LeaseLostError"
    assert mine.lease_token is not None
    with pytest.raises(LeaseLostError):
        py.done(NS, "python lapses", mine.lease_token)


def test_ts_reclaims_a_python_failed_record(store_url: str, py: CheckpointClient) -> None:
    """Python keeps `failed` terminal until reset (the 0.1.0 contract). TS 0.5.1 has no failed state:
    to it a failed record is unfinished work, so its claim takes the key again. This is expected."""
    claim = py.claim(NS, "fails", owner_run_id="py-run")
    assert claim.lease_token is not None
    py.fail(NS, "fails", "disk full", claim.lease_token)
    assert py.claim(NS, "fails").kind == "failed"

    seen, again = ts_run(store_url, [
        {"op": "get", "ns": NS, "key": "fails"},
        {"op": "claim", "ns": NS, "key": "fails", "ownerRunId": "ts-run"},
    ])
    assert seen["status"] == "failed"
    assert again["kind"] == "claimed"
    assert again["checkpoint"]["attempts"] == 2
    record = py.get(NS, "fails")
    assert record is not None and record.status is Status.CLAIMED and record.error is None
    assert record.owner_run_id == "ts-run"


def test_abandon_reset_abandon_owned_and_gc_across_languages(store_url: str, py: CheckpointClient) -> None:
    other_ns = "interop-b"
    tokens = {}
    for ns in (NS, other_ns):
        for key in ("owned 1", "owned/2"):
            tokens[ns, key] = py.claim(ns, key, owner_run_id="run-x").lease_token
    to_abandon = py.claim(NS, "abandon me", owner_run_id="run-y")
    lapsed = py.claim(NS, "lapsed", owner_run_id="run-y", lease_ms=1)
    live = py.claim(NS, "live", owner_run_id="run-y")
    finished = py.claim(NS, "finished", owner_run_id="run-x")
    assert finished.lease_token is not None
    py.done(NS, "finished", finished.lease_token, result="kept")
    assert lapsed.checkpoint.lease_until is not None

    answers = ts_run(store_url, [
        {"op": "abandon", "ns": NS, "key": "abandon me", "leaseToken": to_abandon.lease_token},
        {"op": "abandonOwned", "ownerRunId": "run-x", "namespace": other_ns},
        {"op": "abandonOwned", "ownerRunId": "run-x"},
        {"op": "waitPast", "ms": lapsed.checkpoint.lease_until},
        {"op": "gc"},
        {"op": "reset", "ns": NS, "key": "finished"},
        {"op": "reset", "ns": NS, "key": "finished"},
    ])
    assert answers[0] is True
    assert answers[1] == 2  # only the other namespace
    assert answers[2] == 2  # the rest, in every namespace; the done record of run-x is not a claim
    assert answers[4] == 1  # the lapsed lease, not the live one
    assert answers[5:] == [True, False]
    assert py.list(NS) == [live.checkpoint]
    assert py.list(other_ns) == []

    # And the other way: Python abandons, resets and collects what TS claimed.
    ts_claims = ts_run(store_url, [
        {"op": "claim", "ns": NS, "key": "ts owned 1", "ownerRunId": "ts-x"},
        {"op": "claim", "ns": other_ns, "key": "ts owned 2", "ownerRunId": "ts-x"},
        {"op": "claim", "ns": NS, "key": "ts abandon", "ownerRunId": "ts-y"},
        {"op": "claim", "ns": NS, "key": "ts lapsed", "ownerRunId": "ts-y", "leaseMs": 1},
        {"op": "claim", "ns": NS, "key": "ts finished"},
        {"op": "done", "ns": NS, "key": "ts finished", "leaseToken": {"from": 4}, "result": 1},
    ])
    assert py.abandon(NS, "ts abandon", ts_claims[2]["leaseToken"]) is True
    assert py.abandon_owned("ts-x") == 2
    wait_past(ts_claims[3]["checkpoint"]["leaseUntil"])
    assert py.gc() == 1
    assert py.reset(NS, "ts finished") is True
    remaining = ts_run(store_url, [{"op": "list", "ns": NS}, {"op": "list", "ns": other_ns}])
    assert [r["key"] for r in remaining[0]] == ["live"]
    assert remaining[1] == []


def test_a_key_spelling_another_keys_segment_is_refused_not_confused(store_url: str, py: CheckpointClient) -> None:
    """TS stores "a b" under its hashed segment; the key that spells that segment must not read it as its own."""
    ts_run(store_url, [
        {"op": "claim", "ns": NS, "key": "a b"},
        {"op": "done", "ns": NS, "key": "a b", "leaseToken": {"from": 0}, "result": "for a b"},
    ])
    impostor = storage_segment("a b")
    assert storage_segment(impostor) == impostor
    with pytest.raises(KeyConflictError):
        py.claim(NS, impostor)
    with pytest.raises(KeyConflictError):
        py.get(NS, impostor)
    claim = py.claim(NS, "a b")
    assert claim.kind == "done" and claim.checkpoint.result == "for a b"
