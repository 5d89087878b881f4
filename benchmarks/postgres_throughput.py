"""Throughput of the PostgreSQL store beside SQLite, in one run on one machine (a benchmark, not a test).

    python benchmarks/postgres_throughput.py [--url postgresql://postgres@127.0.0.1:5432/test] [--cycles 2000]

Two workloads, each with 1 process and with 8 processes released by one start gate:
  claim+done  every process claims and finishes its own fresh keys (two writes per key);
  claims/done every process claims keys that are already done (a read that answers "done").
The PostgreSQL figures use a schema made for the run and dropped at its end.
"""

from __future__ import annotations

import argparse
import multiprocessing
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

from mooncat_checkpoint import CheckpointClient

NS = "bench"
DONE_KEYS = 1_000
CONTEXT = multiprocessing.get_context("spawn")


def _cycles(url: str, label: str, count: int, gate: Any, out: Any) -> None:
    with CheckpointClient(url) as cp:
        cp.get(NS, "warm-up")
        gate.wait(120)
        start = time.perf_counter()
        for n in range(count):
            outcome = cp.claim(NS, f"{label}-{n}", owner_run_id=label)
            assert outcome.lease_token is not None, outcome
            cp.done(NS, f"{label}-{n}", outcome.lease_token, result=n)
        out.put(time.perf_counter() - start)


def _claims_on_done(url: str, label: str, count: int, gate: Any, out: Any) -> None:
    with CheckpointClient(url) as cp:
        cp.get(NS, "warm-up")
        gate.wait(120)
        start = time.perf_counter()
        for n in range(count):
            assert cp.claim(NS, f"done-{n % DONE_KEYS}").kind == "done"
        out.put(time.perf_counter() - start)


def _prepare_done_keys(url: str) -> None:
    with CheckpointClient(url) as cp:
        claimed = cp.claim_many(NS, [f"done-{n}" for n in range(DONE_KEYS)])
        for key, outcome in claimed.items():
            if outcome.lease_token is not None:
                cp.done(NS, key, outcome.lease_token, result=key)


def _run(target: Any, url: str, processes: int, per_process: int) -> float:
    """Operations per second over all processes, from the gate to the slowest finisher."""
    gate = CONTEXT.Barrier(processes)
    out = CONTEXT.Queue()
    procs = [
        CONTEXT.Process(target=target, args=(url, f"p{i}-{secrets.token_hex(3)}", per_process, gate, out))
        for i in range(processes)
    ]
    for proc in procs:
        proc.start()
    elapsed = [out.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join(60)
        if proc.exitcode != 0:
            raise SystemExit(f"a benchmark process failed (exit code {proc.exitcode})")
    return processes * per_process / max(elapsed)


def _measure(url: str, cycles: int) -> dict[str, float]:
    _prepare_done_keys(url)
    figures: dict[str, float] = {}
    for processes in (1, 8):
        figures[f"claim+done/s, {processes} proc"] = _run(_cycles, url, processes, max(cycles // processes, 50))
        figures[f"claims on done keys/s, {processes} proc"] = _run(
            _claims_on_done, url, processes, max(4 * cycles // processes, 200)
        )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test", help="PostgreSQL server")
    parser.add_argument("--cycles", type=int, default=2_000, help="claim+done cycles per row (split over processes)")
    args = parser.parse_args()

    import psycopg

    schema = f"mooncat_bench_{secrets.token_hex(4)}"
    separator = "&" if "?" in args.url else "?"
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["SQLite"] = _measure(f"sqlite://{Path(tmp) / 'bench.db'}", args.cycles)
    try:
        results["PostgreSQL"] = _measure(f"{args.url}{separator}schema={schema}", args.cycles)
    finally:
        with psycopg.connect(args.url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    rows = list(next(iter(results.values())))
    width = max(len(r) for r in rows)
    print(f"{'':{width}}  " + "  ".join(f"{name:>12}" for name in results))
    for row in rows:
        print(f"{row:{width}}  " + "  ".join(f"{figures[row]:>12,.0f}" for figures in results.values()))


if __name__ == "__main__":
    main()
