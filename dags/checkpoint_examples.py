"""Each way of putting Airflow work under a mooncat checkpoint.

Run it twice (or clear it): the second run does nothing again. ``fetch_rates`` and ``report`` return
their stored results as XCom, ``export`` ends skipped because it is declared ``on_done="skip"``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, task
from mooncat_airflow import CheckpointOperator, checkpointed

NAMESPACE = "examples"

# Any existing operator gains the checkpoint arguments (all prefixed ``checkpoint_``).
CheckpointedBashOperator = checkpointed(BashOperator)


def fetch_rates(day: str) -> dict[str, Any]:
    """Stand-in for a call that must not be repeated (a paid API, a submitted job...)."""
    return {"day": day, "EURUSD": 1.09, "GBPUSD": 1.27}


with DAG(
    dag_id="mooncat_checkpoint_examples",
    schedule="@daily",
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    tags=["mooncat", "example"],
) as dag:
    rates = CheckpointOperator(
        task_id="fetch_rates",
        python_callable=fetch_rates,
        op_kwargs={"day": "{{ ds }}"},
        namespace=NAMESPACE,
        # Jinja first, then the callable's own arguments: both spellings give "rates/<ds>".
        key="rates/{day}",
        retries=2,
        retry_delay=dt.timedelta(seconds=10),
    )

    export = CheckpointedBashOperator(
        task_id="export",
        bash_command="echo exported {{ ds }}",
        checkpoint_namespace=NAMESPACE,
        checkpoint_key="export/{{ ds }}",
        checkpoint_on_done="skip",
    )

    @task.mooncat(namespace=NAMESPACE, key=lambda args: f"report/{args['rates']['day']}")
    def report(rates: dict[str, Any]) -> str:
        return f"{rates['day']}: EURUSD {rates['EURUSD']}"

    rates >> export
    report(rates.output)
