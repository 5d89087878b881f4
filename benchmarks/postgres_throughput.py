"""Throughput of the PostgreSQL store beside SQLite, in one run on one machine (a benchmark, not a test).

    python benchmarks/postgres_throughput.py [--url postgresql://postgres@127.0.0.1:5432/test] [--cycles 2000]
        [--claims 8000] [--processes 1,8] [--rounds 3] [--json]

Two workloads, each with 1 process and with 8 processes released by one start gate:
  claim+done  every process claims and finishes its own fresh keys (two writes per key; `done` waits for
              the disk, as the default durability says);
  claims/done every process claims keys that are already done (a read that answers "done": the rerun path).
Rounds alternate between the stores (SQLite, then PostgreSQL, then SQLite again ...) and each figure is the
best round, so load from elsewhere on the machine hurts one round rather than one store. The PostgreSQL
figures use a schema made for the run and dropped at its end; SQLite uses a temporary file.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "core"))

from mooncat_checkpoint import CheckpointClient  # noqa: E402

NS = "bench"
DONE_KEYS = 1_000
CONTEXT = multiprocessing.get_context("spawn")


def _cycles(url: str, label: str, count: int, gate: Any, out: Any) -> None:
    try:
        with CheckpointClient(url) as cp:
            cp.get(NS, "warm-up")  # connect (and open the pool) before the clock starts
            gate.wait(120)
            start = time.perf_counter()
            for n in range(count):
                outcome = cp.claim(NS, f"{label}-{n}", owner_run_id=label)
                if outcome.lease_token is None:
                    raise RuntimeError(f"fresh key {label}-{n} was {outcome.kind}")
                cp.done(NS, f"{label}-{n}", outcome.lease_token, result=n)
            out.put(("ok", time.perf_counter() - start))
    except BaseException as exc:  # the parent reports it instead of waiting for a figure
        out.put(("error", f"{type(exc).__name__}: {exc}"))


def _claims_on_done(url: str, label: str, count: int, gate: Any, out: Any) -> None:
    try:
        with CheckpointClient(url) as cp:
            cp.get(NS, "warm-up")
            gate.wait(120)
            start = time.perf_counter()
            for n in range(count):
                kind = cp.claim(NS, f"done-{n % DONE_KEYS}").kind
                if kind != "done":
                    raise RuntimeError(f"done-{n % DONE_KEYS} answered {kind}")
            out.put(("ok", time.perf_counter() - start))
    except BaseException as exc:
        out.put(("error", f"{type(exc).__name__}: {exc}"))


def _prepare_done_keys(url: str) -> None:
    with CheckpointClient(url, durability="fast") as cp:
        claimed = cp.claim_many(NS, [f"done-{n}" for n in range(DONE_KEYS)])
        for key, outcome in claimed.items():
            if outcome.lease_token is not None:
                cp.done(NS, key, outcome.lease_token, result=key)


Worker = Callable[[str, str, int, Any, Any], None]


def _run(target: Worker, url: str, processes: int, per_process: int) -> float:
    """Operations per second over all processes, from the gate to the slowest finisher."""
    gate = CONTEXT.Barrier(processes)
    out = CONTEXT.Queue()
    procs = [
        CONTEXT.Process(target=target, args=(url, f"p{i}-{secrets.token_hex(3)}", per_process, gate, out))
        for i in range(processes)
    ]
    for proc in procs:
        proc.start()
    try:
        reports = [out.get(timeout=600) for _ in procs]
    finally:
        for proc in procs:
            proc.join(60)
            if proc.is_alive():
                proc.kill()
    errors = [str(detail) for status, detail in reports if status != "ok"]
    if errors:
        raise SystemExit("a benchmark process failed: " + "; ".join(errors))
    return processes * per_process / max(float(seconds) for _, seconds in reports)


def _round(url: str, cycles: int, claims: int, process_counts: list[int]) -> dict[str, float]:
    figures: dict[str, float] = {}
    for processes in process_counts:
        figures[f"claim+done/s, {processes} proc"] = _run(_cycles, url, processes, max(cycles // processes, 50))
        figures[f"claims on done keys/s, {processes} proc"] = _run(
            _claims_on_done, url, processes, max(claims // processes, 200)
        )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("MOONCAT_TEST_POSTGRES_URL",
                                                        "postgresql://postgres@127.0.0.1:5432/test"),
                        help="PostgreSQL server (default: MOONCAT_TEST_POSTGRES_URL or the local test server)")
    parser.add_argument("--cycles", type=int, default=2_000, help="claim+done cycles per figure, split over processes")
    parser.add_argument("--claims", type=int, default=8_000, help="claims on done keys per figure, split likewise")
    parser.add_argument("--processes", default="1,8", help="process counts to measure (default 1,8)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per store; the best is kept")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    process_counts = [int(p) for p in args.processes.split(",")]
    if args.cycles <= 0 or args.claims <= 0 or args.rounds <= 0 or min(process_counts) <= 0:
        parser.error("--cycles, --claims, --rounds and every process count must be positive")

    import psycopg

    schema = f"mooncat_bench_{secrets.token_hex(4)}"
    separator = "&" if "?" in args.url else "?"
    load_before = os.getloadavg()
    best: dict[str, dict[str, float]] = {"SQLite": {}, "PostgreSQL": {}}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            urls = {"SQLite": f"sqlite://{Path(tmp) / 'bench.db'}",
                    "PostgreSQL": f"{args.url}{separator}schema={schema}"}
            for url in urls.values():
                _prepare_done_keys(url)
            for number in range(1, args.rounds + 1):
                for store, url in urls.items():
                    print(f"round {number}/{args.rounds}: {store}", file=sys.stderr, flush=True)
                    for row, rate in _round(url, args.cycles, args.claims, process_counts).items():
                        best[store][row] = max(best[store].get(row, 0.0), rate)
    finally:
        with psycopg.connect(args.url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    load_after = os.getloadavg()

    low, high = min(process_counts), max(process_counts)
    scaling = {store: figures[f"claim+done/s, {high} proc"] / figures[f"claim+done/s, {low} proc"]
               for store, figures in best.items()}
    if args.json:
        print(json.dumps({"cores": os.cpu_count(), "rounds": args.rounds, "cycles": args.cycles,
                          "claims": args.claims, "load_average_before": [round(x, 2) for x in load_before],
                          "load_average_after": [round(x, 2) for x in load_after],
                          "figures": {s: {r: round(v) for r, v in f.items()} for s, f in best.items()},
                          f"claim+done scaling {high}/{low} proc": {s: round(v, 2) for s, v in scaling.items()}},
                         indent=2))
        return 0
    print(f"{os.cpu_count()} cores; load average {[round(x, 2) for x in load_before]} before, "
          f"{[round(x, 2) for x in load_after]} after; best of {args.rounds} alternating rounds")
    print("| workload | SQLite | PostgreSQL | PostgreSQL / SQLite |")
    print("|---|---:|---:|---:|")
    for row in best["SQLite"]:
        sqlite, postgres = best["SQLite"][row], best["PostgreSQL"][row]
        print(f"| {row} | {sqlite:,.0f} | {postgres:,.0f} | {postgres / sqlite:.2f}x |")
    print(f"| claim+done, {high} proc / {low} proc | {scaling['SQLite']:.2f}x | {scaling['PostgreSQL']:.2f}x | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
