"""PostgreSQL: one store for workers on many machines (psycopg 3 with a connection pool).

Times come from the server's clock, so hosts whose clocks disagree still agree on when a lease ends.
(A test may install its own clock by assigning `now_ms` on a backend instance, as the shared suite does
for every backend; the statements then take their time from it.)
Every operation is one autocommit statement or one short transaction; none is left open between calls.
A pooled connection that the server closed while it sat idle is dropped before use, so the call after
a restart or a `pg_terminate_backend` reconnects; a call that loses its connection midway fails with
`PostgresUnavailableError` and leaves nothing half-applied (a transaction that did not commit is rolled
back by the server). Install with the `[postgres]` extra.
"""

from __future__ import annotations

import asyncio
import os
import select
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from .. import machine
from ..errors import CheckpointError, ConfigError, CorruptRecordError
from ..machine import Transition
from ..protocol import Checkpoint, ClaimResult, CorruptRecord, Status
from .base import misplaced
from .postgres_sql import (
    CONNECT_TIMEOUT_S,
    IDLE_IN_TRANSACTION_TIMEOUT_MS,
    LOCK_TIMEOUT_MS,
    OWN_OPTIONS,
    SCHEMA_VERSION,
    STATEMENT_TIMEOUT_MS,
    PostgresTarget,
    Statements,
    Writes,
    check_claim_args,
    claim_answer,
    claim_params,
    decide,
    parse_postgres_url,
    row_to_record,
)

T = TypeVar("T")

APPLICATION_NAME = "mooncat-checkpoint"
PAGE_SIZE = 500
# Runs of a transaction that met a row inserted, or a deadlock, after its lock read.
MAX_CONFLICT_RETRIES = 20
POOL_WAIT_S = 15.0
# SQLSTATE classes meaning the connection, not the statement, failed.
_CONNECTION_STATES = ("08", "57P01", "57P02", "57P03")
# ... and those meaning the server cannot serve now (too busy, shutting down, a statement or lock timed out),
# which a later call may not meet: reported as unavailable, not as a problem of the store's configuration.
_SERVER_STATES = (*_CONNECTION_STATES, "53", "57", "58", "55P03")
_RETRY_STATES = (pg_errors.UniqueViolation, pg_errors.DeadlockDetected, pg_errors.SerializationFailure)


class PostgresUnavailableError(CheckpointError, ConnectionError):
    """The server could not be reached, or the connection broke during the call; nothing was half-applied."""


class PostgresOutcomeUnknownError(PostgresUnavailableError):
    """The connection broke while a transaction was committing: it either committed whole or not at all.

    Read the record to see which; the lease token fences any retry of `done` or `fail`.
    """


def _connection_lost(exc: psycopg.Error) -> bool:
    state = exc.sqlstate
    return state is None or state.startswith(_CONNECTION_STATES)


def _one_line(exc: BaseException) -> str:
    # libpq's messages span lines (one per address tried, DETAIL and HINT lines).
    return " ".join(str(exc).split())


def open_target(url: str) -> PostgresTarget:
    """The store a URL names, checked without connecting: our own options, then libpq's parse of the rest.

    A misspelt option or a malformed value is a ConfigError naming it here, not a psycopg error at the first
    call (libpq checks the names of its parameters when it parses, most of their values only when it connects).
    """
    target = parse_postgres_url(url)
    try:
        params = conninfo_to_dict(target.conninfo)
    except psycopg.Error as exc:
        raise ConfigError(
            f"PostgreSQL URL {target.display}: {_one_line(exc)} (this package's options are "
            f"{', '.join(OWN_OPTIONS)}; any other must be a libpq connection parameter)"
        ) from None
    for port in str(params.get("port") or "").split(","):
        if port and not (port.isdigit() and 1 <= int(port) <= 65535):
            raise ConfigError(f"PostgreSQL URL {target.display}: port {port!r} is not a number from 1 to 65535")
    timeout = params.get("connect_timeout")
    if timeout is not None:
        try:
            int(float(timeout))  # as psycopg reads it
        except ValueError:
            raise ConfigError(
                f"PostgreSQL URL {target.display}: connect_timeout {timeout!r} is not a number of seconds"
            ) from None
    return target


def store_exists(url: str) -> bool:
    """Whether the store's table is there, found with a read-only query on one short connection: nothing is
    created, unlike opening a backend. For commands that must not bring a mistyped store into being."""
    return store_parts(url)[1]


