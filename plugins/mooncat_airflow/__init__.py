"""Airflow provider for mooncat-checkpoint: skip work that any run, in any system, already finished.

The public names are resolved lazily: Airflow imports ``mooncat_airflow.get_provider_info`` while it is
still discovering providers, and importing the operators eagerly at that moment would pull the Task SDK
into a half-initialised interpreter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "CheckpointHook",
    "CheckpointMixin",
    "CheckpointOperator",
    "CheckpointSensor",
    "CheckpointTrigger",
    "checkpointed",
]

_LOCATIONS: dict[str, str] = {
    "CheckpointHook": "mooncat_airflow.hooks.checkpoint",
    "CheckpointMixin": "mooncat_airflow.operators.checkpoint",
    "CheckpointOperator": "mooncat_airflow.operators.checkpoint",
    "checkpointed": "mooncat_airflow.operators.checkpoint",
    "CheckpointSensor": "mooncat_airflow.sensors.checkpoint",
    "CheckpointTrigger": "mooncat_airflow.triggers.checkpoint",
}

if TYPE_CHECKING:
    from mooncat_airflow.hooks.checkpoint import CheckpointHook
    from mooncat_airflow.operators.checkpoint import CheckpointMixin, CheckpointOperator, checkpointed
    from mooncat_airflow.sensors.checkpoint import CheckpointSensor
    from mooncat_airflow.triggers.checkpoint import CheckpointTrigger


def __getattr__(name: str) -> Any:
    module_name = _LOCATIONS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'mooncat_airflow' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
