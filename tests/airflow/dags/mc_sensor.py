"""Sensors waiting for a key that some other system finishes."""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG
from mooncat_airflow import CheckpointSensor

START = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)

with DAG("mc_sensor", schedule=None, start_date=START, catchup=False) as mc_sensor:
    CheckpointSensor(
        task_id="wait",
        namespace="{{ dag_run.conf['ns'] }}",
        key="{{ dag_run.conf['key'] }}",
        poke_interval=0.2,
        timeout=120,
    )

with DAG("mc_sensor_deferrable", schedule=None, start_date=START, catchup=False) as mc_sensor_deferrable:
    CheckpointSensor(
        task_id="wait",
        namespace="{{ dag_run.conf['ns'] }}",
        key="{{ dag_run.conf['key'] }}",
        poke_interval=0.2,
        timeout=120,
        deferrable=True,
    )

with DAG("mc_sensor_soft", schedule=None, start_date=START, catchup=False) as mc_sensor_soft:
    CheckpointSensor(
        task_id="wait",
        namespace="{{ dag_run.conf['ns'] }}",
        key="{{ dag_run.conf['key'] }}",
        poke_interval=0.2,
        timeout=120,
        soft_fail=True,
    )

with DAG("mc_sensor_reschedule", schedule=None, start_date=START, catchup=False) as mc_sensor_reschedule:
    CheckpointSensor(
        task_id="wait",
        namespace="{{ dag_run.conf['ns'] }}",
        key="{{ dag_run.conf['key'] }}",
        poke_interval=0.3,
        timeout=120,
        mode="reschedule",
    )
