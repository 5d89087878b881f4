"""Where a checkpointed task's return value lives: inline in the checkpoint, or in Prefect's result storage.

A value that is plain JSON (what JavaScript's ``JSON.parse`` gives back unchanged) and fits the inline limit is
stored in the checkpoint record itself, so every reader, in any language, gets it. Anything else (a tuple, a
DataFrame, a dict with int keys, a huge list) is written with the task's Prefect ``ResultStore`` and the record
holds only ``result_ref = "prefect-result:<storage key>"``. A skip reads it back through the same kind of store,
so a task reading such a ref needs the same result storage configuration as the task that wrote it (the same
``result_storage=`` or the same default storage block); with Prefect's default local storage this means the
same machine and ``PREFECT_LOCAL_STORAGE_PATH``.
"""

from __future__ import annotations

import json
import math
import uuid
from typing import Any

from mooncat_checkpoint import MAX_INLINE_RESULT_BYTES, Checkpoint, CheckpointError
from prefect.context import TaskRunContext
from prefect.results import ResultStore, get_result_store

RESULT_REF_PREFIX = "prefect-result:"

# JavaScript numbers are doubles: an integer beyond this range would be read back as a different number.
_JS_SAFE_INT = 2**53 - 1


class ResultUnavailableError(CheckpointError):
    """A finished checkpoint's stored value cannot be read back by this task."""

    def __init__(self, checkpoint: Checkpoint, reason: str) -> None:
        super().__init__(
            f"checkpoint {checkpoint.namespace}/{checkpoint.key} is done but its result cannot be restored: "
            f"{reason}"
        )
        self.checkpoint = checkpoint
        self.reason = reason


class ResultMissingError(ResultUnavailableError):
    """The artifact a ``prefect-result:`` ref points to is gone: the key must be computed again."""


def is_plain_json(value: Any) -> bool:
    """True when ``value`` survives a JSON round trip through JavaScript with its type and value unchanged."""
    # An explicit walk rather than "json.dumps then compare": dumps accepts tuples and int dict keys, and
    # those come back as lists and str keys, so a skip would return something else than the first run did.
    if value is None or isinstance(value, (bool, str)):
        return True
    if isinstance(value, int):
        return type(value) is int and abs(value) <= _JS_SAFE_INT
    if isinstance(value, float):
        return type(value) is float and math.isfinite(value)
    if type(value) is list:
        return all(is_plain_json(item) for item in value)
    if type(value) is dict:
        return all(type(k) is str and is_plain_json(v) for k, v in value.items())
    return False


def fits_inline(value: Any) -> bool:
    if not is_plain_json(value):
        return False
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return len(text.encode("utf-8")) <= MAX_INLINE_RESULT_BYTES


def current_result_store() -> ResultStore:
    # The task run context's store is already configured for this task (its result_storage, serializer);
    # outside a task run fall back to the ambient default so a bare call still works.
    ctx = TaskRunContext.get()
    if ctx is not None and ctx.result_store is not None:
        return ctx.result_store
    return get_result_store()


def _artifact_key(namespace: str) -> str:
    # A fresh name per write: an owner whose lease was taken over can never overwrite the artifact that the
    # new owner recorded, because the two never share a name.
    return f"mooncat-{namespace}-{uuid.uuid4().hex}"


def encode(value: Any, namespace: str) -> tuple[Any, str | None]:
    """Split a return value into (inline result, result_ref) for ``done``."""
    if fits_inline(value):
        return value, None
    store = current_result_store()
    record = store.create_result_record(value, key=_artifact_key(namespace))
    store.persist_result_record(record)
    return None, RESULT_REF_PREFIX + str(record.metadata.storage_key)


async def aencode(value: Any, namespace: str) -> tuple[Any, str | None]:
    if fits_inline(value):
        return value, None
    store = current_result_store()
    record = store.create_result_record(value, key=_artifact_key(namespace))
    await store.apersist_result_record(record)
    return None, RESULT_REF_PREFIX + str(record.metadata.storage_key)


def _storage_key(checkpoint: Checkpoint) -> str | None:
    ref = checkpoint.result_ref
    if ref is None:
        return None
    if not ref.startswith(RESULT_REF_PREFIX):
        # Written by someone else (another orchestrator, a TS job): we do not know how to load it, and
        # returning the bare ref string in place of the value would be a silently wrong result.
        raise ResultUnavailableError(
            checkpoint, f"result_ref {ref!r} was not written by a Prefect task; read it with its own writer"
        )
    return ref[len(RESULT_REF_PREFIX) :]


def decode(checkpoint: Checkpoint) -> Any:
    """The value a finished checkpoint stands for. Raises ResultMissingError when its artifact is gone."""
    storage_key = _storage_key(checkpoint)
    if storage_key is None:
        return checkpoint.result
    store = current_result_store()
    try:
        return store.read(storage_key).result
    except Exception as exc:  # storage blocks raise anything from ValueError to botocore errors
        raise ResultMissingError(checkpoint, f"reading {checkpoint.result_ref!r} failed: {exc}") from exc


async def adecode(checkpoint: Checkpoint) -> Any:
    storage_key = _storage_key(checkpoint)
    if storage_key is None:
        return checkpoint.result
    store = current_result_store()
    try:
        return (await store.aread(storage_key)).result
    except Exception as exc:
        raise ResultMissingError(checkpoint, f"reading {checkpoint.result_ref!r} failed: {exc}") from exc
