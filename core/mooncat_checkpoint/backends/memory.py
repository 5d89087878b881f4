"""In-process store for tests and short scripts."""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from ..machine import Transition
from ..protocol import Checkpoint, CorruptRecord, Status
from .base import fresh_copy, wall_clock_ms

T = TypeVar("T")


class MemoryBackend:
    def __init__(self) -> None:
        self._records: dict[tuple[str, str], Checkpoint] = {}
        self._lock = threading.RLock()

    def now_ms(self) -> int:
        return wall_clock_ms()

    def read(self, namespace: str, segment: str) -> Checkpoint | None:
        with self._lock:
            record = self._records.get((namespace, segment))
        return None if record is None else fresh_copy(record)

    def read_many(self, namespace: str, segments: Sequence[str]) -> dict[str, Checkpoint]:
        with self._lock:
            found = {s: r for s in segments if (r := self._records.get((namespace, s))) is not None}
        return {s: fresh_copy(r) for s, r in found.items()}

    def apply(self, namespace: str, segment: str, transition: Transition[T], durable: bool) -> T:
        with self._lock:
            return self._apply_locked(namespace, segment, transition)

    def apply_many(
        self, namespace: str, items: Sequence[tuple[str, Transition[Any]]], durable: bool
    ) -> list[Any]:
        with self._lock:
            return [self._apply_locked(namespace, segment, t) for segment, t in items]

    def _apply_locked(self, namespace: str, segment: str, transition: Transition[T]) -> T:
        stored = self._records.get((namespace, segment))
        change = transition(None if stored is None else fresh_copy(stored), self.now_ms())
        if change.put is not None:
            # Store a private copy so later changes to the caller's objects never reach the store.
            self._records[(namespace, segment)] = fresh_copy(change.put)
        elif change.delete:
            self._records.pop((namespace, segment), None)
        return change.value

    def scan(self, namespace: str, status: Status | None = None) -> Iterator[Checkpoint | CorruptRecord]:
        with self._lock:
            records = [r for (ns, _), r in self._records.items() if ns == namespace]
        for record in records:
            if status is None or record.status is status:
                yield fresh_copy(record)

    def namespaces(self) -> list[str]:
        with self._lock:
            return sorted({ns for ns, _ in self._records})

    def quarantine(self, namespace: str, location: str) -> str:
        raise LookupError("the memory store holds no unreadable records")

    def close(self) -> None:
        pass


# Stores by the id their client was made with: a client unpickled in the same process (a thread pool's
# copy, a framework that deep-copies its arguments) finds the store its original writes to, for as long
# as some client has it open. Another process starts empty: a memory store cannot cross one.
_SHARED: weakref.WeakValueDictionary[str, MemoryBackend] = weakref.WeakValueDictionary()
_SHARED_LOCK = threading.Lock()


def shared_memory_backend(store_id: str) -> MemoryBackend:
    with _SHARED_LOCK:
        backend = _SHARED.get(store_id)
        if backend is None:
            backend = _SHARED[store_id] = MemoryBackend()
        return backend


def _forget_in_child() -> None:
    # A forked child holds a frozen copy of the parent's stores; writes there would never reach the parent.
    global _SHARED_LOCK
    _SHARED_LOCK = threading.Lock()
    _SHARED.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
