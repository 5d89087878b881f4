"""The state machine, written once. Each transition is a pure function of the current record and the
store's clock; backends only supply storage and atomicity, so no backend can drift from these rules."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from .errors import KeyConflictError, LeaseLostError
from .protocol import Checkpoint, ClaimResult, Status

T = TypeVar("T")


@dataclass(frozen=True)
class Change(Generic[T]):
    """What a transition decided: the record to store (or delete, or leave as is) and the caller's answer."""

    value: T
    put: Checkpoint | None = None
    delete: bool = False
    # A `done` or `fail` must be on disk when it returns; a lost claim or touch only costs a lease.
    durable: bool = False

    @property
    def writes(self) -> bool:
        return self.put is not None or self.delete


Transition = Callable[[Checkpoint | None, int], Change[T]]


def new_lease_token() -> str:
    return secrets.token_hex(16)


def lease_expired(record: Checkpoint, now: int, older_than: int = 0) -> bool:
    """The one expiry rule, used by claim and gc alike: a lease ending at `now` is over."""
    return record.lease_until is None or record.lease_until <= now - older_than


def for_key(namespace: str, key: str, transition: Transition[T]) -> Transition[T]:
    """Refuse a record stored for another key (or namespace) that maps to the same place."""

    def guarded(current: Checkpoint | None, now: int) -> Change[T]:
        if current is not None and (current.key != key or current.namespace != namespace):
            raise KeyConflictError(namespace, key, current.key, current.namespace)
        return transition(current, now)

    return guarded


def settled_claim(namespace: str, key: str, current: Checkpoint | None) -> ClaimResult | None:
    """The answer of a claim that the record alone settles, with no clock and no write: the key is done
    or failed. `claim` asks this first, so a rerun's client may ask it before it reads the clock or
    builds the transition; a record of another key is a conflict, as under `for_key`."""
    if current is None:
        return None
    if current.key != key or current.namespace != namespace:
        raise KeyConflictError(namespace, key, current.key, current.namespace)
    if current.status is Status.DONE:
        return ClaimResult.settled("done", current)
    if current.status is Status.FAILED:
        return ClaimResult.settled("failed", current)
    return None


def claim(namespace: str, key: str, owner_run_id: str | None, lease_ms: int) -> Transition[ClaimResult]:
    def run(current: Checkpoint | None, now: int) -> Change[ClaimResult]:
        if current is not None:
            settled = settled_claim(namespace, key, current)
            if settled is not None:
                return Change(settled)
            if not lease_expired(current, now):
                return Change(ClaimResult("busy", current))
        token = new_lease_token()
        record = Checkpoint(
            namespace=namespace,
            key=key,
            status=Status.CLAIMED,
            owner_run_id=owner_run_id,
            lease_token=token,
            lease_until=now + lease_ms,
            result=None,
            result_ref=None,
            error=None,
            attempts=(current.attempts if current else 0) + 1,
            created_at=current.created_at if current else now,
            updated_at=now,
            extra=dict(current.extra) if current else {},
        )
        return Change(ClaimResult("claimed", record, token), put=record)

    return run


def _held(current: Checkpoint | None, lease_token: str) -> bool:
    return current is not None and current.status is Status.CLAIMED and current.lease_token == lease_token


def touch(lease_token: str, extend_ms: int) -> Transition[Checkpoint | None]:
    def run(current: Checkpoint | None, now: int) -> Change[Checkpoint | None]:
        if current is None or not _held(current, lease_token):
            return Change(None)
        record = replace(current, lease_until=now + extend_ms, updated_at=now)
        return Change(record, put=record)

    return run


def _lost(namespace: str, key: str, current: Checkpoint | None) -> LeaseLostError:
    if current is None:
        reason = "no record (reset, abandoned or collected)"
    elif current.status is not Status.CLAIMED:
        reason = f"the record is already {current.status.value}"
    else:
        reason = f"the key was claimed again by {current.owner_run_id or 'another run'}"
    return LeaseLostError(namespace, key, reason)


def done(
    namespace: str, key: str, lease_token: str, result: Any, result_json: str | None, result_ref: str | None
) -> Transition[Checkpoint]:
    def run(current: Checkpoint | None, now: int) -> Change[Checkpoint]:
        if current is None or not _held(current, lease_token):
            raise _lost(namespace, key, current)
        record = replace(
            current, status=Status.DONE, lease_token=None, lease_until=None, result=result,
            result_json=result_json, result_ref=result_ref, error=None, updated_at=now,
        )
        return Change(record, put=record, durable=True)

    return run


def fail(namespace: str, key: str, lease_token: str, error: str) -> Transition[Checkpoint]:
    def run(current: Checkpoint | None, now: int) -> Change[Checkpoint]:
        if current is None or not _held(current, lease_token):
            raise _lost(namespace, key, current)
        record = replace(
            current, status=Status.FAILED, lease_token=None, lease_until=None, result=None,
            result_json=None, result_ref=None, error=error, updated_at=now,
        )
        return Change(record, put=record, durable=True)

    return run


def abandon(lease_token: str) -> Transition[bool]:
    def run(current: Checkpoint | None, now: int) -> Change[bool]:
        if _held(current, lease_token):
            return Change(True, delete=True)
        return Change(False)

    return run


def abandon_owned(owner_run_id: str) -> Transition[bool]:
    def run(current: Checkpoint | None, now: int) -> Change[bool]:
        if current is not None and current.status is Status.CLAIMED and current.owner_run_id == owner_run_id:
            return Change(True, delete=True)
        return Change(False)

    return run


def reset(current: Checkpoint | None, now: int) -> Change[bool]:
    return Change(current is not None, delete=current is not None)


def reset_unless_held(current: Checkpoint | None, now: int) -> Change[tuple[bool, Checkpoint | None]]:
    """`reset` that leaves a live claim alone: (deleted, the live claim kept). Decided under the store's
    lock, so a key claimed between a look and the delete is never taken from its worker."""
    if current is not None and current.status is Status.CLAIMED and not lease_expired(current, now):
        return Change((False, current))
    return Change((current is not None, None), delete=current is not None)


def collect(older_than: int) -> Transition[bool]:
    """gc of one record, re-checked under the same lock or transaction as claim."""

    def run(current: Checkpoint | None, now: int) -> Change[bool]:
        if current is not None and current.status is Status.CLAIMED and lease_expired(current, now, older_than):
            return Change(True, delete=True)
        return Change(False)

    return run


def put_if_absent(record: Checkpoint) -> Transition[bool]:
    """Import: a record lands only where none is stored; nothing stored is overwritten."""

    def run(current: Checkpoint | None, now: int) -> Change[bool]:
        if current is not None:
            return Change(False)
        return Change(True, put=record, durable=True)

    return run
