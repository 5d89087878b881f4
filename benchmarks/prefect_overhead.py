"""What checkpointing costs a Prefect task run, measured in one process (not a test).

For a no-op task, the time per task run of:

- a plain ``@task``;
- the same function as ``@checkpoint_task``, first run (claim, run, done);
- the same, skip run (every key already done: the task run ends ``Cached``);
- Prefect's own cache hit on the same function (``cache_policy=INPUTS``, results persisted), run again.

Every round is one flow run with fresh keys, in which the phases take turns in batches of a few task runs.
The table shows, per phase, the median over rounds of the wall-clock and the CPU time (this process, all
threads) per task run, and each ratio as the median of the per-round ratios. On a shared machine the CPU
time is the steadier figure; the wall time adds what the store waits for (a durable store syncs each write
to disk).
It runs against a throwaway Prefect test server and a throwaway checkpoint store (the file backend, which
is the default store, unless ``--url`` names another).

    python benchmarks/prefect_overhead.py [--runs 100] [--rounds 5] [--batch 10]
                                          [--url sqlite://./bench.db] [--durability fast]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

_scratch = Path(tempfile.mkdtemp(prefix="mooncat-bench-"))
os.environ.setdefault("PREFECT_HOME", str(_scratch / "prefect"))
os.environ.setdefault("PREFECT_LOCAL_STORAGE_PATH", str(_scratch / "prefect" / "storage"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")  # log lines would dominate a no-op task

from mooncat_checkpoint import CheckpointClient  # noqa: E402
from mooncat_prefect import checkpoint_task  # noqa: E402
from prefect import flow, task  # noqa: E402
from prefect.cache_policies import INPUTS  # noqa: E402
from prefect.testing.utilities import prefect_test_harness  # noqa: E402


def noop(n: int) -> int:
    return n


PHASES = ("plain", "first", "skip", "prefect_hit")


Timings = dict[str, list[tuple[float, float]]]


def measure(runs: int, rounds: int, batch: int, client: CheckpointClient, pause: float) -> Timings:
    """Per phase, one (wall seconds, CPU seconds) per task run for each round."""
    plain = task(noop, name="plain")
    prefect_cached = task(noop, name="prefect-cache", cache_policy=INPUTS, persist_result=True)
    timings: Timings = {phase: [] for phase in PHASES}

    def timed(fn: object, args: range) -> tuple[float, float]:
        started, cpu_started = time.perf_counter(), time.process_time()
        for n in args:
            fn(n)  # type: ignore[operator]
        return time.perf_counter() - started, time.process_time() - cpu_started

    @flow(name="checkpoint-overhead")
    def bench(round_no: int) -> None:
        # Fresh keys each round, so "first" really claims and records, and Prefect's cache starts cold.
        wrapped = checkpoint_task(noop, namespace=f"bench-{uuid.uuid4().hex[:8]}", key="n/{n}", client=client)
        totals = {phase: [0.0, 0.0] for phase in PHASES}
        # The phases take turns in small batches, so that each sees the same background: the test server
        # recording the events of earlier task runs, and whatever else the machine is doing.
        for start in range(round_no * runs, (round_no + 1) * runs, batch):
            keys = range(start, min(start + batch, (round_no + 1) * runs))
            for phase, fn in (("plain", plain), ("first", wrapped), ("skip", wrapped),
                              (None, prefect_cached), ("prefect_hit", prefect_cached)):
                wall, cpu = timed(fn, keys)
                if phase is not None:  # None: the run that fills Prefect's cache
                    totals[phase][0] += wall
                    totals[phase][1] += cpu
        for phase, (wall, cpu) in totals.items():
            timings[phase].append((wall / runs, cpu / runs))
        # Let the test server catch up with the round's events before the next round.
        time.sleep(pause)

    bench(round_no=-1)  # warm-up: imports, connections, the server's first queries
    for timing in timings.values():
        timing.clear()
    for round_no in range(rounds):
        bench(round_no=round_no)
    return timings


def _ratio(timings: Timings, phase: str, base: str, index: int) -> float:
    # Median of per-round ratios: both phases of a round ran seconds apart, so a load change on a shared
    # machine between rounds cancels out of each ratio.
    return statistics.median(a[index] / b[index] for a, b in zip(timings[phase], timings[base], strict=True)) - 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100, help="task runs per phase and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=10, help="task runs per turn of a phase")
    parser.add_argument("--url", default=f"file://{_scratch / 'checkpoints'}", help="checkpoint store URL")
    parser.add_argument("--durability", choices=["full", "fast"], default="full",
                        help="store durability: full syncs every write to disk (the default), fast does not")
    parser.add_argument("--pause", type=float, default=2.0, help="seconds between rounds (not measured)")
    args = parser.parse_args(argv)
    client = CheckpointClient(args.url, durability=args.durability)
    with prefect_test_harness(server_startup_timeout=240):
        timings = measure(args.runs, args.rounds, args.batch, client, args.pause)
    names = {
        "plain": "plain @task",
        "first": "checkpoint_task, first run",
        "skip": "checkpoint_task, skip run (Cached)",
        "prefect_hit": "Prefect cache hit (INPUTS)",
    }
    print(f"no-op task, {args.runs} runs x {args.rounds} rounds (medians over rounds), "
          f"store {args.url} (durability {args.durability}), load average {os.getloadavg()[0]:.1f}")
    print(f"{'phase':<38}{'wall ms/run':>12}{'vs plain':>10}{'CPU ms/run':>12}{'vs plain':>10}")
    for phase in PHASES:
        wall = statistics.median(t[0] for t in timings[phase]) * 1000
        cpu = statistics.median(t[1] for t in timings[phase]) * 1000
        if phase == "plain":
            print(f"{names[phase]:<38}{wall:>12.2f}{'':>10}{cpu:>12.2f}{'':>10}")
        else:
            print(f"{names[phase]:<38}{wall:>12.2f}{_ratio(timings, phase, 'plain', 0):>+10.1%}"
                  f"{cpu:>12.2f}{_ratio(timings, phase, 'plain', 1):>+10.1%}")
    print(f"skip vs Prefect cache hit: wall {_ratio(timings, 'skip', 'prefect_hit', 0):+.1%}, "
          f"CPU {_ratio(timings, 'skip', 'prefect_hit', 1):+.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