def store_parts(url: str) -> tuple[bool, bool]:
    """(the schema exists, the store's table exists), read without creating anything."""
    target = open_target(url)
    sql = Statements.for_target(target)
    try:
        with psycopg.connect(target.conninfo, **_connect_kwargs(target.conninfo)) as conn:
            schema = conn.execute(sql.schema_exists, (sql.names["schema"],)).fetchone()
            table = conn.execute(sql.version_exists, (sql.records_table,)).fetchone()
    except psycopg.Error as exc:
        raise _store_error(target.display, exc, "cannot be read") from exc
    return bool(schema and schema[0]), bool(table and table[0])


def drop_empty_store(url: str, with_schema: bool) -> bool:
    """Remove the store's tables if they hold no record (and then its schema, if asked and it holds nothing
    else): for a store that a throwaway run created. False when something was kept because it is in use."""
    target = open_target(url)
    sql = Statements.for_target(target)
    try:
        with psycopg.connect(target.conninfo, **_connect_kwargs(target.conninfo)) as conn:
            conn.execute(_session_settings())
            with conn.transaction():
                # Locked first: a writer arriving now waits, then finds the tables gone, instead of losing a row.
                conn.execute(sql.lock_all)
                row = conn.execute(sql.holds_nothing).fetchone()
                if not row or not row[0]:
                    return False
                for statement in sql.drop():
                    conn.execute(statement)
            if with_schema:
                try:
                    conn.execute(sql.drop_schema)
                except pg_errors.DependentObjectsStillExist:
                    return False
    except psycopg.Error as exc:
        raise _store_error(target.display, exc, "cannot be removed") from exc
    return True


def _store_error(display: str, exc: psycopg.Error, doing: str) -> CheckpointError:
    """A psycopg error as this library's: the server's trouble, or a store that cannot be used as configured."""
    state = exc.sqlstate
    if state is None or state.startswith(_SERVER_STATES):
        return _unavailable(display, exc)
    return ConfigError(f"PostgreSQL store {display} {doing}: {_one_line(exc)}")


def _closed_while_idle(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    """An idle connection has nothing to read; readable means the server sent a goodbye or closed it."""
    if conn.closed or conn.broken:
        return True
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _session_settings() -> str:
    # Off for the session; `done`, `fail` and imports turn it on for their own transaction unless
    # the store was opened with durability "fast".
    return (
        f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}; SET lock_timeout = {LOCK_TIMEOUT_MS}; "
        f"SET idle_in_transaction_session_timeout = {IDLE_IN_TRANSACTION_TIMEOUT_MS}; "
        "SET synchronous_commit = off"
    )


def _connect_kwargs(conninfo: str) -> dict[str, Any]:
    given = conninfo_to_dict(conninfo)
    extra: dict[str, Any] = {"autocommit": True}
    if "application_name" not in given:
        extra["application_name"] = APPLICATION_NAME
    if "connect_timeout" not in given:
        extra["connect_timeout"] = CONNECT_TIMEOUT_S
    return extra


def _unavailable(display: str, exc: BaseException) -> PostgresUnavailableError:
    return PostgresUnavailableError(f"PostgreSQL store {display} is unavailable: {_one_line(exc)}")


def _outcome_unknown(display: str, exc: BaseException) -> PostgresOutcomeUnknownError:
    return PostgresOutcomeUnknownError(
        f"PostgreSQL store {display}: the connection broke while committing; the change is either "
        f"fully applied or not at all (read the record to see which): {_one_line(exc)}"
    )


def _version_error(found: int, display: str) -> ConfigError:
    return ConfigError(
        f"PostgreSQL store {display} has schema version {found}, newer than this package knows "
        f"({SCHEMA_VERSION}); upgrade mooncat-checkpoint"
    )


