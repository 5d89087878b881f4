"""CheckpointClient and AsyncCheckpointClient: one core that validates and plans, two fronts that run plans."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import secrets
import shlex
import threading
import warnings
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from . import machine
from .backends import AsyncBackend, Backend, open_async_backend, open_backend
from .config import StoreLocation, parse_url, resolve_url
from .errors import ConfigError, CorruptRecordError, InvalidArgumentError, KeyConflictError
from .keys import KeySpec, check_key, check_namespace, storage_segment
from .machine import Transition
from .protocol import DEFAULT_EXTEND_MS, DEFAULT_LEASE_MS, Checkpoint, ClaimResult, CorruptRecord, Status
from .serialize import check_optional_str, encode_result, loads_stored

if TYPE_CHECKING:
    from .step import AsyncStep, Step

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


# Records deleted per transaction by gc and abandon_owned.
SWEEP_CHUNK = 500


class CorruptRecordWarning(UserWarning):
    """`list` met records it cannot read; they are reported here and by `mooncat-checkpoint doctor`."""


@dataclass(frozen=True)
class Plan:
    """One validated operation: which record, which transition, how durable."""

    namespace: str
    segment: str
    transition: Transition[Any]
    durable: bool = False
    # Claims first look without a lock: a done, failed or busy answer needs no write.
    optimistic: bool = False
    # (key, owner_run_id, lease_ms) of a claim, for backends that decide claims in one step (`claim_once`).
    claim_args: tuple[str, str | None, int] | None = None
    # (key, lease_token, status, result, result_json, result_ref, error) of a done or fail, for backends
    # that record them in one guarded write (`finish_once`).
    finish_args: tuple[str, str, Status, Any, str | None, str | None, str | None] | None = None


def _positive_ms(value: object, name: str, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or value > 2**53:
        raise InvalidArgumentError(f"{name} must be a positive integer of milliseconds, at most 2**53, got {value!r}")
    return value


def _token(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidArgumentError(f"lease_token must be the non-empty string claim returned, got {value!r}")
    return value


def _status(value: object) -> Status | None:
    if value is None:
        return None
    try:
        return Status(value)
    except ValueError:
        raise InvalidArgumentError(
            f"status must be one of {', '.join(s.value for s in Status)}, got {value!r}"
        ) from None


def doctor_command(location: StoreLocation) -> str:
    """The doctor command for this store, with `--url` (see StepFailedError for why always)."""
    url = location.command_url
    return "mooncat-checkpoint doctor" + ("" if url is None else f" --url {shlex.quote(url)}")


class ClientCore:
    """Everything both fronts share: where the store is, argument checks, and the plans they run."""

    def __init__(self, url: str | None, durability: str) -> None:
        resolved = resolve_url(url)
        self.url = resolved.url
        self.url_source = resolved.source
        try:
            self.location: StoreLocation = parse_url(resolved.url, resolved.base_dir)
        except ConfigError as exc:
            if resolved.source == "argument":
                raise
            raise ConfigError(f"{exc} (from {resolved.source})") from None
        if durability not in ("full", "fast"):
            raise InvalidArgumentError(f"durability must be 'full' or 'fast', got {durability!r}")
        self.durability = durability
        # Travels with a pickled client, so that its copies in this process open the same memory store.
        self.memory_id = secrets.token_hex(16) if self.location.scheme == "memory" else None

    @staticmethod
    def target(namespace: str, key: str) -> tuple[str, str]:
        check_namespace(namespace)
        return namespace, storage_segment(check_key(key))

    def claim_target(
        self, namespace: str, key: str, owner_run_id: str | None, lease_ms: int | None
    ) -> tuple[str, str, int]:
        """A claim's checked arguments: (namespace, segment, lease_ms)."""
        ns, segment = self.target(namespace, key)
        check_optional_str(owner_run_id, "owner_run_id")
        return ns, segment, _positive_ms(lease_ms, "lease_ms", DEFAULT_LEASE_MS)

    def claim(self, namespace: str, key: str, owner_run_id: str | None, lease_ms: int | None) -> Plan:
        ns, segment, lease = self.claim_target(namespace, key, owner_run_id, lease_ms)
        return self.claim_plan(ns, segment, key, owner_run_id, lease)

    @staticmethod
    def claim_plan(namespace: str, segment: str, key: str, owner_run_id: str | None, lease: int) -> Plan:
        transition = machine.for_key(namespace, key, machine.claim(namespace, key, owner_run_id, lease))
        return Plan(namespace, segment, transition, optimistic=True, claim_args=(key, owner_run_id, lease))

    def touch(self, namespace: str, key: str, lease_token: str, extend_ms: int | None) -> Plan:
        ns, segment = self.target(namespace, key)
        extend = _positive_ms(extend_ms, "extend_ms", DEFAULT_EXTEND_MS)
        return Plan(ns, segment, machine.for_key(ns, key, machine.touch(_token(lease_token), extend)))

    def done(self, namespace: str, key: str, lease_token: str, result: Any, result_ref: str | None) -> Plan:
        ns, segment = self.target(namespace, key)
        token = _token(lease_token)
        check_optional_str(result_ref, "result_ref")
        result_json = encode_result(result)
        # The record holds the result as stored and read back (a tuple comes back a list), never the caller's
        # object: changing that object afterwards must not change the returned record, as on every store.
        stored = None if result_json is None else loads_stored(result_json)
        transition = machine.done(ns, key, token, stored, result_json, result_ref)
        return Plan(ns, segment, machine.for_key(ns, key, transition), durable=True,
                    finish_args=(key, token, Status.DONE, stored, result_json, result_ref, None))

    def fail(self, namespace: str, key: str, error: str, lease_token: str) -> Plan:
        ns, segment = self.target(namespace, key)
        if not isinstance(error, str):
            raise InvalidArgumentError(f"error must be a string message, got {type(error).__name__}")
        token = _token(lease_token)
        transition = machine.fail(ns, key, token, error)
        return Plan(ns, segment, machine.for_key(ns, key, transition), durable=True,
                    finish_args=(key, token, Status.FAILED, None, None, None, error))

    def abandon(self, namespace: str, key: str, lease_token: str) -> Plan:
        ns, segment = self.target(namespace, key)
        return Plan(ns, segment, machine.for_key(ns, key, machine.abandon(_token(lease_token))))

    def reset(self, namespace: str, key: str) -> Plan:
        ns, segment = self.target(namespace, key)
        return Plan(ns, segment, machine.for_key(ns, key, machine.reset))

    def claim_many(
        self, namespace: str, keys: Iterable[str], owner_run_id: str | None, lease_ms: int | None
    ) -> tuple[str, dict[str, str], int]:
        """A batch claim's checked arguments: (namespace, {key: segment} without repeats, lease_ms)."""
        check_namespace(namespace)
        check_optional_str(owner_run_id, "owner_run_id")
        lease = _positive_ms(lease_ms, "lease_ms", DEFAULT_LEASE_MS)
        return namespace, {key: storage_segment(key) for key in self._keys(keys)}, lease

    def get_many(
        self, namespace: str, keys: Iterable[str], skip_unreadable: bool = False
    ) -> tuple[str, dict[str, str]]:
        check_namespace(namespace)
        if not isinstance(skip_unreadable, bool):
            raise InvalidArgumentError(f"skip_unreadable must be True or False, got {skip_unreadable!r}")
        return namespace, {key: storage_segment(check_key(key)) for key in self._keys(keys)}

    @staticmethod
    def match(namespace: str, segments: Mapping[str, str], found: Mapping[str, Checkpoint]) -> dict[str, Checkpoint]:
        """Pair keys with the records read for their segments; a record of another key is a conflict."""
        matched: dict[str, Checkpoint] = {}
        for key, segment in segments.items():
            record = found.get(segment)
            if record is not None:
                if record.key != key or record.namespace != namespace:
                    raise KeyConflictError(namespace, key, record.key, record.namespace)
                matched[key] = record
        return matched

    @staticmethod
    def _keys(keys: Iterable[str]) -> list[str]:
        if isinstance(keys, (str, bytes, bytearray, memoryview)):
            raise InvalidArgumentError(f"keys must be an iterable of keys, not one {type(keys).__name__}")
        try:
            items = iter(keys)
        except TypeError:
            raise InvalidArgumentError(
                f"keys must be an iterable of keys (a list, a set, ...), got {keys!r}"
            ) from None
        return [check_key(key) for key in items]

    @staticmethod
    def list_args(namespace: str, status: Status | str | None) -> tuple[str, Status | None]:
        return check_namespace(namespace), _status(status)

    @staticmethod
    def older_than(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidArgumentError(f"older_than must be an integer >= 0 of milliseconds, got {value!r}")
        return value

    @staticmethod
    def collect_plan(record: Checkpoint, transition: Transition[bool]) -> Plan:
        return Plan(record.namespace, storage_segment(record.key),
                    machine.for_key(record.namespace, record.key, transition))

    def answer_from(
        self, namespace: str, segments: Mapping[str, str], owner_run_id: str | None, lease: int,
        snapshot: Mapping[str, Checkpoint], now: int,
    ) -> tuple[dict[str, ClaimResult], list[tuple[str, Plan]]]:
        """Answer every claim that a snapshot settles (done, failed, busy); the rest must be written.
        Done and failed keys, all of a rerun, are answered before any transition is built."""
        answers: dict[str, ClaimResult] = {}
        pending: list[tuple[str, Plan]] = []
        for key, segment in segments.items():
            current = snapshot.get(segment)
            settled = machine.settled_claim(namespace, key, current)
            if settled is not None:
                answers[key] = settled
                continue
            plan = self.claim_plan(namespace, segment, key, owner_run_id, lease)
            change = plan.transition(current, now)
            if change.writes:
                pending.append((key, plan))
            else:
                answers[key] = change.value
        return answers, pending

    def add_hint(self, exc: CorruptRecordError) -> None:
        """Give an unreadable record's error this store's URL, for its doctor hint."""
        if exc.url is None:
            exc.url = self.location.command_url

    def ordered(self, items: Iterable[Checkpoint | CorruptRecord]) -> list[Checkpoint]:
        records: list[Checkpoint] = []
        corrupt: list[CorruptRecord] = []
        for item in items:
            (corrupt if isinstance(item, CorruptRecord) else records).append(item)  # type: ignore[arg-type]
        if corrupt:
            warnings.warn(
                f"{len(corrupt)} unreadable record(s) left out, e.g. {corrupt[0].location}: {corrupt[0].reason}; "
                f"run `{doctor_command(self.location)}`",
                CorruptRecordWarning,
                stacklevel=3,
            )
        records.sort(key=lambda r: (-r.updated_at, r.key))
        return records


class CheckpointClient:
    """Blocking client. Safe to share between threads; picklable (reconnects lazily after unpickling)."""

    def __init__(self, url: str | None = None, *, durability: Literal["full", "fast"] = "full") -> None:
        self._core = ClientCore(url, durability)
        self._backend: Backend | None = None
        self._open_lock = threading.Lock()
        self._heartbeat: Any = None

    # ---- plumbing ----

    @property
    def url(self) -> str:
        return self._core.url

    @property
    def url_source(self) -> str:
        return self._core.url_source

    @property
    def location(self) -> StoreLocation:
        return self._core.location

    @property
    def shareable_url(self) -> str:
        """The store's URL with its path made absolute: hand this, not `url`, to other clients, tasks and
        processes, which may resolve a relative path against another folder."""
        return self._core.location.absolute_url

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            with self._open_lock:
                if self._backend is None:
                    self._backend = open_backend(self._core.location, self._core.durability, self._core.memory_id)
        return self._backend

    def __getstate__(self) -> dict[str, Any]:
        return {"core": self._core}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._core = state["core"]
        self._backend = None
        self._open_lock = threading.Lock()
        self._heartbeat = None

    def __repr__(self) -> str:
        return f"CheckpointClient({self.url!r})"

    def _run(self, plan: Plan) -> Any:
        try:
            backend = self.backend
            claim_once = getattr(backend, "claim_once", None)
            if plan.claim_args is not None and claim_once is not None:
                return claim_once(plan.namespace, plan.segment, *plan.claim_args)
            finish_once = getattr(backend, "finish_once", None)
            if plan.finish_args is not None and finish_once is not None:
                return finish_once(plan.namespace, plan.segment, *plan.finish_args)
            if plan.optimistic:
                change = plan.transition(backend.read(plan.namespace, plan.segment), backend.now_ms())
                if not change.writes:
                    return change.value
            return backend.apply(plan.namespace, plan.segment, plan.transition, plan.durable)
        except CorruptRecordError as exc:
            self._core.add_hint(exc)
            raise

    # ---- the 0.1.0 API ----

    def claim(
        self, ns: str, key: str, owner_run_id: str | None = None, lease_ms: int | None = None
    ) -> ClaimResult:
        try:
            namespace, segment, lease = self._core.claim_target(ns, key, owner_run_id, lease_ms)
            backend = self._backend or self.backend
            claim_once = getattr(backend, "claim_once", None)
            if claim_once is not None:
                answer: ClaimResult = claim_once(namespace, segment, key, owner_run_id, lease)
                return answer
            # The rerun path: a done or failed key is answered from one unlocked read, before the clock is
            # read or the transition built. Anything else runs the whole transition, first on that read.
            current = backend.read(namespace, segment)
            settled = machine.settled_claim(namespace, key, current)
            if settled is not None:
                return settled
            plan = self._core.claim_plan(namespace, segment, key, owner_run_id, lease)
            change = plan.transition(current, backend.now_ms())
            if not change.writes:
                answer = change.value
                return answer
            answer = backend.apply(namespace, segment, plan.transition, plan.durable)
            return answer
        except CorruptRecordError as exc:
            self._core.add_hint(exc)
            raise

    def touch(self, ns: str, key: str, lease_token: str, extend_ms: int | None = None) -> Checkpoint | None:
        record: Checkpoint | None = self._run(self._core.touch(ns, key, lease_token, extend_ms))
        return record

    def done(
        self, ns: str, key: str, lease_token: str, result: Any = None, result_ref: str | None = None
    ) -> Checkpoint:
        record: Checkpoint = self._run(self._core.done(ns, key, lease_token, result, result_ref))
        return record

    def fail(self, ns: str, key: str, error: str, lease_token: str) -> Checkpoint:
        record: Checkpoint = self._run(self._core.fail(ns, key, error, lease_token))
        return record

    def get(self, ns: str, key: str) -> Checkpoint | None:
        try:
            namespace, segment = self._core.target(ns, key)
            record = self.backend.read(namespace, segment)
            return None if record is None else self._core.match(namespace, {key: segment}, {segment: record})[key]
        except CorruptRecordError as exc:
            self._core.add_hint(exc)
            raise

    def reset(self, ns: str, key: str) -> bool:
        return bool(self._run(self._core.reset(ns, key)))

    def list(self, ns: str, status: Status | str | None = None) -> list[Checkpoint]:
        namespace, wanted = self._core.list_args(ns, status)
        return self._core.ordered(self.backend.scan(namespace, wanted))

    def gc(self, older_than: int = 0, *, namespace: str | None = None) -> int:
        """Delete claims whose lease ended at least `older_than` ms ago, in one namespace or all of them."""
        grace = self._core.older_than(older_than)
        chosen = None if namespace is None else check_namespace(namespace)
        collect = getattr(self.backend, "collect_expired", None)
        if collect is not None:  # one bulk delete per namespace, by the same rule
            return sum(collect(ns, grace) for ns in ([chosen] if chosen is not None else self.backend.namespaces()))
        return self._sweep(
            namespace, lambda r, now: machine.lease_expired(r, now, grace), machine.collect(grace)
        )

    def _sweep(self, namespace: str | None, pick: Callable[[Checkpoint, int], bool],
               transition: Transition[bool]) -> int:
        """Stream claimed records and delete the picked ones a chunk at a time: memory stays flat however
        large the namespace, and SQLite pays one transaction per chunk. Each deletion is re-decided by the
        transition under the store's lock, so a record claimed again meanwhile is kept."""
        chosen = None if namespace is None else check_namespace(namespace)
        backend = self.backend
        namespaces = [chosen] if chosen is not None else backend.namespaces()
        count = 0
        for ns in namespaces:
            now = backend.now_ms()
            chunk: list[tuple[str, Transition[Any]]] = []
            for record in backend.scan(ns, Status.CLAIMED):
                if isinstance(record, Checkpoint) and pick(record, now):
                    chunk.append((storage_segment(record.key), machine.for_key(ns, record.key, transition)))
                    if len(chunk) >= SWEEP_CHUNK:
                        count += sum(backend.apply_many(ns, chunk, False))
                        chunk = []
            if chunk:
                count += sum(backend.apply_many(ns, chunk, False))
        return count

    def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    def __enter__(self) -> CheckpointClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- TypeScript 0.5.1 additions ----

    def abandon(self, ns: str, key: str, lease_token: str) -> bool:
        return bool(self._run(self._core.abandon(ns, key, lease_token)))

    def abandon_owned(self, owner_run_id: str, namespace: str | None = None) -> int:
        if not isinstance(owner_run_id, str) or not owner_run_id:
            raise InvalidArgumentError(f"owner_run_id must be a non-empty string, got {owner_run_id!r}")
        return self._sweep(
            namespace, lambda r, now: r.owner_run_id == owner_run_id, machine.abandon_owned(owner_run_id)
        )

    # ---- batches ----

    def get_many(self, ns: str, keys: Iterable[str], *, skip_unreadable: bool = False) -> dict[str, Checkpoint]:
        """Records of many keys in one read (one query on SQL stores); absent keys are left out.

        One unreadable record (corrupt, or stored for another key) raises for the whole batch, unless
        `skip_unreadable`: then it is left out like an absent one. That suits a caller that only decides which
        keys to submit, each of which claims its key, and so reports the unreadable record by itself; never
        take a left-out key as free."""
        namespace, segments = self._core.get_many(ns, keys, skip_unreadable)
        try:
            found = self.backend.read_many(namespace, list(set(segments.values())))
            return self._core.match(namespace, segments, found)
        except (CorruptRecordError, KeyConflictError) as exc:
            if not skip_unreadable:
                if isinstance(exc, CorruptRecordError):
                    self._core.add_hint(exc)
                raise
        readable: dict[str, Checkpoint] = {}
        for key, segment in segments.items():  # the rare slow path: find which records can be read
            with contextlib.suppress(CorruptRecordError, KeyConflictError):
                record = self.backend.read(namespace, segment)
                readable.update(self._core.match(namespace, {key: segment}, {segment: record} if record else {}))
        return readable

    def claim_many(
        self, ns: str, keys: Iterable[str], owner_run_id: str | None = None, lease_ms: int | None = None
    ) -> dict[str, ClaimResult]:
        """`claim` for many keys: one read finds finished and busy keys, one transaction claims the rest."""
        try:
            namespace, segments, lease = self._core.claim_many(ns, keys, owner_run_id, lease_ms)
            if not segments:
                return {}
            backend = self.backend
            snapshot = backend.read_many(namespace, list(set(segments.values())))
            answers, pending = self._core.answer_from(namespace, segments, owner_run_id, lease, snapshot,
                                                      backend.now_ms())
            if pending:
                values = backend.apply_many(namespace, [(p.segment, p.transition) for _, p in pending], False)
                answers.update(zip([key for key, _ in pending], values, strict=True))
            return {key: answers[key] for key in segments}
        except CorruptRecordError as exc:
            self._core.add_hint(exc)
            raise

    # ---- inspection and moving stores ----

    def namespaces(self) -> builtins.list[str]:
        return self.backend.namespaces()

    def scan(self, ns: str, status: Status | str | None = None) -> Iterator[Checkpoint | CorruptRecord]:
        """Stream a namespace's records, unordered, with unreadable ones as CorruptRecord."""
        namespace, wanted = self._core.list_args(ns, status)
        return self.backend.scan(namespace, wanted)

    def import_record(self, record: Checkpoint) -> bool:
        """Store a record taken from another store, only where the key has none; False if one is there."""
        if not isinstance(record, Checkpoint):
            raise InvalidArgumentError(f"import_record takes a Checkpoint, got {type(record).__name__}")
        namespace, segment = self._core.target(record.namespace, record.key)
        # Encoded again: an imported result is held to the same rules and limit as one given to `done`.
        record = replace(record, result_json=encode_result(record.result))
        plan = Plan(namespace, segment, machine.for_key(namespace, record.key, machine.put_if_absent(record)), True)
        return bool(self._run(plan))

    def quarantine(self, problem: CorruptRecord) -> str:
        if not isinstance(problem, CorruptRecord):
            raise InvalidArgumentError(
                f"quarantine takes a CorruptRecord found by scan, got {type(problem).__name__}"
            )
        return self.backend.quarantine(problem.namespace, problem.location)

    # ---- steps ----

    def step(self, ns: str, key: str, **options: Any) -> Step:
        from .step import Step

        return Step(self, ns, key, **options)

    def checkpointed(self, ns: str, key: KeySpec, **options: Any) -> Callable[[F], F]:
        from .step import checkpointed

        return checkpointed(self, ns, key, **options)

    def heartbeat(self) -> Any:
        from .step import Heartbeat

        with self._open_lock:
            if self._heartbeat is None:
                self._heartbeat = Heartbeat(self)
            return self._heartbeat


class AsyncCheckpointClient:
    """The same API as coroutines. File and SQLite calls run in worker threads; PostgreSQL is natively async."""

    def __init__(self, url: str | None = None, *, durability: Literal["full", "fast"] = "full") -> None:
        self._core = ClientCore(url, durability)
        self._backend: AsyncBackend | None = None

    @property
    def url(self) -> str:
        return self._core.url

    @property
    def url_source(self) -> str:
        return self._core.url_source

    @property
    def location(self) -> StoreLocation:
        return self._core.location

    @property
    def shareable_url(self) -> str:
        """The store's URL with its path made absolute (see `CheckpointClient.shareable_url`)."""
        return self._core.location.absolute_url

    @property
    def backend(self) -> AsyncBackend:
        if self._backend is None:
            self._backend = open_async_backend(
                self._core.location, self._core.durability, memory_id=self._core.memory_id
            )
        return self._backend

    async def _ready(self) -> AsyncBackend:
        """The backend, opened off the event loop: opening SQLite may wait on another writer's lock."""
        if self._backend is None:
            location, durability = self._core.location, self._core.durability
            sync = None if location.scheme == "postgresql" else await asyncio.to_thread(
                open_backend, location, durability, self._core.memory_id
            )
            if self._backend is None:
                self._backend = open_async_backend(location, durability, sync)
            elif sync is not None:  # another task opened it meanwhile
                await asyncio.to_thread(sync.close)
        return self._backend

    def __getstate__(self) -> dict[str, Any]:
        return {"core": self._core}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._core = state["core"]
        self._backend = None

    async def _run(self, plan: Plan) -> Any:
        try:
            backend = await self._ready()
            claim_once = getattr(backend, "claim_once", None)
            if plan.claim_args is not None and claim_once is not None:
                return await claim_once(plan.namespace, plan.segment, *plan.claim_args)
            finish_once = getattr(backend, "finish_once", None)
            if plan.finish_args is not None and finish_once is not None:
                return await finish_once(plan.namespace, plan.segment, *plan.finish_args)
            if plan.optimistic:
                change = plan.transition(await backend.read(plan.namespace, plan.segment), await backend.now_ms())
                if not change.writes:
                    return change.value
            return await backend.apply(plan.namespace, plan.segment, plan.transition, plan.durable)
        except CorruptRecordError as exc:
            self._core.add_hint(exc)
            raise

    async def claim(
        self, ns: str, key: str, owner_run_id: str | None = None, lease_ms: int | None = None
    ) -> ClaimResult:
        try:
            namespace, segment, lease = self._core.claim_target(ns, key, owner_run_id, lease_ms)
            backend = await self._ready()
            claim_once = getattr(backend, "claim_once", None)
            if claim_once is not None:
                answer: ClaimResult = await claim_once(namespace, segment, key, owner_run_id, lease)
                return answer
            current = await backend.read(namespace, segment)
            settled = machine.settled_claim(namespace, key, current)
            if settled is not None:
                return settled
            plan = self._core.claim_plan(namespace, segment, key, owner_run_id, lease)
            change = plan.transition(current, await backend.now_ms())
            if not change.writes:
                answer = change.value
                return answer
            answer = await backend.apply(namespace, segment, plan.transition, plan.durable)
            return answer
        except CorruptRecordError as exc:
            self._core.add_hint(exc)
            raise

    async def touch(self, ns: str, key: str, lease_token: str, extend_ms: int | None = None) -> Checkpoint | None:
        record: Checkpoint | None = await self._run(self._core.touch(ns, key, lease_token, extend_ms))
        return record

    async def done(
        self, ns: str, key: str, lease_token: str, result: Any = None, result_ref: str | None = None
    ) -> Checkpoint:
        record: Checkpoint = await self._run(self._core.done(ns, key, lease_token, result, result_ref))
        return record

    async def fail(self, ns: str, key: str, error: str, lease_token: str) -> Checkpoint:
        record: Checkpoint = await self._run(self._core.fail(ns, key, error, lease_token))
        return record

    async def abandon(self, ns: str, key: str, lease_token: str) -> bool:
        return bool(await self._run(self._core.abandon(ns, key, lease_token)))

    async def get(self, ns: str, key: str) -> Checkpoint | None:
        try:
            namespace, segment = self._core.target(ns, key)
            record = await (await self._ready()).read(namespace, segment)
            return None if record is None else self._core.match(namespace, {key: segment}, {segment: record})[key]
        except CorruptRecordError as exc:
            self._core.add_hint(exc)
            raise

    async def get_many(self, ns: str, keys: Iterable[str], *, skip_unreadable: bool = False) -> dict[str, Checkpoint]:
        namespace, segments = self._core.get_many(ns, keys, skip_unreadable)
        backend = await self._ready()
        try:
            found = await backend.read_many(namespace, list(set(segments.values())))
            return self._core.match(namespace, segments, found)
        except (CorruptRecordError, KeyConflictError) as exc:
            if not skip_unreadable:
                if isinstance(exc, CorruptRecordError):
                    self._core.add_hint(exc)
                raise
        readable: dict[str, Checkpoint] = {}
        for key, segment in segments.items():
            with contextlib.suppress(CorruptRecordError, KeyConflictError):
                record = await backend.read(namespace, segment)
                readable.update(self._core.match(namespace, {key: segment}, {segment: record} if record else {}))
        return readable

    async def reset(self, ns: str, key: str) -> bool:
        return bool(await self._run(self._core.reset(ns, key)))

    async def list(self, ns: str, status: Status | str | None = None) -> list[Checkpoint]:
        namespace, wanted = self._core.list_args(ns, status)
        return self._core.ordered([item async for item in (await self._ready()).scan(namespace, wanted)])

    async def namespaces(self) -> builtins.list[str]:
        return await (await self._ready()).namespaces()

    async def scan(self, ns: str, status: Status | str | None = None) -> AsyncIterator[Checkpoint | CorruptRecord]:
        """Stream a namespace's records, unordered, with unreadable ones as CorruptRecord."""
        namespace, wanted = self._core.list_args(ns, status)
        async for item in (await self._ready()).scan(namespace, wanted):
            yield item

    async def _sweep(self, namespace: str | None, pick: Callable[[Checkpoint, int], bool],
                     transition: Transition[bool]) -> int:
        chosen = None if namespace is None else check_namespace(namespace)
        backend = await self._ready()
        namespaces = [chosen] if chosen is not None else await backend.namespaces()
        count = 0
        for ns in namespaces:
            now = await backend.now_ms()
            chunk: list[tuple[str, Transition[Any]]] = []
            async for record in backend.scan(ns, Status.CLAIMED):
                if isinstance(record, Checkpoint) and pick(record, now):
                    chunk.append((storage_segment(record.key), machine.for_key(ns, record.key, transition)))
                    if len(chunk) >= SWEEP_CHUNK:
                        count += sum(await backend.apply_many(ns, chunk, False))
                        chunk = []
            if chunk:
                count += sum(await backend.apply_many(ns, chunk, False))
        return count

    async def gc(self, older_than: int = 0, *, namespace: str | None = None) -> int:
        grace = self._core.older_than(older_than)
        chosen = None if namespace is None else check_namespace(namespace)
        backend = await self._ready()
        collect = getattr(backend, "collect_expired", None)
        if collect is not None:
            names = [chosen] if chosen is not None else await backend.namespaces()
            return sum([await collect(ns, grace) for ns in names])
        return await self._sweep(
            namespace, lambda r, now: machine.lease_expired(r, now, grace), machine.collect(grace)
        )

    async def abandon_owned(self, owner_run_id: str, namespace: str | None = None) -> int:
        if not isinstance(owner_run_id, str) or not owner_run_id:
            raise InvalidArgumentError(f"owner_run_id must be a non-empty string, got {owner_run_id!r}")
        return await self._sweep(
            namespace, lambda r, now: r.owner_run_id == owner_run_id, machine.abandon_owned(owner_run_id)
        )

    async def claim_many(
        self, ns: str, keys: Iterable[str], owner_run_id: str | None = None, lease_ms: int | None = None
    ) -> dict[str, ClaimResult]:
        try:
            namespace, segments, lease = self._core.claim_many(ns, keys, owner_run_id, lease_ms)
            if not segments:
                return {}
            backend = await self._ready()
            snapshot = await backend.read_many(namespace, list(set(segments.values())))
            answers, pending = self._core.answer_from(namespace, segments, owner_run_id, lease, snapshot,
                                                      await backend.now_ms())
            if pending:
                values = await backend.apply_many(namespace, [(p.segment, p.transition) for _, p in pending], False)
                answers.update(zip([key for key, _ in pending], values, strict=True))
            return {key: answers[key] for key in segments}
        except CorruptRecordError as exc:
            self._core.add_hint(exc)
            raise

    def astep(self, ns: str, key: str, **options: Any) -> AsyncStep:
        from .step import AsyncStep

        return AsyncStep(self, ns, key, **options)

    step = astep

    async def aclose(self) -> None:
        if self._backend is not None:
            await self._backend.close()
            self._backend = None

    close = aclose

    async def __aenter__(self) -> AsyncCheckpointClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


