"""What a task instance contributes to a checkpoint: its owner id and whether this is its last try."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import Context

# Template fragments that read the map index; a key built only from them ties a result to a position
# in the input list instead of to the input itself.
_MAP_INDEX_RE = re.compile(r"map_index")


def owner_run_id(context: Context) -> str:
    """Identify this exact attempt, so a record always says which run, task, item and try holds it."""
    ti = context["ti"]
    map_index = getattr(ti, "map_index", -1)
    map_index = -1 if map_index is None else map_index
    return f"airflow:{ti.dag_id}/{ti.run_id}/{ti.task_id}/{map_index}/{ti.try_number}"


def is_last_try(context: Context) -> bool:
    """True when Airflow will not retry this task instance after a failure."""
    ti = context["ti"]
    try_number = getattr(ti, "try_number", 1) or 1
    max_tries = getattr(ti, "max_tries", 0) or 0
    # max_tries counts retries; try_number starts at 1, so try max_tries + 1 is the last one.
    return try_number > max_tries


def map_index_of(context: Context) -> int:
    ti = context["ti"]
    value: Any = getattr(ti, "map_index", -1)
    return -1 if value is None else int(value)


def key_uses_map_index(spec: Any) -> bool:
    """True when a key template mentions the map index (a warning sign for mapped tasks)."""
    return isinstance(spec, str) and bool(_MAP_INDEX_RE.search(spec))