class PostgresBackend:
    """Blocking backend; safe to share between threads (each call borrows a pooled connection)."""

    def __init__(self, url: str, durability: str = "full") -> None:
        self.target = open_target(url)
        self.sql = Statements.for_target(self.target)
        self.fast = durability == "fast"
        self._guard = threading.Lock()
        self._pool_pid = -1
        self._pool_ref: ConnectionPool | None = None
        # Pools inherited over fork: never touched or closed in the child, whose sockets they share.
        self._inherited: list[ConnectionPool] = []
        # One direct connection first: an unreachable server is reported at once, with libpq's reason,
        # instead of after the pool's wait for a connection.
        try:
            with psycopg.connect(self.target.conninfo, **_connect_kwargs(self.target.conninfo)) as conn:
                conn.execute(_session_settings())
                self._ensure_schema(conn)
        except psycopg.Error as exc:
            raise _store_error(self.target.display, exc, "cannot be opened") from exc

    # ---- connections ----

    def _pool(self) -> ConnectionPool:
        pid = os.getpid()
        if self._pool_ref is not None and self._pool_pid == pid:
            return self._pool_ref
        with self._guard:
            if self._pool_ref is None or self._pool_pid != pid:
                if self._pool_ref is not None:
                    self._inherited.append(self._pool_ref)
                settings = _session_settings()
                self._pool_ref = ConnectionPool(
                    self.target.conninfo, kwargs=_connect_kwargs(self.target.conninfo), min_size=1,
                    max_size=self.target.pool_size, open=True, timeout=POOL_WAIT_S, name="mooncat-checkpoint",
                    configure=lambda conn: _configure(conn, settings), check=_check_idle,
                )
                self._pool_pid = pid
        return self._pool_ref

    def _call(self, work: Callable[[psycopg.Connection[Any]], T], retry: bool) -> T:
        """Run `work` on a pooled connection; a read that lost its connection runs once more."""
        for attempt in (1, 2):
            try:
                with self._pool().connection() as conn:
                    return work(conn)
            except PoolTimeout as exc:
                raise _unavailable(self.target.display, exc) from exc
            except psycopg.Error as exc:
                if not _connection_lost(exc) or not retry or attempt == 2:
                    raise _store_error(self.target.display, exc, "failed") from exc
        raise AssertionError("unreachable")

    def _ensure_schema(self, conn: psycopg.Connection[Any]) -> None:
        if self._stored_version(conn) == SCHEMA_VERSION:
            return
        with conn.transaction():
            # Workers starting together: one creates, the others wait here and then find it done.
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (self.sql.lock_key,))
            if self._stored_version(conn) == SCHEMA_VERSION:
                return
            for statement in self.sql.create():
                conn.execute(statement)

    def _stored_version(self, conn: psycopg.Connection[Any]) -> int | None:
        exists = conn.execute(self.sql.version_exists, (self.sql.version_table,)).fetchone()
        if not exists or not exists[0]:
            return None
        row = conn.execute(self.sql.read_version).fetchone()
        found = row[0] if row else None
        if found is not None and found > SCHEMA_VERSION:
            raise _version_error(found, self.target.display)
        return int(found) if found is not None else None

    def _installed_clock(self) -> Callable[[], int] | None:
        clock: Callable[[], int] | None = self.__dict__.get("now_ms")
        return clock

    # ---- the Backend protocol ----

    def now_ms(self) -> int:
        def work(conn: psycopg.Connection[Any]) -> int:
            row = conn.execute(self.sql.now).fetchone()
            assert row is not None
            return int(row[0])

        return self._call(work, retry=True)

    def read(self, namespace: str, segment: str) -> Checkpoint | None:
        def work(conn: psycopg.Connection[Any]) -> Checkpoint | None:
            row = conn.execute(self.sql.select_one, (namespace, segment)).fetchone()
            return None if row is None else row_to_record(row, self.sql.location(namespace, segment))

        return self._call(work, retry=True)

    def read_many(self, namespace: str, segments: Sequence[str]) -> dict[str, Checkpoint]:
        def work(conn: psycopg.Connection[Any]) -> dict[str, Checkpoint]:
            rows = conn.execute(self.sql.select_many, (namespace, list(set(segments)))).fetchall()
            return {row[1]: row_to_record(row, self.sql.location(namespace, row[1])) for row in rows}

        return self._call(work, retry=True)

    def apply(self, namespace: str, segment: str, transition: Transition[T], durable: bool) -> T:
        return self.apply_many(namespace, [(segment, transition)], durable)[0]  # type: ignore[no-any-return]

    def apply_many(
        self, namespace: str, items: Sequence[tuple[str, Transition[Any]]], durable: bool
    ) -> list[Any]:
        segments = sorted({segment for segment, _ in items})
        committing = [False]

        def work(conn: psycopg.Connection[Any]) -> list[Any]:
            for _ in range(MAX_CONFLICT_RETRIES):
                try:
                    return self._transaction(conn, namespace, segments, items, durable, committing)
                except _RETRY_STATES:
                    continue
                except psycopg.Error as exc:
                    if committing[0] and _connection_lost(exc):
                        raise _outcome_unknown(self.target.display, exc) from exc
                    raise
            raise PostgresUnavailableError(
                f"PostgreSQL store {self.target.display}: "
                f"gave up after {MAX_CONFLICT_RETRIES} conflicting runs"
            )

        return self._call(work, retry=True)

    def _transaction(
        self, conn: psycopg.Connection[Any], namespace: str, segments: list[str],
        items: Sequence[tuple[str, Transition[Any]]], durable: bool, committing: list[bool],
    ) -> list[Any]:
        # Two round trips: lock and read the rows with the server's time; then write and commit.
        committing[0] = False
        with conn.pipeline(), conn.transaction():
            if durable and not self.fast:
                conn.execute("SET LOCAL synchronous_commit = on")
            locked = conn.execute(self.sql.lock_many, (namespace, segments))
            installed = self._installed_clock()
            clock = None if installed else conn.execute(self.sql.now)
            rows = locked.fetchall()
            now = installed() if installed else _first(clock)
            writes = decide(self.sql, namespace, items, rows, now)
            self._write(conn.cursor(), writes)
            committing[0] = True
        return writes.values

    def _write(self, cursor: psycopg.Cursor[Any], writes: Writes) -> None:
        if writes.inserts:
            cursor.executemany(self.sql.insert, writes.inserts)
        if writes.updates:
            cursor.executemany(self.sql.update, writes.updates)
        if writes.deletes:
            cursor.executemany(self.sql.delete, writes.deletes)

    def claim_once(
        self, namespace: str, segment: str, key: str, owner_run_id: str | None, lease_ms: int
    ) -> ClaimResult:
        """`machine.claim` in one statement and one round trip (see `Statements.claim`)."""
        check_claim_args(key, owner_run_id)
        installed = self._installed_clock()
        params = claim_params(
            namespace, segment, key, owner_run_id, lease_ms, machine.new_lease_token(),
            installed() if installed else None,
        )

        def work(conn: psycopg.Connection[Any]) -> list[Any]:
            return conn.execute(self.sql.claim, params).fetchall()

        answer = claim_answer(self.sql, namespace, key, owner_run_id, lease_ms, self._call(work, retry=False))
        if answer is not None:
            return answer
        transition = machine.for_key(namespace, key, machine.claim(namespace, key, owner_run_id, lease_ms))
        return self.apply(namespace, segment, transition, False)

    def scan(self, namespace: str, status: Status | None = None) -> Iterator[Checkpoint | CorruptRecord]:
        statement = self.sql.page(status is not None)
        after = ""
        while True:
            params = {"ns": namespace, "status": status.value if status else None, "after": after,
                      "limit": PAGE_SIZE}

            def work(conn: psycopg.Connection[Any], p: dict[str, Any] = params) -> list[Any]:
                return conn.execute(statement, p).fetchall()

            rows = self._call(work, retry=True)
            for row in rows:
                yield _record_or_corrupt(self.sql, namespace, row)
            if len(rows) < PAGE_SIZE:
                return
            after = rows[-1][1]

    def namespaces(self) -> list[str]:
        return self._call(lambda conn: [row[0] for row in conn.execute(self.sql.namespaces)], retry=True)

    def quarantine(self, namespace: str, location: str) -> str:
        def work(conn: psycopg.Connection[Any]) -> None:
            segments = [row[0] for row in conn.execute(self.sql.segments_of, (namespace,))]
            chosen = [s for s in segments if self.sql.location(namespace, s) == location]
            if not chosen:
                raise LookupError(f"no row at {location}")
            with conn.transaction():
                conn.execute("SET LOCAL synchronous_commit = on")
                for segment in chosen:
                    conn.execute(self.sql.quarantine_copy, (namespace, segment))
                    conn.execute(self.sql.delete, (namespace, segment))

        self._call(work, retry=False)
        return self.sql.quarantine_name

    def close(self) -> None:
        with self._guard:
            if self._pool_ref is not None and self._pool_pid == os.getpid():
                self._pool_ref.close()
            self._pool_ref = None


