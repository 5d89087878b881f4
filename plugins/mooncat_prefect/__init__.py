"""Prefect integration for mooncat-checkpoint: tasks that skip keys already done, whoever finished them.

    from prefect import flow
    from mooncat_prefect import checkpoint_task

    @checkpoint_task(namespace="orders", key="orders/{day}", retries=2)
    def load_orders(day: str) -> int:
        ...

A rerun of the flow skips every day already done (the task run ends `Cached`), including days finished by
another flow run, an Airflow task or a TypeScript job sharing the store.
"""

from mooncat_checkpoint import StepBusyError, StepFailedError

from .artifacts import ARTIFACT_KEY, count_skipped
from .results import RESULT_REF_PREFIX, ResultMissingError, ResultUnavailableError
from .tasks import CheckpointOptions, CheckpointTask, checkpoint_task

__all__ = [
    "ARTIFACT_KEY",
    "RESULT_REF_PREFIX",
    "CheckpointOptions",
    "CheckpointTask",
    "ResultMissingError",
    "ResultUnavailableError",
    "StepBusyError",
    "StepFailedError",
    "checkpoint_task",
    "count_skipped",
]
