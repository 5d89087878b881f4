"""mooncat-checkpoint: never do finished work twice.

Per (namespace, key) a store records claimed / done / failed, with leases and fencing tokens, in
files, SQLite, memory or PostgreSQL, readable by the TypeScript package `mooncat-checkpoint` too.
"""

from .client import AsyncCheckpointClient, CheckpointClient, CorruptRecordWarning
from .config import DEFAULT_URL, ENV_VAR, resolve_url
from .errors import (
    BackendUnavailableError,
    CheckpointError,
    CheckpointResultSerializationError,
    ConfigError,
    CorruptRecordError,
    InvalidArgumentError,
    KeyConflictError,
    LeaseLostError,
    StepBusyError,
    StepFailedError,
)
from .keys import render_key, storage_segment
from .protocol import (
    DEFAULT_EXTEND_MS,
    DEFAULT_LEASE_MS,
    MAX_INLINE_RESULT_BYTES,
    Checkpoint,
    ClaimResult,
    CorruptRecord,
    Status,
)
from .step import AsyncStep, Step

# 0.1.0 spelled the key hash helper this way.
safe_key_segment = storage_segment

__version__ = "0.2.0"

__all__ = [
    "DEFAULT_EXTEND_MS", "DEFAULT_LEASE_MS", "DEFAULT_URL", "ENV_VAR", "MAX_INLINE_RESULT_BYTES",
    "AsyncCheckpointClient", "AsyncStep", "BackendUnavailableError", "Checkpoint", "CheckpointClient",
    "CheckpointError", "CheckpointResultSerializationError", "ClaimResult", "ConfigError", "CorruptRecord",
    "CorruptRecordError", "CorruptRecordWarning", "InvalidArgumentError", "KeyConflictError", "LeaseLostError",
    "Status", "Step", "StepBusyError", "StepFailedError", "render_key", "resolve_url", "safe_key_segment",
    "storage_segment",
]
