"""How much a checkpoint adds to an Airflow task: a no-op task plain vs under ``@task.mooncat``.

Not a test. Needs the ``[airflow]`` extra. Everything happens in a throwaway AIRFLOW_HOME with a SQLite
metadata database and a SQLite checkpoint store::

    python benchmarks/airflow_overhead.py [--runs 20]

Three cases, each a one-task DAG run with ``dag.test()``:

- ``plain``: ``@task`` returning a constant;
- ``checkpointed, first run``: the same under ``@task.mooncat`` with a new key each run
  (claim, heartbeat start, done);
- ``checkpointed, skip run``: a key that is already done (one read, stored result returned);
- a first run on a connection whose extra sets ``"durability": "fast"``.

The "Checkpoint" link of ``@task.mooncat`` is built by the API server from the rendered fields Airflow
stores anyway, so no case needs to leave it out.

For each it reports medians of three spans, and their difference to ``plain``: the operator's
``execute()`` (where the checkpoint work happens), the task instance's recorded duration (adds Airflow's
task runner, XCom and link writes) and the whole ``dag.test()`` call (adds Airflow's scheduling loop).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

DAG_FILE = textwrap.dedent(
    '''
    """Benchmark DAGs (generated)."""
    import datetime as dt

    from airflow.sdk import dag, task

    START = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)


    @dag(dag_id="bench_plain", schedule=None, start_date=START, catchup=False)
    def bench_plain():
        @task
        def noop():
            return 1

        noop()


    @dag(dag_id="bench_checkpointed", schedule=None, start_date=START, catchup=False)
    def bench_checkpointed():
        @task.mooncat(namespace="bench", key="noop/{{ dag_run.conf['n'] }}")
        def noop():
            return 1

        noop()


    @dag(dag_id="bench_checkpointed_fast", schedule=None, start_date=START, catchup=False)
    def bench_checkpointed_fast():
        @task.mooncat(namespace="bench", key="fast/{{ dag_run.conf['n'] }}", mooncat_conn_id="mooncat_fast")
        def noop():
            return 1

        noop()


    plain = bench_plain()
    checkpointed = bench_checkpointed()
    fast = bench_checkpointed_fast()
    '''
)


def _setup(home: Path) -> None:
    dags = home / "dags"
    dags.mkdir()
    (dags / "bench_dags.py").write_text(DAG_FILE, encoding="utf-8")
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "ERROR",
            "AIRFLOW_CONN_MOONCAT_DEFAULT": json.dumps(
                {"conn_type": "mooncat", "extra": {"url": f"sqlite://{home / 'checkpoints.db'}"}}
            ),
            "AIRFLOW_CONN_MOONCAT_FAST": json.dumps(
                {
                    "conn_type": "mooncat",
                    "extra": {"url": f"sqlite://{home / 'checkpoints.db'}", "durability": "fast"},
                }
            ),
        }
    )
    os.environ.pop("MOONCAT_CHECKPOINT_URL", None)
    sys.path.insert(0, str(dags))


_EXECUTE_SECONDS: list[float] = []


def _time_execute(operator_class: Any) -> None:
    """Record how long each ``execute()`` of ``operator_class`` takes: the part the provider adds to."""
    original = operator_class.execute

    def timed(self: Any, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(self, context)
        finally:
            _EXECUTE_SECONDS.append(time.perf_counter() - started)

    operator_class.execute = timed


def _run(dag: Any, conf: dict[str, Any]) -> tuple[float, float, float]:
    """One dag.test(); returns (execute(), task instance duration, whole call) in seconds."""
    import datetime as dt

    from airflow.utils.session import create_session

    _EXECUTE_SECONDS.clear()
    started = time.perf_counter()
    dag_run = dag.test(logical_date=dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc), run_conf=conf)
    wall = time.perf_counter() - started
    if str(dag_run.state) != "success":
        raise RuntimeError(f"{dag.dag_id} ended {dag_run.state}")
    with create_session() as session:
        (ti,) = dag_run.get_task_instances(session=session)
        return _EXECUTE_SECONDS[-1], float(ti.duration or 0.0), wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="measured runs per case (default 20)")
    args = parser.parse_args(argv)

    home = Path(tempfile.mkdtemp(prefix="mooncat-airflow-bench-"))
    try:
        _setup(home)
        from airflow.utils import db

        db.initdb()
        import bench_dags  # type: ignore[import-not-found]
        from airflow.providers.standard.decorators.python import _PythonDecoratedOperator
        from mooncat_airflow.decorators.checkpoint import _CheckpointDecoratedOperator

        _time_execute(_PythonDecoratedOperator)
        _time_execute(_CheckpointDecoratedOperator)

        # Warm-up: the first dag.test() of a process builds Airflow's in-process API server.
        for _ in range(2):
            _run(bench_dags.plain, {})
        _run(bench_dags.checkpointed, {"n": "warm-up"})
        _run(bench_dags.fast, {"n": "warm-up"})

        samples: dict[str, list[tuple[float, float, float]]] = {
            "plain": [],
            "first": [],
            "skip": [],
            "first_fast": [],
        }
        for i in range(args.runs):
            # Interleaved, so drift (caches, disk) hits every case alike.
            samples["plain"].append(_run(bench_dags.plain, {}))
            samples["first"].append(_run(bench_dags.checkpointed, {"n": f"run-{i}"}))
            samples["skip"].append(_run(bench_dags.checkpointed, {"n": "warm-up"}))
            samples["first_fast"].append(_run(bench_dags.fast, {"n": f"run-{i}"}))
    finally:
        shutil.rmtree(home, ignore_errors=True)

    labels = {
        "plain": "plain @task",
        "first": "checkpointed, first run",
        "skip": "checkpointed, skip run",
        "first_fast": "  durability=fast, first",
    }
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"no-op task under dag.test(), {args.runs} runs per case, {os.cpu_count()} CPUs, load average {load}")
    print("median milliseconds and the difference to the plain task;")
    print("execute(): the operator's execute call; task: the task instance's recorded duration (adds the")
    print("task runner, XComs and links); dag.test(): the whole call")
    columns = ("execute()", "task", "dag.test()")
    header = f"{'case':<28}" + "".join(f"{name:>23}" for name in columns)
    print(header)
    print("-" * len(header))
    base = [statistics.median(s[i] for s in samples["plain"]) * 1000 for i in range(3)]
    for name, rows in samples.items():
        cells = []
        for i in range(3):
            median = statistics.median(s[i] for s in rows) * 1000
            added = f"{median:.1f} ({median - base[i]:+.1f})" if name != "plain" else f"{median:.1f}"
            cells.append(f"{added:>23}")
        print(f"{labels[name]:<28}" + "".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
