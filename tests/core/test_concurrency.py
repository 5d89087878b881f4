"""Exactly-once claims under real contention: threads and processes, all released by one start gate."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections import Counter
from multiprocessing.synchronize import Barrier as BarrierType
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

from core_support import store_files
from mooncat_checkpoint import CheckpointClient, Status
from mooncat_checkpoint.config import parse_url

NS = "race"
KEYS = [f"k{i}" for i in range(40)] + ["needs hashing", "x\n"]
WORKERS = 6
LONG_LEASE = 600_000


def _claim_all(
    url: str, gate: Any, label: str, keys: list[str], others: tuple[str, ...] = ("busy",)
) -> list[tuple[str, str, str]]:
    wins: list[tuple[str, str, str]] = []
    with CheckpointClient(url) as cp:
        cp.get(NS, keys[0])  # open the store before the gate, so the race is about claims only
        gate.wait()
        for key in keys:
            outcome = cp.claim(NS, key, owner_run_id=label, lease_ms=LONG_LEASE)
            if outcome.kind == "claimed":
                assert outcome.lease_token is not None
                wins.append((key, label, outcome.lease_token))
            else:
                assert outcome.kind in others, outcome
    return wins


def _assert_exactly_once(wins: list[tuple[str, str, str]], url: str) -> None:
    counts = Counter(key for key, _, _ in wins)
    assert sorted(counts) == sorted(KEYS)
    assert set(counts.values()) == {1}, {k: n for k, n in counts.items() if n > 1}
    with CheckpointClient(url) as cp:
        for key, label, token in wins:
            record = cp.get(NS, key)
            assert record is not None and record.lease_token == token and record.owner_run_id == label


def _assert_only_records_and_locks(url: str) -> None:
    location = parse_url(url)
    if location.scheme != "file":
        return
    root = Path(location.path)
    allowed = {f"{NS}/.lock"}
    with CheckpointClient(url) as cp:
        allowed |= {f"{NS}/{_segment(r.key)}.json" for r in cp.list(NS)}
    assert set(store_files(root)) == allowed


def _segment(key: str) -> str:
    from mooncat_checkpoint import storage_segment

    return storage_segment(key)


def _run_threads(target: Any, count: int) -> list[Any]:
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            results[index] = target(index)
        except BaseException as exc:  # surfaced below: a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    if errors:
        raise errors[0]
    return results


def test_threads_sharing_one_client_claim_each_key_once(store_url: str) -> None:
    gate = threading.Barrier(WORKERS)
    with CheckpointClient(store_url) as cp:
        def worker(index: int) -> list[tuple[str, str, str]]:
            gate.wait()
            wins = []
            for key in KEYS:
                outcome = cp.claim(NS, key, owner_run_id=f"t{index}", lease_ms=LONG_LEASE)
                if outcome.kind == "claimed":
                    assert outcome.lease_token is not None
                    wins.append((key, f"t{index}", outcome.lease_token))
            return wins

        wins = [w for ws in _run_threads(worker, WORKERS) for w in ws]
        counts = Counter(key for key, _, _ in wins)
        assert sorted(counts) == sorted(KEYS) and set(counts.values()) == {1}
        for key, label, token in wins:
            record = cp.get(NS, key)
            assert record is not None and record.lease_token == token and record.owner_run_id == label


def test_threads_with_their_own_clients_claim_each_key_once(shared_store_url: str) -> None:
    gate = threading.Barrier(WORKERS)
    runs = _run_threads(lambda i: _claim_all(shared_store_url, gate, f"t{i}", KEYS), WORKERS)
    _assert_exactly_once([w for ws in runs for w in ws], shared_store_url)
    _assert_only_records_and_locks(shared_store_url)


def _reporting(out: Any, work: Any, *args: Any) -> None:
    """Run a child's work and always answer the parent, with the error text if it failed."""
    try:
        out.put(("ok", work(*args)))
    except BaseException as exc:
        out.put(("error", f"{type(exc).__name__}: {exc}"))
        raise


def _results(out: Any, count: int) -> list[Any]:
    answers = [out.get(timeout=60) for _ in range(count)]
    errors = [text for status, text in answers if status == "error"]
    assert errors == []
    return [value for _, value in answers]


def _process_claimer(url: str, gate: BarrierType, label: str, out: Any) -> None:
    _reporting(out, _claim_all, url, gate, label, KEYS)


