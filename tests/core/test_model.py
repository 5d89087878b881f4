"""Random operation sequences through every backend, compared step by step with a small reference model.

The model is written here from the contract, independently of `mooncat_checkpoint.machine`, so a rule
that the library gets wrong in one place shows up as a difference on every backend.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
from core_support import STORE_URLS, FakeClock, install_clock
from hypothesis import HealthCheck, settings
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, multiple, rule
from mooncat_checkpoint import Checkpoint, CheckpointClient, InvalidArgumentError, LeaseLostError, Status

NAMESPACES = ("alpha", "beta")
# Plain keys, keys stored under a hashed segment, and a key ending in a newline.
KEYS = ("a", "b.json", "with space", "x\n", "ключ", "k" * 129)
OWNERS = (None, "run-1", "run-2")
BOGUS_TOKEN = "0" * 32

json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)


@dataclass
class Expected:
    status: Status
    owner: str | None
    token: str | None
    lease_until: int | None
    result: Any
    result_ref: str | None
    error: str | None
    attempts: int
    created_at: int
    updated_at: int


def view(record: Checkpoint | None) -> tuple[Any, ...] | None:
    if record is None:
        return None
    return (
        record.status, record.owner_run_id, record.lease_token, record.lease_until, record.result,
        record.result_ref, record.error, record.attempts, record.created_at, record.updated_at,
    )


def expected_view(rec: Expected | None) -> tuple[Any, ...] | None:
    if rec is None:
        return None
    return (
        rec.status, rec.owner, rec.token, rec.lease_until, rec.result, rec.result_ref, rec.error,
        rec.attempts, rec.created_at, rec.updated_at,
    )


class StoreModel(RuleBasedStateMachine):
    backend = "memory"
    tokens = Bundle("tokens")

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="mooncat-model-"))
        self.cp = CheckpointClient(STORE_URLS[self.backend](self.directory))
        self.clock = FakeClock()
        install_clock(self.cp, self.clock)
        self.model: dict[tuple[str, str], Expected] = {}

    def teardown(self) -> None:
        self.cp.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    # ---- the reference rules ----

    def _held(self, ns: str, key: str, token: str) -> Expected | None:
        rec = self.model.get((ns, key))
        if rec is not None and rec.status is Status.CLAIMED and rec.token == token:
            return rec
        return None

    def _expect_claim(self, ns: str, key: str, owner: str | None, lease: int) -> tuple[str, Expected | None]:
        rec = self.model.get((ns, key))
        now = self.clock.now
        if rec is not None:
            if rec.status is Status.DONE:
                return "done", rec
            if rec.status is Status.FAILED:
                return "failed", rec
            if rec.lease_until is not None and rec.lease_until > now:
                return "busy", rec
        return "claimed", None

    def _record_claim(self, ns: str, key: str, owner: str | None, lease: int, token: str) -> Expected:
        old = self.model.get((ns, key))
        now = self.clock.now
        rec = Expected(
            Status.CLAIMED, owner, token, now + lease, None, None, None,
            (old.attempts if old else 0) + 1, old.created_at if old else now, now,
        )
        self.model[(ns, key)] = rec
        return rec

    # ---- rules ----

    @rule(ms=st.sampled_from([0, 1, 499, 500, 1000, 60_000]))
    def advance(self, ms: int) -> None:
        self.clock.advance(ms)

    @rule(
        target=tokens, ns=st.sampled_from(NAMESPACES), key=st.sampled_from(KEYS),
        owner=st.sampled_from(OWNERS), lease=st.sampled_from([1, 500, 1000, 60_000]),
    )
    def claim(self, ns: str, key: str, owner: str | None, lease: int) -> Any:
        kind, before = self._expect_claim(ns, key, owner, lease)
        got = self.cp.claim(ns, key, owner_run_id=owner, lease_ms=lease)
        assert got.kind == kind
        assert got.checkpoint.key == key and got.checkpoint.namespace == ns
        if kind != "claimed":
            assert got.lease_token is None
            assert view(got.checkpoint) == expected_view(before)
            return multiple()
        assert got.lease_token is not None and len(got.lease_token) == 32
        rec = self._record_claim(ns, key, owner, lease, got.lease_token)
        assert view(got.checkpoint) == expected_view(rec)
        return (ns, key, got.lease_token)

    @rule(
        ns=st.sampled_from(NAMESPACES), keys=st.lists(st.sampled_from(KEYS), max_size=4),
        owner=st.sampled_from(OWNERS), lease=st.sampled_from([1, 1000, 60_000]),
    )
    def claim_many(self, ns: str, keys: list[str], owner: str | None, lease: int) -> None:
        got = self.cp.claim_many(ns, keys, owner_run_id=owner, lease_ms=lease)
        assert list(got) == list(dict.fromkeys(keys))
        for key, outcome in got.items():
            kind, before = self._expect_claim(ns, key, owner, lease)
            assert outcome.kind == kind
            if kind == "claimed":
                assert outcome.lease_token is not None
                rec = self._record_claim(ns, key, owner, lease, outcome.lease_token)
                assert view(outcome.checkpoint) == expected_view(rec)
            else:
                assert view(outcome.checkpoint) == expected_view(before)

    @rule(entry=tokens, extend=st.sampled_from([1, 1000, 60_000]), bogus=st.booleans())
    def touch(self, entry: tuple[str, str, str], extend: int, bogus: bool) -> None:
        ns, key, token = entry
        token = BOGUS_TOKEN if bogus else token
        rec = self._held(ns, key, token)
        got = self.cp.touch(ns, key, token, extend_ms=extend)
        if rec is None:
            assert got is None
            return
        rec.lease_until = self.clock.now + extend
        rec.updated_at = self.clock.now
        assert view(got) == expected_view(rec)

    def _refuses_nul(self, text: str | None) -> bool:
        return _refuses_nul_on(self.backend, text)

    @rule(entry=tokens, result=json_value, ref=st.none() | st.text(max_size=5))
    def done(self, entry: tuple[str, str, str], result: Any, ref: str | None) -> None:
        ns, key, token = entry
        rec = self._held(ns, key, token)
        if rec is None:
            try:
                self.cp.done(ns, key, token, result=result, result_ref=ref)
            except LeaseLostError:
                return
            raise AssertionError("done without the lease must raise LeaseLostError")
        if self._refuses_nul(ref):  # the record it would write cannot be stored: refused, nothing written
            with pytest.raises(InvalidArgumentError, match="NUL"):
                self.cp.done(ns, key, token, result=copy.deepcopy(result), result_ref=ref)
            return  # the invariant checks that the record is unchanged
        got = self.cp.done(ns, key, token, result=copy.deepcopy(result), result_ref=ref)
        rec.status, rec.token, rec.lease_until = Status.DONE, None, None
        rec.result, rec.result_ref, rec.error, rec.updated_at = result, ref, None, self.clock.now
        assert view(got) == expected_view(rec)

    @rule(entry=tokens, error=st.text(max_size=6))
    def fail(self, entry: tuple[str, str, str], error: str) -> None:
        ns, key, token = entry
        rec = self._held(ns, key, token)
        if rec is None:
            try:
                self.cp.fail(ns, key, error, lease_token=token)
            except LeaseLostError:
                return
            raise AssertionError("fail without the lease must raise LeaseLostError")
        if self._refuses_nul(error):
            with pytest.raises(InvalidArgumentError, match="NUL"):
                self.cp.fail(ns, key, error, lease_token=token)
            return
        got = self.cp.fail(ns, key, error, lease_token=token)
        rec.status, rec.token, rec.lease_until = Status.FAILED, None, None
        rec.result, rec.result_ref, rec.error, rec.updated_at = None, None, error, self.clock.now
        assert view(got) == expected_view(rec)

    @rule(entry=tokens)
    def abandon(self, entry: tuple[str, str, str]) -> None:
        ns, key, token = entry
        held = self._held(ns, key, token) is not None
        assert self.cp.abandon(ns, key, token) is held
        if held:
            del self.model[(ns, key)]

    @rule(owner=st.sampled_from(["run-1", "run-2"]), ns=st.none() | st.sampled_from(NAMESPACES))
    def abandon_owned(self, owner: str, ns: str | None) -> None:
        doomed = [
            k for k, rec in self.model.items()
            if rec.status is Status.CLAIMED and rec.owner == owner and (ns is None or k[0] == ns)
        ]
        assert self.cp.abandon_owned(owner, namespace=ns) == len(doomed)
        for k in doomed:
            del self.model[k]

    @rule(ns=st.sampled_from(NAMESPACES), key=st.sampled_from(KEYS))
    def reset(self, ns: str, key: str) -> None:
        assert self.cp.reset(ns, key) is ((ns, key) in self.model)
        self.model.pop((ns, key), None)

    @rule(older_than=st.sampled_from([0, 1, 500, 10_000]))
    def gc(self, older_than: int) -> None:
        cutoff = self.clock.now - older_than
        doomed = [
            k for k, rec in self.model.items()
            if rec.status is Status.CLAIMED and rec.lease_until is not None and rec.lease_until <= cutoff
        ]
        assert self.cp.gc(older_than=older_than) == len(doomed)
        for k in doomed:
            del self.model[k]

    @rule(ns=st.sampled_from(NAMESPACES), key=st.sampled_from(KEYS))
    def get_is_a_copy(self, ns: str, key: str) -> None:
        got = self.cp.get(ns, key)
        expected = self.model.get((ns, key))
        assert view(got) == expected_view(expected)
        if got is not None:
            # Whatever a caller does to a returned record must not reach the store.
            if isinstance(got.result, dict):
                got.result["mutated"] = True
            elif isinstance(got.result, list):
                got.result.append("mutated")
            got.extra["mutated"] = True
            again = self.cp.get(ns, key)
            assert again is not None and view(again) == expected_view(expected)
            assert "mutated" not in again.extra

    @rule(ns=st.sampled_from(NAMESPACES), keys=st.lists(st.sampled_from(KEYS), max_size=4))
    def get_many(self, ns: str, keys: list[str]) -> None:
        got = self.cp.get_many(ns, keys)
        assert set(got) == {k for k in keys if (ns, k) in self.model}
        for key, record in got.items():
            assert record.key == key
            assert view(record) == expected_view(self.model[(ns, key)])

    @rule(ns=st.sampled_from(NAMESPACES), status=st.sampled_from([None, *Status, "claimed", "done", "failed"]))
    def list_filtered(self, ns: str, status: Status | str | None) -> None:
        wanted = None if status is None else Status(status)
        got = self.cp.list(ns, status=status)
        expected = sorted(
            ((k, rec) for (n, k), rec in self.model.items() if n == ns and (wanted is None or rec.status is wanted)),
            key=lambda item: (-item[1].updated_at, item[0]),
        )
        assert [r.key for r in got] == [k for k, _ in expected]
        assert [view(r) for r in got] == [expected_view(rec) for _, rec in expected]

    @invariant()
    def every_record_matches(self) -> None:
        for ns in NAMESPACES:
            stored = {r.key: view(r) for r in self.cp.list(ns)}
            expected = {k: expected_view(rec) for (n, k), rec in self.model.items() if n == ns}
            assert stored == expected


def _refuses_nul_on(backend: str, text: str | None) -> bool:
    """PostgreSQL text cannot hold NUL, so that store refuses such a string before writing; the others keep it."""
    return backend == "postgres" and text is not None and "\x00" in text


def _machine_for(backend: str) -> type[StoreModel]:
    return type(f"StoreModel_{backend}", (StoreModel,), {"backend": backend})


_SETTINGS = settings(
    max_examples=40, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestMemoryModel = _machine_for("memory").TestCase
TestMemoryModel.settings = _SETTINGS
TestFileModel = _machine_for("file").TestCase
TestFileModel.settings = _SETTINGS
TestSqliteModel = _machine_for("sqlite").TestCase
TestSqliteModel.settings = _SETTINGS
TestPostgresModel = _machine_for("postgres").TestCase
TestPostgresModel.settings = _SETTINGS
