"""Running DAGs with ``dag.test()`` and reading what they left behind in the metadata database."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

LOGICAL_DATE = dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc)


def run_dag(dag: Any, conf: dict[str, Any] | None = None) -> Any:
    """One run at the fixed logical date; a rerun clears the previous one first, like a cleared run."""
    return dag.test(logical_date=LOGICAL_DATE, run_conf=conf or {})


def ti_states(dag_run: Any) -> dict[tuple[str, int], str | None]:
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = dag_run.get_task_instances(session=session)
        return {
            (ti.task_id, ti.map_index): (str(getattr(ti.state, "value", ti.state)) if ti.state else None) for ti in tis
        }


def xcom(dag_run: Any, task_id: str, map_index: int = -1, key: str = "return_value") -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        row = session.scalars(
            select(XComModel).where(
                XComModel.dag_id == dag_run.dag_id,
                XComModel.run_id == dag_run.run_id,
                XComModel.task_id == task_id,
                XComModel.map_index == map_index,
                XComModel.key == key,
            )
        ).first()
        if row is None:
            raise LookupError(f"no XCom {key!r} for {dag_run.dag_id}.{task_id}[{map_index}]")
        return XComModel.deserialize_value(row)


def calls(marker: Path) -> list[str]:
    return marker.read_text(encoding="utf-8").splitlines() if marker.exists() else []


def reschedules(dag_id: str, task_id: str) -> list[tuple[dt.datetime, dt.datetime]]:
    """(start_date, reschedule_date) of every reschedule Airflow recorded for the task in its current run."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.taskreschedule import TaskReschedule
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(TaskReschedule.start_date, TaskReschedule.reschedule_date)
            .join(TaskInstance, TaskInstance.id == TaskReschedule.ti_id)
            .where(TaskInstance.dag_id == dag_id, TaskInstance.task_id == task_id)
            .order_by(TaskReschedule.id)
        ).all()
    return [(start, when) for start, when in rows]


def wait_for_reschedule(dag_id: str, task_id: str, stop: Any, limit: float = 120.0) -> bool:
    """Block until the task has been rescheduled at least once (or ``stop`` is set, or ``limit`` passes)."""
    import time

    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and not stop.is_set():
        if reschedules(dag_id, task_id):
            return True
        time.sleep(0.1)
    return False