def test_processes_claim_each_key_once(shared_store_url: str) -> None:
    context = multiprocessing.get_context("fork")
    gate = context.Barrier(WORKERS)
    out = context.Queue()
    procs = [
        context.Process(target=_process_claimer, args=(shared_store_url, gate, f"p{i}", out))
        for i in range(WORKERS)
    ]
    for proc in procs:
        proc.start()
    wins = [w for ws in _results(out, len(procs)) for w in ws]
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    _assert_exactly_once(wins, shared_store_url)
    _assert_only_records_and_locks(shared_store_url)


def _claim_then_finish(url: str, gate: BarrierType, label: str, out: Any) -> None:
    _reporting(out, _claim_and_finish, url, gate, label)


def _claim_and_finish(url: str, gate: BarrierType, label: str) -> tuple[list[tuple[str, str, str]], list[str]]:
    # A fast claimer may already have finished a key when a slower one reaches it.
    wins = _claim_all(url, gate, label, KEYS, others=("busy", "done"))
    lost = []
    with CheckpointClient(url) as cp:
        for key, _, token in wins:
            try:
                cp.done(NS, key, token, result={"by": label})
            except Exception as exc:  # reported to the parent, which fails the test with it
                lost.append(f"{key}: {exc}")
    return wins, lost


def _collector(url: str, gate: BarrierType, stop: EventType, out: Any) -> None:
    collected = 0
    rounds = 0
    with CheckpointClient(url) as cp:
        cp.get(NS, KEYS[0])
        gate.wait()
        while not stop.is_set() or rounds == 0:
            collected += cp.gc()
            rounds += 1
    out.put((collected, rounds))


def test_gc_racing_claims_never_removes_a_live_lease(shared_store_url: str) -> None:
    # Every key starts as an expired claim, so the collector and the claimers fight over each one.
    with CheckpointClient(shared_store_url) as cp:
        for key in KEYS:
            assert cp.claim(NS, key, owner_run_id="crashed", lease_ms=1).kind == "claimed"
    time.sleep(0.01)

    context = multiprocessing.get_context("fork")
    claimers = 4
    gate = context.Barrier(claimers + 1)
    stop = context.Event()
    out = context.Queue()
    gc_out = context.Queue()
    procs = [
        context.Process(target=_claim_then_finish, args=(shared_store_url, gate, f"p{i}", out))
        for i in range(claimers)
    ]
    collector = context.Process(target=_collector, args=(shared_store_url, gate, stop, gc_out))
    collector.start()
    for proc in procs:
        proc.start()
    reports = _results(out, len(procs))
    stop.set()
    collected, rounds = gc_out.get(timeout=60)
    for proc in [*procs, collector]:
        proc.join(30)
        assert proc.exitcode == 0

    wins = [w for ws, _ in reports for w in ws]
    lost = [line for _, ls in reports for line in ls]
    assert lost == []  # no holder's lease was collected under it
    counts = Counter(key for key, _, _ in wins)
    assert sorted(counts) == sorted(KEYS) and set(counts.values()) == {1}
    assert rounds >= 1 and 0 <= collected <= len(KEYS)
    with CheckpointClient(shared_store_url) as cp:
        records = cp.list(NS)
        assert sorted(r.key for r in records) == sorted(KEYS)
        assert {r.status for r in records} == {Status.DONE}
        # A key collected before its claim starts over; one claimed over the expired lease counts two.
        assert {r.attempts for r in records} <= {1, 2}
    _assert_only_records_and_locks(shared_store_url)


def test_two_clients_in_one_process_exclude_each_other(tmp_path: Path) -> None:
    """Record locks belong to a process: two clients of one directory must still not both win a key."""
    url = f"file://{tmp_path / 'store'}"
    first, second = CheckpointClient(url), CheckpointClient(url)
    try:
        gate = threading.Barrier(2)
        clients = [first, second]
        rounds = 200

        def worker(index: int) -> int:
            wins = 0
            gate.wait()
            for n in range(rounds):
                if clients[index].claim(NS, f"r{n}", lease_ms=LONG_LEASE).kind == "claimed":
                    wins += 1
            return wins

        assert sum(_run_threads(worker, 2)) == rounds
        second.close()  # closing one client must not drop the locks the other relies on
        assert first.claim(NS, "after-close").kind == "claimed"
    finally:
        first.close()
        second.close()
