"""An existing operator that defers itself, put under a checkpoint with ``checkpointed``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger
from airflow.sdk import DAG, BaseOperator
from mooncat_airflow import checkpointed


class SubmitAndWaitOperator(BaseOperator):
    """Stands in for cloud operators that submit a job, defer, and collect the outcome on resume."""

    template_fields = ("marker",)

    def __init__(self, *, marker: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.marker = marker

    def _note(self, text: str) -> None:
        with Path(self.marker).open("a", encoding="utf-8") as fh:
            fh.write(f"{text}\n")

    def execute(self, context: Any) -> None:
        self._note("submitted")
        self.defer(trigger=TimeDeltaTrigger(dt.timedelta(seconds=0.2)), method_name="collect")

    def collect(self, context: Any, event: Any = None) -> dict[str, Any]:
        self._note("collected")
        return {"job": "finished"}


CheckpointedSubmitAndWait = checkpointed(SubmitAndWaitOperator)

with DAG(
    "mc_wrapped_deferring",
    schedule=None,
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
) as mc_wrapped_deferring:
    CheckpointedSubmitAndWait(
        task_id="job",
        marker="{{ dag_run.conf['marker'] }}",
        checkpoint_namespace="{{ dag_run.conf['ns'] }}",
        checkpoint_key="job/{{ ds }}",
    )
