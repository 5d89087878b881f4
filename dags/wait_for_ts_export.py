"""Wait for a key that a TypeScript job finishes, then use its result.

A Node service (``mooncat-checkpoint`` on npm) exports the day's data and records
``ts-jobs`` / ``export/<ds>`` as done with ``{"rows": ..., "file": ...}`` in the same store. The sensor
waits on the triggerer (``deferrable=True``), holding no worker slot, and hands the TS job's result to
the next task as XCom. A ``failed`` record fails the sensor instead of waiting forever.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import dag, task
from mooncat_airflow import CheckpointSensor


@dag(
    dag_id="wait_for_ts_export",
    schedule="@daily",
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    tags=["mooncat", "example"],
)
def wait_for_ts_export() -> None:
    exported = CheckpointSensor(
        task_id="wait_for_export",
        namespace="ts-jobs",
        key="export/{{ ds }}",
        deferrable=True,
        poke_interval=30,
        timeout=6 * 60 * 60,
    )

    @task
    def publish(export: dict[str, Any]) -> str:
        return f"publishing {export['rows']} rows from {export['file']}"

    publish(exported.output)


wait_for_ts_export()
