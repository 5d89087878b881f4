"""What checkpointing costs a Prefect task run, measured in one process (not a test).

For a no-op task, the time per task run of:

- a plain ``@task``;
- the same function as ``@checkpoint_task``, first run (claim, run, done);
- the same, skip run (every key already done: the task run ends ``Cached``);
- Prefect's own cache hit on the same function (``cache_policy=INPUTS``, results persisted), run again.

Every phase runs inside one flow, in the same order, for several rounds; the table shows the median round.
It runs against a throwaway Prefect test server and a throwaway checkpoint store (the file backend, which
is the default store, unless ``--url`` names another).

    python benchmarks/prefect_overhead.py [--runs 100] [--rounds 5] [--url sqlite://./bench.db] [--durability fast]
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


def measure(runs: int, rounds: int, client: CheckpointClient, pause: float) -> dict[str, float]:
    plain = task(noop, name="plain")
    prefect_cached = task(noop, name="prefect-cache", cache_policy=INPUTS, persist_result=True)
    timings: dict[str, list[float]] = {"plain": [], "first": [], "skip": [], "prefect_hit": []}

    def per_run(fn: object, args: range) -> float:
        started = time.perf_counter()
        for n in args:
            fn(n)  # type: ignore[operator]
        elapsed = (time.perf_counter() - started) / len(args)
        # Let the test server record the burst of task run events before the next phase, so that no phase
        # pays for the previous one's backlog (and the server's SQLite does not fall behind and answer 503).
        time.sleep(pause)
        return elapsed

    @flow(name="checkpoint-overhead")
    def bench(round_no: int) -> None:
        # Fresh keys each round, so "first" really claims and records, and Prefect's cache starts cold.
        wrapped = checkpoint_task(noop, namespace=f"bench-{uuid.uuid4().hex[:8]}", key="n/{n}", client=client)
        keys = range(round_no * runs, (round_no + 1) * runs)
        timings["plain"].append(per_run(plain, keys))
        timings["first"].append(per_run(wrapped, keys))
        timings["skip"].append(per_run(wrapped, keys))
        per_run(prefect_cached, keys)  # fill Prefect's cache
        timings["prefect_hit"].append(per_run(prefect_cached, keys))

    bench(round_no=-1)  # warm-up: imports, connections, the server's first queries
    for timing in timings.values():
        timing.clear()
    for round_no in range(rounds):
        bench(round_no=round_no)
    return {phase: statistics.median(values) for phase, values in timings.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100, help="task runs per phase and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--url", default=f"file://{_scratch / 'checkpoints'}", help="checkpoint store URL")
    parser.add_argument("--durability", choices=["full", "fast"], default="full",
                        help="store durability: full syncs every write to disk (the default), fast does not")
    parser.add_argument("--pause", type=float, default=2.0, help="seconds between phases (not measured)")
    args = parser.parse_args(argv)
    client = CheckpointClient(args.url, durability=args.durability)
    with prefect_test_harness(server_startup_timeout=240):
        result = measure(args.runs, args.rounds, client, args.pause)
    plain = result["plain"]
    rows = [
        ("plain @task", result["plain"], None),
        ("checkpoint_task, first run", result["first"], result["first"] / plain - 1),
        ("checkpoint_task, skip run (Cached)", result["skip"], result["skip"] / plain - 1),
        ("Prefect cache hit (INPUTS)", result["prefect_hit"], result["prefect_hit"] / plain - 1),
    ]
    print(f"no-op task, {args.runs} runs x {args.rounds} rounds (median round), "
          f"store {args.url} (durability {args.durability})")
    print(f"{'phase':<38}{'ms / task run':>14}{'vs plain':>10}")
    for name, seconds, delta in rows:
        print(f"{name:<38}{seconds * 1000:>14.2f}{'' if delta is None else f'{delta:+.1%}':>10}")
    print(f"skip vs Prefect cache hit: {result['skip'] / result['prefect_hit'] - 1:+.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
