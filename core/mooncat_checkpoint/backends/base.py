"""What a backend supplies: storage, atomicity and a clock. The rules live in `machine`."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any, Protocol, TypeVar

from ..keys import storage_segment
from ..machine import Transition
from ..protocol import Checkpoint, ClaimResult, CorruptRecord, Status
from ..serialize import result_json_of

T = TypeVar("T")

Durability = str  # "full" or "fast"
DURABILITY_MODES = ("full", "fast")
SCAN_PAGE = 1000


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class Backend(Protocol):
    """A store of records keyed by (namespace, storage segment)."""

    def now_ms(self) -> int: ...

    def read(self, namespace: str, segment: str) -> Checkpoint | None:
        """A fresh copy of the stored record; CorruptRecordError if it cannot be read."""

    def read_many(self, namespace: str, segments: Sequence[str]) -> dict[str, Checkpoint]: ...

    def apply(self, namespace: str, segment: str, transition: Transition[T], durable: bool) -> T:
        """Run one transition atomically against the stored record, across threads and processes."""

    def apply_many(
        self, namespace: str, items: Sequence[tuple[str, Transition[Any]]], durable: bool
    ) -> list[Any]:
        """Run several transitions as one atomic unit (one transaction where the store has them)."""

    def scan(self, namespace: str, status: Status | None = None) -> Iterator[Checkpoint | CorruptRecord]:
        """Every record of a namespace, streamed in no particular order; unreadable ones as CorruptRecord."""

    def namespaces(self) -> list[str]: ...

    def quarantine(self, namespace: str, location: str) -> str:
        """Move an unreadable entry aside (never delete it); returns where it went."""

    def close(self) -> None: ...


class ClaimsInOneStep(Protocol):
    """Optional hook: a backend that can decide a claim in one round trip offers `claim_once`.

    The clients call it instead of read + `apply` when present. It must give exactly the answer and
    the stored record that `machine.for_key(namespace, key, machine.claim(...))` gives against the
    stored record at the store's `now` (the conformance and model-based tests check this).
    The async form is the same method as a coroutine.
    """

    def claim_once(
        self, namespace: str, segment: str, key: str, owner_run_id: str | None, lease_ms: int
    ) -> ClaimResult: ...


class FinishesInOneStep(Protocol):
    """Optional hook: a backend that can record `done` or `fail` in one guarded write offers `finish_once`.

    The clients call it instead of `apply` when present. For `status` DONE it must give exactly the record
    (or the error) that `machine.for_key(namespace, key, machine.done(namespace, key, lease_token, result,
    result_json, result_ref))` gives against the stored record at the store's `now`; for FAILED, that of
    `machine.fail(namespace, key, lease_token, error)`. It is durable, like the transitions it stands for.
    """

    def finish_once(
        self, namespace: str, segment: str, key: str, lease_token: str, status: Status, result: Any,
        result_json: str | None, result_ref: str | None, error: str | None,
    ) -> Checkpoint: ...


class CollectsInOneStep(Protocol):
    """Optional hook: a backend that can delete a namespace's expired claims in bulk offers `collect_expired`.

    `gc` calls it per namespace instead of streaming and deleting record by record. It must delete exactly
    the records that `machine.collect(older_than)` would delete, each decided at the store's `now` under
    the same lock as claim, and never an unreadable or misplaced record; it returns how many went.
    """

    def collect_expired(self, namespace: str, older_than: int) -> int: ...


# Optional hooks that ThreadedAsyncBackend passes on, as coroutines, when the blocking backend has them.
ONE_STEP_HOOKS = ("claim_once", "finish_once", "collect_expired")


class AsyncBackend(Protocol):
    async def now_ms(self) -> int: ...
    async def read(self, namespace: str, segment: str) -> Checkpoint | None: ...
    async def read_many(self, namespace: str, segments: Sequence[str]) -> dict[str, Checkpoint]: ...
    async def apply(self, namespace: str, segment: str, transition: Transition[T], durable: bool) -> T: ...
    async def apply_many(
        self, namespace: str, items: Sequence[tuple[str, Transition[Any]]], durable: bool
    ) -> list[Any]: ...
    def scan(self, namespace: str, status: Status | None = None) -> AsyncIterator[Checkpoint | CorruptRecord]: ...
    async def namespaces(self) -> list[str]: ...
    async def close(self) -> None: ...


class ThreadedAsyncBackend:
    """The async face of a blocking backend: each call runs in a worker thread, off the event loop."""

    def __init__(self, backend: Backend) -> None:
        self.sync = backend
        for name in ONE_STEP_HOOKS:
            hook = getattr(backend, name, None)
            if hook is not None:
                setattr(self, name, _in_thread(hook))

    async def now_ms(self) -> int:
        return self.sync.now_ms()

    async def read(self, namespace: str, segment: str) -> Checkpoint | None:
        return await asyncio.to_thread(self.sync.read, namespace, segment)

    async def read_many(self, namespace: str, segments: Sequence[str]) -> dict[str, Checkpoint]:
        return await asyncio.to_thread(self.sync.read_many, namespace, segments)

    async def apply(self, namespace: str, segment: str, transition: Transition[T], durable: bool) -> T:
        return await asyncio.to_thread(self.sync.apply, namespace, segment, transition, durable)

    async def apply_many(
        self, namespace: str, items: Sequence[tuple[str, Transition[Any]]], durable: bool
    ) -> list[Any]:
        return await asyncio.to_thread(self.sync.apply_many, namespace, items, durable)

    async def scan(self, namespace: str, status: Status | None = None) -> AsyncIterator[Checkpoint | CorruptRecord]:
        # A page at a time, so a large namespace never sits in memory whole; the worker threads take
        # turns advancing one iterator, never two at once.
        items = self.sync.scan(namespace, status)
        try:
            while True:
                page = await asyncio.to_thread(_next_page, items, SCAN_PAGE)
                for item in page:
                    yield item
                if len(page) < SCAN_PAGE:
                    return
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                await asyncio.to_thread(close)

    async def namespaces(self) -> list[str]:
        return await asyncio.to_thread(self.sync.namespaces)

    async def close(self) -> None:
        await asyncio.to_thread(self.sync.close)


def _in_thread(hook: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    async def run(*args: Any) -> T:
        return await asyncio.to_thread(hook, *args)

    return run


def _next_page(items: Iterator[T], size: int) -> list[T]:
    return list(itertools.islice(items, size))


def fresh_copy(record: Checkpoint) -> Checkpoint:
    """A copy whose mutable parts (result, extra fields) share nothing with the stored state."""
    text = result_json_of(record)
    result = None if text is None else json.loads(text)
    extra = json.loads(json.dumps(record.extra)) if record.extra else {}
    return replace(record, result=result, extra=extra)


def misplaced(namespace: str, segment: str, record: Checkpoint, location: str) -> Checkpoint | CorruptRecord:
    """A record stored under a name its key does not map to (edited by hand, copied, a case-insensitive
    filesystem) can never be read through its key: listed and reported like an unreadable one, so
    `doctor --quarantine` can move it aside instead of the key failing with a conflict for ever."""
    if record.namespace != namespace:
        return CorruptRecord(
            namespace, location,
            f"holds a record of namespace {record.namespace!r} (key {record.key!r}): a copied file, or two "
            "namespaces differing only in case that share one folder on a case-insensitive filesystem",
        )
    if storage_segment(record.key) == segment:
        return record
    return CorruptRecord(
        namespace, location, f"holds the key {record.key!r}, whose record belongs at {storage_segment(record.key)!r}"
    )
