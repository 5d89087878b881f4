"""Two flow runs in two processes on the same keys, and tasks running in a process pool."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

from mooncat_checkpoint import CheckpointClient
from mooncat_prefect import checkpoint_task
from prefect import flow
from prefect.settings import get_current_settings
from prefect.states import State
from prefect.task_runners import ProcessPoolTaskRunner

RACER = textwrap.dedent(
    """
    import os, sys, time
    from prefect import flow
    from prefect.task_runners import ThreadPoolTaskRunner
    from mooncat_prefect import checkpoint_task

    url, log, keys = sys.argv[1], sys.argv[2], int(sys.argv[3])

    @checkpoint_task(namespace="race", key="item/{n}", url=url)
    def work(n: int) -> int:
        # O_APPEND writes of one short line are atomic: both processes log into one file.
        with open(log, "a") as out:
            out.write(f"{os.getpid()} {n}\\n")
        time.sleep(0.05)
        return n

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=4))
    def racer() -> dict:
        futures = work.map(list(range(keys)))
        for f in futures:
            f.wait()
        return {"values": [f.result() for f in futures], "names": [f.state.name for f in futures]}

    # Both processes start their flow runs together, once both have imported Prefect.
    ready, go = sys.argv[4], sys.argv[5]
    open(f"{ready}.{os.getpid()}", "w").close()
    while not os.path.exists(go):
        time.sleep(0.01)
    out = racer()
    assert out["values"] == list(range(keys))
    print("RAN", out["names"].count("Completed"), "CACHED", out["names"].count("Cached"))
    """
)


def test_two_flow_runs_in_two_processes_run_each_key_once(tmp_path: Path, store_url: str) -> None:
    script = tmp_path / "racer.py"
    script.write_text(RACER, encoding="utf-8")
    log = tmp_path / "executed.log"
    env = {**os.environ, "PREFECT_API_URL": str(get_current_settings().api.url)}
    ready, go = tmp_path / "ready", tmp_path / "go"
    keys = 24
    racers = [
        subprocess.Popen([sys.executable, str(script), store_url, str(log), str(keys), str(ready), str(go)],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(2)
    ]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("ready.*"))) < 2 and time.monotonic() < deadline:
        if any(racer.poll() is not None for racer in racers):
            break
        time.sleep(0.05)
    go.touch()
    outputs = [racer.communicate(timeout=180)[0].decode("utf-8", "replace") for racer in racers]
    for racer, output in zip(racers, outputs, strict=True):
        assert racer.returncode == 0, output[-3000:]
    executed = [line.split() for line in log.read_text().splitlines()]
    per_key = Counter(int(n) for _, n in executed)
    assert per_key == Counter(range(keys)), "every key exactly once across both processes"
    ran = cached = 0
    for output in outputs:
        line = next(line for line in output.splitlines() if line.startswith("RAN "))
        _, r, _, c = line.split()
        ran, cached = ran + int(r), cached + int(c)
    assert (ran, cached) == (keys, keys), "each key ran in one process and ended Cached in the other"
    with CheckpointClient(store_url) as client:
        done = sorted(r.key for r in client.list("race", status="done"))
        assert done == sorted(f"item/{n}" for n in range(keys))


@checkpoint_task(namespace="pool", key="cube/{n}")
def cube(n: int) -> int:
    return n**3


def test_process_pool_task_runner(store_url: str, monkeypatch: Any) -> None:
    # The store comes from the environment, which the worker processes inherit.
    monkeypatch.setenv("MOONCAT_CHECKPOINT_URL", store_url)

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def pipeline() -> dict[str, list[State[Any]]]:
        futures = cube.map([1, 2, 3, 2])
        for future in futures:
            future.wait()
        return {"states": [future.state for future in futures]}

    states = pipeline()["states"]
    assert [s.result() for s in states] == [1, 8, 27, 8]
    with CheckpointClient(store_url) as client:
        assert {r.key: r.result for r in client.list("pool", status="done")} == {
            "cube/1": 1, "cube/2": 8, "cube/3": 27,
        }
    again = pipeline()["states"]
    assert [s.name for s in again] == ["Cached"] * 4
    assert [s.result() for s in again] == [1, 8, 27, 8]


def test_process_pool_with_a_client_already_connected_in_the_parent(store_url: str) -> None:
    client = CheckpointClient(store_url)
    client.list("pool-client")  # connected here: the workers must get a picklable client that reconnects

    @checkpoint_task(namespace="pool-client", key="pid/{n}", client=client)
    def where(n: int) -> int:
        return os.getpid()

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def pipeline() -> dict[str, list[State[Any]]]:
        futures = where.map([1, 2, 3])
        for future in futures:
            future.wait()
        return {"states": [future.state for future in futures]}

    states = pipeline()["states"]
    pids = [s.result() for s in states]
    assert os.getpid() not in pids, "the task runs ran in worker processes"
    records = {r.key: r.result for r in client.list("pool-client", status="done")}
    assert records == {f"pid/{n}": pid for n, pid in zip([1, 2, 3], pids, strict=True)}
    again = pipeline()["states"]
    assert [s.name for s in again] == ["Cached"] * 3 and [s.result() for s in again] == pids
    client.close()
