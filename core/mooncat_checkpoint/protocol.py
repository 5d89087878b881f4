"""The record model shared with the TypeScript package: statuses, records, claim outcomes, limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal

DEFAULT_LEASE_MS = 60_000
DEFAULT_EXTEND_MS = 60_000
MAX_INLINE_RESULT_BYTES = 64 * 1024

ClaimKind = Literal["claimed", "done", "busy", "failed"]


class Status(str, Enum):
    CLAIMED = "claimed"
    DONE = "done"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Checkpoint:
    """One (namespace, key) record. Times are epoch milliseconds."""

    namespace: str
    key: str
    status: Status
    owner_run_id: str | None
    lease_token: str | None
    lease_until: int | None
    result: Any
    result_ref: str | None
    error: str | None
    attempts: int
    created_at: int
    updated_at: int
    # Fields written by other producers that we do not know; kept when we rewrite the record.
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    # Compact JSON text of `result` as stored, so backends never encode a result twice.
    result_json: str | None = field(default=None, repr=False, compare=False)

    @classmethod
    def stored(
        cls, namespace: str, key: str, status: Status, owner_run_id: str | None, lease_token: str | None,
        lease_until: int | None, result: Any, result_ref: str | None, error: str | None, attempts: int,
        created_at: int, updated_at: int, result_json: str | None,
    ) -> Checkpoint:
        """A record read back from a store, without extra fields: the same object the constructor makes,
        built without the frozen dataclass's per-field `object.__setattr__` calls, since every read
        of the rerun path pays for it."""
        record = object.__new__(cls)
        record.__dict__.update(
            namespace=namespace, key=key, status=status, owner_run_id=owner_run_id, lease_token=lease_token,
            lease_until=lease_until, result=result, result_ref=result_ref, error=error, attempts=attempts,
            created_at=created_at, updated_at=updated_at, extra={}, result_json=result_json,
        )
        return record

    def to_dict(self) -> dict[str, Any]:
        """The record as the TypeScript package writes it (camelCase, its key order)."""
        out: dict[str, Any] = {
            "namespace": self.namespace,
            "key": self.key,
            "status": self.status.value,
            "ownerRunId": self.owner_run_id,
            "leaseToken": self.lease_token,
            "leaseUntil": self.lease_until,
            "result": self.result,
            "resultRef": self.result_ref,
        }
        if self.status is Status.FAILED or self.error is not None:
            out["error"] = self.error
        out["attempts"] = self.attempts
        out["createdAt"] = self.created_at
        out["updatedAt"] = self.updated_at
        for name, value in self.extra.items():
            out.setdefault(name, value)
        return out


@dataclass(frozen=True)
class ClaimResult:
    kind: ClaimKind
    checkpoint: Checkpoint
    lease_token: str | None = None

    @classmethod
    def settled(cls, kind: ClaimKind, checkpoint: Checkpoint) -> ClaimResult:
        """A done or failed answer, which holds no lease: the constructor's object, built without the
        frozen dataclass's per-field calls (it answers every claim of a rerun)."""
        answer = object.__new__(cls)
        answer.__dict__.update(kind=kind, checkpoint=checkpoint, lease_token=None)
        return answer


@dataclass(frozen=True)
class CorruptRecord:
    """A stored entry that cannot be read as a record; reported, never treated as absent."""

    namespace: str
    location: str
    reason: str
