"""A table artifact per flow run: for each checkpointed task, how many keys ran, were skipped and failed.

Outcomes are counted in memory by the process that runs the task, and written once when the flow run ends,
through a state hook that the first checkpointed task of a flow run adds to its flow. One artifact per flow run,
not one per task run: an API call per task run would cost more than a skipped task itself.

Tasks that run in other processes (``ProcessPoolTaskRunner`` workers, remote task workers) count in their own
process, which has no flow engine to write them; such runs are not in the summary. ``summary_rows`` gives the
counts of the current process for callers that want them anyway.
"""

from __future__ import annotations

import threading
import warnings
from collections import defaultdict
from enum import Enum
from typing import Any
from uuid import UUID

from prefect.artifacts import TableArtifact
from prefect.context import FlowRunContext
from prefect.logging import get_logger

ARTIFACT_KEY = "mooncat-checkpoints"

logger = get_logger("mooncat_prefect")


class Outcome(str, Enum):
    RAN = "ran"
    SKIPPED = "skipped"
    FAILED = "failed"


_lock = threading.Lock()
# flow run id -> task name -> outcome -> count
_counts: dict[UUID, dict[str, dict[Outcome, int]]] = {}
_HOOKED = "__mooncat_summary_hook__"


def record(flow_run_id: UUID | None, task_name: str, outcome: Outcome, count: int = 1) -> None:
    """Count task runs' outcomes, and make sure their flow run writes the summary when it ends."""
    if flow_run_id is None:
        return  # a task called outside any flow: there is no flow run to attach a summary to
    with _lock:
        per_task = _counts.get(flow_run_id)
        if per_task is None:
            per_task = _counts[flow_run_id] = defaultdict(lambda: dict.fromkeys(Outcome, 0))
        per_task[task_name][outcome] += count
    _ensure_hook()


def count_skipped(task: Any, count: int) -> None:
    """Count keys of `task` that the flow itself found done (e.g. with one `get_many`) and so never
    submitted, so the flow run's summary shows them as skipped like the task runs that ended Cached."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"count must be a whole number >= 0, got {count!r}")
    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        raise RuntimeError("count_skipped is called from inside a flow run")
    name = task if isinstance(task, str) else task.name
    if count:
        record(ctx.flow_run.id, name, Outcome.SKIPPED, count)


def summary_rows(flow_run_id: UUID) -> list[dict[str, Any]]:
    with _lock:
        per_task = _counts.get(flow_run_id, {})
        return [
            {"task": name, **{outcome.value: counts[outcome] for outcome in Outcome}}
            for name, counts in sorted(per_task.items())
        ]


def _ensure_hook() -> None:
    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow is None:
        return
    flow = ctx.flow
    if getattr(flow, _HOOKED, False):
        return
    with _lock:
        if getattr(flow, _HOOKED, False):
            return
        # The engine reads these lists when the run reaches a final state, so a hook added while the run is
        # going still fires. It stays on the Flow object for later runs, where it writes only that run's rows.
        for hooks in (
            flow.on_completion_hooks,
            flow.on_failure_hooks,
            flow.on_crashed_hooks,
            flow.on_cancellation_hooks,
        ):
            hooks.append(write_summary)
        setattr(flow, _HOOKED, True)


def write_summary(flow: Any, flow_run: Any, state: Any) -> None:
    """Flow state hook: publish this flow run's counts as a table artifact, then forget them."""
    rows = summary_rows(flow_run.id)
    with _lock:
        _counts.pop(flow_run.id, None)
    if not rows:
        return
    totals = {outcome.value: sum(row[outcome.value] for row in rows) for outcome in Outcome}
    description = (
        f"Checkpointed task runs: {totals['ran']} ran, {totals['skipped']} skipped (already done), "
        f"{totals['failed']} failed."
    )
    table = TableArtifact(key=ARTIFACT_KEY, table=rows, description=description, flow_run_id=flow_run.id)
    try:
        with warnings.catch_warnings():
            # Hooks of a crashed run are called outside the run context, which Prefect warns about even
            # though the flow run id is given explicitly.
            warnings.simplefilter("ignore", FutureWarning)
            # _sync: create() dispatches on the calling context, and an async engine may call this hook.
            table.create(_sync=True)  # type: ignore[call-arg]
    except Exception as exc:
        # The summary is informational; a failing artifact call must not turn a finished flow run red.
        logger.warning("could not write the checkpoint summary artifact: %s", exc)
