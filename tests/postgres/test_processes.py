"""Many processes on one PostgreSQL store: exactly-once claims, first use together, skewed clocks, a killed
holder. Every group of processes is released by one start gate so the work overlaps."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections import Counter
from typing import Any

from mooncat_checkpoint import CheckpointClient, Status
from pg_server import SERVER_URL
from pg_support import server_now_ms

NS = "procs"
CONTEXT = multiprocessing.get_context("spawn")  # fresh interpreters: nothing shared but the server
GATE_TIMEOUT_S = 60


def _claim_everything(url: str, gate: Any, label: str, keys: list[str], out: Any) -> None:
    with CheckpointClient(url) as cp:
        cp.get(NS, keys[0])  # connect and create the schema before the gate: the race is about claims
        gate.wait(GATE_TIMEOUT_S)
        wins = []
        for key in keys:
            outcome = cp.claim(NS, key, owner_run_id=label, lease_ms=600_000)
            if outcome.kind == "claimed":
                wins.append((key, outcome.lease_token))
            elif outcome.kind != "busy":
                raise AssertionError(outcome)
        out.put((label, wins))


def test_eight_processes_claim_each_of_1000_keys_exactly_once(pg_url: str) -> None:
    keys = [f"key-{i}" for i in range(1_000)]
    workers = 8
    gate = CONTEXT.Barrier(workers)
    out = CONTEXT.Queue()
    procs = [
        CONTEXT.Process(target=_claim_everything, args=(pg_url, gate, f"w{i}", keys, out)) for i in range(workers)
    ]
    for proc in procs:
        proc.start()
    reports = [out.get(timeout=300) for _ in procs]
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    counts = Counter(key for _, wins in reports for key, _ in wins)
    assert sorted(counts) == sorted(keys)
    assert set(counts.values()) == {1}
    with CheckpointClient(pg_url) as cp:
        stored = {r.key: r for r in cp.list(NS)}
        for label, wins in reports:
            for key, token in wins:
                assert stored[key].owner_run_id == label and stored[key].lease_token == token
                assert stored[key].attempts == 1


def _open_store(url: str, gate: Any, out: Any) -> None:
    gate.wait(GATE_TIMEOUT_S)
    try:
        with CheckpointClient(url) as cp:
            outcome = cp.claim(NS, f"first-{os.getpid()}")
        out.put(outcome.kind)
    except Exception as exc:  # reported to the parent, which fails the test with it
        out.put(repr(exc))


def test_schema_created_by_several_processes_at_once(schema: str, admin: Any) -> None:
    url = f"{SERVER_URL}?schema={schema}"
    workers = 6
    gate = CONTEXT.Barrier(workers)
    out = CONTEXT.Queue()
    procs = [CONTEXT.Process(target=_open_store, args=(url, gate, out)) for _ in range(workers)]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(60)
    assert results == ["claimed"] * workers
    assert admin.execute(f'SELECT version FROM "{schema}".checkpoints_schema_version').fetchall() == [(1,)]


def _skewed_worker(url: str, skew_ms: int, gate: Any, commands: Any, out: Any) -> None:
    # This process's wall clock is off by `skew_ms`; the store must not care.
    real_time, real_time_ns = time.time, time.time_ns
    time.time = lambda: real_time() + skew_ms / 1000  # type: ignore[assignment]
    time.time_ns = lambda: real_time_ns() + skew_ms * 1_000_000  # type: ignore[assignment]
    with CheckpointClient(url) as cp:
        cp.get(NS, "warm-up")
        gate.wait(GATE_TIMEOUT_S)
        while (command := commands.get(timeout=120)) is not None:
            key, lease_ms = command
            outcome = cp.claim(NS, key, owner_run_id=f"skew{skew_ms}", lease_ms=lease_ms)
            out.put((outcome.kind, outcome.checkpoint.lease_until, cp.backend.now_ms()))


def test_clients_with_clocks_minutes_apart_agree_on_expiry(pg_url: str, admin: Any) -> None:
    gate = CONTEXT.Barrier(3)
    ahead_in, ahead_out = CONTEXT.Queue(), CONTEXT.Queue()
    behind_in, behind_out = CONTEXT.Queue(), CONTEXT.Queue()
    ahead = CONTEXT.Process(target=_skewed_worker, args=(pg_url, 10 * 60_000, gate, ahead_in, ahead_out))
    behind = CONTEXT.Process(target=_skewed_worker, args=(pg_url, -10 * 60_000, gate, behind_in, behind_out))
    ahead.start()
    behind.start()
    gate.wait(GATE_TIMEOUT_S)
    try:
        # The client running behind claims; the one ten minutes ahead must still see the lease as live.
        behind_in.put(("k", 60_000))
        kind, _, now = behind_out.get(timeout=60)
        assert kind == "claimed"
        assert abs(now - server_now_ms(admin)) < 60_000  # its "now" is the server's, not its own clock
        ahead_in.put(("k", 60_000))
        assert ahead_out.get(timeout=60)[0] == "busy"
        # A short lease ends by the server's clock for both: the one ahead cannot take it early,
        # the one behind can take it as soon as the server's time has passed it.
        ahead_in.put(("short", 1_500))
        kind, short_until, _ = ahead_out.get(timeout=60)
        assert kind == "claimed"
        assert abs(short_until - 1_500 - server_now_ms(admin)) < 60_000
        behind_in.put(("short", 60_000))
        kind, _, server_after = behind_out.get(timeout=60)
        if server_after < short_until:  # the claim ran before the server's time reached the end
            assert kind == "busy"
        if kind == "busy":
            while server_now_ms(admin) <= short_until:
                time.sleep(0.05)
            behind_in.put(("short", 60_000))
            assert behind_out.get(timeout=60)[0] == "claimed"
    finally:
        ahead_in.put(None)
        behind_in.put(None)
        ahead.join(60)
        behind.join(60)
    assert ahead.exitcode == 0 and behind.exitcode == 0


def _hold_forever(url: str, lease_ms: int, ready: Any) -> None:
    with CheckpointClient(url) as cp:
        outcome = cp.claim(NS, "held", owner_run_id="doomed", lease_ms=lease_ms)
        ready.put(outcome.checkpoint.lease_until)
        while True:
            time.sleep(1)


def test_holder_killed_mid_lease_keeps_the_key_busy_until_expiry(pg_url: str, admin: Any) -> None:
    ready = CONTEXT.Queue()
    holder = CONTEXT.Process(target=_hold_forever, args=(pg_url, 2_000, ready))
    holder.start()
    lease_until = ready.get(timeout=60)
    assert holder.pid is not None
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(30)
    assert holder.exitcode == -signal.SIGKILL
    with CheckpointClient(pg_url) as cp:
        while True:
            outcome = cp.claim(NS, "held", owner_run_id="heir", lease_ms=60_000)
            if outcome.kind == "claimed":
                break
            assert outcome.kind == "busy" and outcome.checkpoint.owner_run_id == "doomed"
            time.sleep(0.05)
        # Taken over only once the server's clock had passed the dead holder's lease.
        assert outcome.checkpoint.updated_at >= lease_until
        assert outcome.checkpoint.attempts == 2
        record = cp.get(NS, "held")
        assert record is not None and record.status is Status.CLAIMED and record.owner_run_id == "heir"