def _first(cursor: psycopg.Cursor[Any] | None) -> int:
    row = cursor.fetchone() if cursor is not None else None
    assert row is not None
    return int(row[0])


def _configure(conn: psycopg.Connection[Any], settings: str) -> None:
    conn.execute(settings)


def _check_idle(conn: psycopg.Connection[Any]) -> None:
    # Closed here so that the pool discards it and opens a new one, instead of offering it again.
    if _closed_while_idle(conn):
        conn.close()
        raise psycopg.OperationalError("the server closed this pooled connection while it was idle")


async def _check_idle_async(conn: psycopg.AsyncConnection[Any]) -> None:
    if _closed_while_idle(conn):
        await conn.close()
        raise psycopg.OperationalError("the server closed this pooled connection while it was idle")


def _record_or_corrupt(
    statements: Statements, namespace: str, row: Sequence[Any]
) -> Checkpoint | CorruptRecord:
    location = statements.location(namespace, row[1])
    try:
        return misplaced(namespace, row[1], row_to_record(row, location), location)
    except CorruptRecordError as exc:
        return CorruptRecord(namespace, exc.location, exc.reason)


AsyncWork = Callable[[psycopg.AsyncConnection[Any]], Any]


class AsyncPostgresBackend:
    """The same store on psycopg's asyncio API; the pool opens on first use inside the running loop."""

    def __init__(self, url: str, durability: str = "full") -> None:
        self.target = open_target(url)
        self.sql = Statements.for_target(self.target)
        self.fast = durability == "fast"
        self._pool_ref: AsyncConnectionPool | None = None
        self._opening: asyncio.Lock | None = None

    async def _pool(self) -> AsyncConnectionPool:
        if self._pool_ref is not None:
            return self._pool_ref
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._pool_ref is None:
                settings = _session_settings()

                async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
                    await conn.execute(settings)

                pool = AsyncConnectionPool(
                    self.target.conninfo, kwargs=_connect_kwargs(self.target.conninfo), min_size=1,
                    max_size=self.target.pool_size, open=False, timeout=POOL_WAIT_S,
                    name="mooncat-checkpoint-async", configure=configure, check=_check_idle_async,
                )
                kwargs = _connect_kwargs(self.target.conninfo)
                try:
                    async with await psycopg.AsyncConnection.connect(self.target.conninfo, **kwargs) as conn:
                        await conn.execute(settings)
                        await self._ensure_schema(conn)
                except psycopg.Error as exc:
                    raise _store_error(self.target.display, exc, "cannot be opened") from exc
                await pool.open()
                self._pool_ref = pool
        return self._pool_ref

    async def _call(self, work: AsyncWork, retry: bool) -> Any:
        return await self._call_on(await self._pool(), work, retry)

    async def _call_on(self, pool: AsyncConnectionPool, work: AsyncWork, retry: bool) -> Any:
        for attempt in (1, 2):
            try:
                async with pool.connection() as conn:
                    return await work(conn)
            except PoolTimeout as exc:
                raise _unavailable(self.target.display, exc) from exc
            except psycopg.Error as exc:
                if not _connection_lost(exc) or not retry or attempt == 2:
                    raise _store_error(self.target.display, exc, "failed") from exc
        raise AssertionError("unreachable")

    async def _ensure_schema(self, conn: psycopg.AsyncConnection[Any]) -> None:
        if await self._stored_version(conn) == SCHEMA_VERSION:
            return
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (self.sql.lock_key,))
            if await self._stored_version(conn) == SCHEMA_VERSION:
                return
            for statement in self.sql.create():
                await conn.execute(statement)

    async def _stored_version(self, conn: psycopg.AsyncConnection[Any]) -> int | None:
        exists = await (await conn.execute(self.sql.version_exists, (self.sql.version_table,))).fetchone()
        if not exists or not exists[0]:
            return None
        row = await (await conn.execute(self.sql.read_version)).fetchone()
        found = row[0] if row else None
        if found is not None and found > SCHEMA_VERSION:
            raise _version_error(found, self.target.display)
        return int(found) if found is not None else None

    async def now_ms(self) -> int:
        async def work(conn: psycopg.AsyncConnection[Any]) -> int:
            row = await (await conn.execute(self.sql.now)).fetchone()
            assert row is not None
            return int(row[0])

        return int(await self._call(work, retry=True))

    async def read(self, namespace: str, segment: str) -> Checkpoint | None:
        async def work(conn: psycopg.AsyncConnection[Any]) -> Checkpoint | None:
            row = await (await conn.execute(self.sql.select_one, (namespace, segment))).fetchone()
            return None if row is None else row_to_record(row, self.sql.location(namespace, segment))

        found: Checkpoint | None = await self._call(work, retry=True)
        return found

    async def read_many(self, namespace: str, segments: Sequence[str]) -> dict[str, Checkpoint]:
        async def work(conn: psycopg.AsyncConnection[Any]) -> dict[str, Checkpoint]:
            cursor = await conn.execute(self.sql.select_many, (namespace, list(set(segments))))
            rows = await cursor.fetchall()
            return {row[1]: row_to_record(row, self.sql.location(namespace, row[1])) for row in rows}

        found: dict[str, Checkpoint] = await self._call(work, retry=True)
        return found

    async def apply(self, namespace: str, segment: str, transition: Transition[T], durable: bool) -> T:
        values = await self.apply_many(namespace, [(segment, transition)], durable)
        return values[0]  # type: ignore[no-any-return]

    async def apply_many(
        self, namespace: str, items: Sequence[tuple[str, Transition[Any]]], durable: bool
    ) -> list[Any]:
        segments = sorted({segment for segment, _ in items})
        committing = [False]

        async def work(conn: psycopg.AsyncConnection[Any]) -> list[Any]:
            for _ in range(MAX_CONFLICT_RETRIES):
                try:
                    return await self._transaction(conn, namespace, segments, items, durable, committing)
                except _RETRY_STATES:
                    continue
                except psycopg.Error as exc:
                    if committing[0] and _connection_lost(exc):
                        raise _outcome_unknown(self.target.display, exc) from exc
                    raise
            raise PostgresUnavailableError(
                f"PostgreSQL store {self.target.display}: "
                f"gave up after {MAX_CONFLICT_RETRIES} conflicting runs"
            )

        values: list[Any] = await self._call(work, retry=True)
        return values

    async def _transaction(
        self, conn: psycopg.AsyncConnection[Any], namespace: str, segments: list[str],
        items: Sequence[tuple[str, Transition[Any]]], durable: bool, committing: list[bool],
    ) -> list[Any]:
        committing[0] = False
        async with conn.pipeline(), conn.transaction():
            if durable and not self.fast:
                await conn.execute("SET LOCAL synchronous_commit = on")
            locked = await conn.execute(self.sql.lock_many, (namespace, segments))
            clock = await conn.execute(self.sql.now)
            rows = await locked.fetchall()
            now_row = await clock.fetchone()
            assert now_row is not None
            writes = decide(self.sql, namespace, items, rows, int(now_row[0]))
            cursor = conn.cursor()
            if writes.inserts:
                await cursor.executemany(self.sql.insert, writes.inserts)
            if writes.updates:
                await cursor.executemany(self.sql.update, writes.updates)
            if writes.deletes:
                await cursor.executemany(self.sql.delete, writes.deletes)
            committing[0] = True
        return writes.values

    async def claim_once(
        self, namespace: str, segment: str, key: str, owner_run_id: str | None, lease_ms: int
    ) -> ClaimResult:
        check_claim_args(key, owner_run_id)
        token = machine.new_lease_token()
        params = claim_params(namespace, segment, key, owner_run_id, lease_ms, token, None)

        async def work(conn: psycopg.AsyncConnection[Any]) -> list[Any]:
            return await (await conn.execute(self.sql.claim, params)).fetchall()

        rows = await self._call(work, retry=False)
        answer = claim_answer(self.sql, namespace, key, owner_run_id, lease_ms, rows)
        if answer is not None:
            return answer
        transition = machine.for_key(namespace, key, machine.claim(namespace, key, owner_run_id, lease_ms))
        return await self.apply(namespace, segment, transition, False)

    async def scan(
        self, namespace: str, status: Status | None = None
    ) -> AsyncIterator[Checkpoint | CorruptRecord]:
        statement = self.sql.page(status is not None)
        after = ""
        while True:
            params = {"ns": namespace, "status": status.value if status else None, "after": after,
                      "limit": PAGE_SIZE}

            async def work(conn: psycopg.AsyncConnection[Any], p: dict[str, Any] = params) -> list[Any]:
                return await (await conn.execute(statement, p)).fetchall()

            rows = await self._call(work, retry=True)
            for row in rows:
                yield _record_or_corrupt(self.sql, namespace, row)
            if len(rows) < PAGE_SIZE:
                return
            after = rows[-1][1]

    async def namespaces(self) -> list[str]:
        async def work(conn: psycopg.AsyncConnection[Any]) -> list[str]:
            return [row[0] for row in await (await conn.execute(self.sql.namespaces)).fetchall()]

        names: list[str] = await self._call(work, retry=True)
        return names

    async def close(self) -> None:
        if self._pool_ref is not None:
            await self._pool_ref.close()
            self._pool_ref = None
