"""One SQLite table, shared with the TypeScript package; WAL journal, claims inside BEGIN IMMEDIATE."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .. import machine
from ..errors import ConfigError, CorruptRecordError
from ..machine import Change, Transition
from ..protocol import Checkpoint, ClaimResult, CorruptRecord, Status
from ..serialize import loads_stored, result_json_of, row_problem
from .base import misplaced, wall_clock_ms

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoints (
  namespace TEXT NOT NULL, storage_key TEXT NOT NULL, key TEXT NOT NULL,
  status TEXT NOT NULL, owner_run_id TEXT, lease_token TEXT, lease_until INTEGER,
  result TEXT, result_ref TEXT, error TEXT, attempts INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
  PRIMARY KEY (namespace, storage_key))
"""
QUARANTINE_SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoints_quarantine AS SELECT *, 0 AS quarantined_at FROM checkpoints WHERE 0
"""
COLUMNS = (
    "namespace, storage_key, key, status, owner_run_id, lease_token, lease_until, "
    "result, result_ref, error, attempts, created_at, updated_at"
)
UPSERT = (
    f"INSERT INTO checkpoints ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) "
    "ON CONFLICT (namespace, storage_key) DO UPDATE SET key=excluded.key, status=excluded.status, "
    "owner_run_id=excluded.owner_run_id, lease_token=excluded.lease_token, lease_until=excluded.lease_until, "
    "result=excluded.result, result_ref=excluded.result_ref, error=excluded.error, "
    "attempts=excluded.attempts, created_at=excluded.created_at, updated_at=excluded.updated_at"
)
SELECT_ONE = f"SELECT {COLUMNS} FROM checkpoints WHERE namespace=? AND storage_key=?"
# A claim of a key with no record: the record the machine built lands only if none appeared meanwhile.
INSERT_NEW = f"INSERT INTO checkpoints ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING"

_SAFE = "BETWEEN -9007199254740992 AND 9007199254740992"  # serialize.MAX_SAFE_INTEGER, either sign
_SAFE_INT = "(typeof({0}) = 'integer' AND {0} " + _SAFE + ")"
# `done`/`fail` in one statement, only on a row that is plainly the caller's live claim and whose columns
# this write replaces were readable: anything else (lease lost, another key, a result or error already
# there, a column of the wrong type) changes nothing and is left to the machine's own transition.
FINISH = (
    "UPDATE checkpoints SET status=?, lease_token=NULL, lease_until=NULL, result=?, result_ref=?, error=?, "
    "updated_at=? WHERE namespace=? AND storage_key=? AND key=? AND status='claimed' AND lease_token=? "
    "AND result IS NULL AND result_ref IS NULL AND error IS NULL "
    f"AND (lease_until IS NULL OR {_SAFE_INT.format('lease_until')}) AND {_SAFE_INT.format('updated_at')} "
    "RETURNING owner_run_id, attempts, created_at"
)
# A row that these SQL tests pass is one `row_to_record` reads and `misplaced` keeps (a plain key stored
# under itself, no result, every column of its type and range): a sufficient test, never a necessary one.
# Rows it does not vouch for are asked of Python (`mooncat_collectable`), so the rule stays the one in
# serialize/base, and an unreadable or misplaced row is never deleted.
_PLAIN_ROW = (
    "(typeof(key) = 'text' AND storage_key = key AND length(key) BETWEEN 1 AND 128 AND key NOT IN ('.', '..') "
    "AND key NOT GLOB '*[^A-Za-z0-9_.-]*' AND typeof(lease_token) = 'text' "
    "AND (owner_run_id IS NULL OR typeof(owner_run_id) = 'text') AND result IS NULL "
    "AND (result_ref IS NULL OR typeof(result_ref) = 'text') AND (error IS NULL OR typeof(error) = 'text') "
    f"AND {_SAFE_INT.format('attempts')} AND {_SAFE_INT.format('created_at')} AND {_SAFE_INT.format('updated_at')} "
    f"AND (lease_until IS NULL OR {_SAFE_INT.format('lease_until')}))"
)
# gc's rule (machine.collect: a claim whose lease ended at `now - older_than` or before), a chunk at a time.
COLLECT = (
    "DELETE FROM checkpoints WHERE rowid IN (SELECT rowid FROM checkpoints WHERE namespace=? "
    "AND status='claimed' AND (lease_until IS NULL OR lease_until <= ?) "
    f"AND ({_PLAIN_ROW} OR mooncat_collectable({COLUMNS})) LIMIT ?)"
)
# Rows deleted per gc transaction: the write lock is held for a few milliseconds at a time.
COLLECT_CHUNK = 5000
BUSY_TIMEOUT_S = 60.0
# A parameter list longer than this is split; SQLite's own limit is 32766 in current builds.
BATCH = 500


_STATUSES = {status.value: status for status in Status}

# Bumped in a forked child, so a backend notices the fork without asking the OS for its pid per call.
_FORKS = [0]


def _after_fork() -> None:
    _FORKS[0] += 1


if hasattr(os, "register_at_fork"):  # absent only where there is no fork (Windows)
    os.register_at_fork(after_in_child=_after_fork)


def row_location(db: str, namespace: str, segment: str) -> str:
    return f"{db} checkpoints(namespace={namespace!r}, storage_key={segment!r})"


def row_to_record(row: Sequence[Any], db: str) -> Checkpoint:
    """A record from a row; `db` names the database in the error raised for an unreadable row.

    This runs on every claim of the rerun path, so it builds nothing it does not return.
    """
    namespace, segment, key, status, owner, token, until, result, ref, error, attempts, created, updated = row
    parsed_status = _STATUSES.get(status) if status.__class__ is str else None
    if parsed_status is None:
        raise CorruptRecordError(row_location(db, namespace, segment), f"unknown status {status!r}")
    problem = row_problem(key, status, owner, token, until, result, ref, error, attempts, created, updated)
    if problem is not None:
        raise CorruptRecordError(row_location(db, namespace, segment), problem)
    value = None
    if result is not None:
        try:
            value = loads_stored(result)
        except ValueError as exc:
            raise CorruptRecordError(row_location(db, namespace, segment), f"result is not JSON ({exc})") from None
        except RecursionError:
            raise CorruptRecordError(row_location(db, namespace, segment), "result nested too deeply to read") from None
    return Checkpoint.stored(
        namespace, key, parsed_status, owner, token, until, value, ref, error, attempts, created, updated, result
    )


def _collectable(*row: Any) -> int:
    """For COLLECT: 1 if the row is one `scan` returns as a record (readable, stored under its key's name)."""
    try:
        record = row_to_record(row, "")
    except CorruptRecordError:
        return 0
    return 1 if misplaced(row[0], row[1], record, "") is record else 0


def record_to_row(segment: str, record: Checkpoint) -> tuple[Any, ...]:
    return (
        record.namespace, segment, record.key, record.status.value, record.owner_run_id, record.lease_token,
        record.lease_until, result_json_of(record), record.result_ref, record.error, record.attempts,
        record.created_at, record.updated_at,
    )


class SqliteBackend:
    def __init__(self, path: str | os.PathLike[str], durability: str = "full") -> None:
        self.path = Path(path)
        self._db = str(self.path)
        self.fast = durability == "fast"
        if self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._guard = threading.Lock()
        self._pid = os.getpid()
        self._forks = _FORKS[0]
        # Looked at before anything is written: not even the journal mode of a foreign database changes.
        try:
            probe = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S)
            try:
                columns = {row[1] for row in probe.execute("PRAGMA table_info(checkpoints)")}
            finally:
                probe.close()
        except sqlite3.Error as exc:  # not a database, a folder, no permission: say which file
            raise ConfigError(f"cannot use {self.path} as a checkpoint database: {exc}") from None
        missing = [name for name in COLUMNS.split(", ") if name not in columns]
        if columns and missing:
            raise ConfigError(
                f"{self.path} has a table 'checkpoints' that is not a checkpoint table "
                f"(no column {', '.join(missing)}); use another file"
            )
        conn = self._conn()
        with _transaction(conn):
            conn.execute(SCHEMA)

    def now_ms(self) -> int:
        return wall_clock_ms()

    def _conn(self) -> sqlite3.Connection:
        """One connection per thread: sqlite3 connections must not be shared between threads at once."""
        if self._forks != _FORKS[0]:  # forked: the parent's connections must not be touched
            self._local = threading.local()
            self._all = []
            self._pid = os.getpid()
            self._forks = _FORKS[0]
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            _enter_wal(conn)
            conn.create_function("mooncat_collectable", 13, _collectable, deterministic=True)
            self._local.conn = conn
            self._local.sync = ""
            with self._guard:
                self._all.append(conn)
        return conn

    def _set_sync(self, conn: sqlite3.Connection, durable: bool) -> None:
        # In WAL mode NORMAL syncs only at checkpoints; FULL syncs every commit. `done` must be durable.
        wanted = "FULL" if durable and not self.fast else "NORMAL"
        if self._local.sync != wanted:
            conn.execute(f"PRAGMA synchronous={wanted}")
            self._local.sync = wanted

    def _location(self, namespace: str, segment: str) -> str:
        return row_location(self._db, namespace, segment)

    def _read_with(self, conn: sqlite3.Connection, namespace: str, segment: str) -> Checkpoint | None:
        row = conn.execute(SELECT_ONE, (namespace, segment)).fetchone()
        return None if row is None else row_to_record(row, self._db)

    def read(self, namespace: str, segment: str) -> Checkpoint | None:
        return self._read_with(self._conn(), namespace, segment)

    def read_many(self, namespace: str, segments: Sequence[str]) -> dict[str, Checkpoint]:
        conn = self._conn()
        found: dict[str, Checkpoint] = {}
        unique = list(dict.fromkeys(segments))
        for start in range(0, len(unique), BATCH):
            chunk = unique[start : start + BATCH]
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM checkpoints WHERE namespace=? AND storage_key IN ({marks})",
                (namespace, *chunk),
            ).fetchall()
            for row in rows:
                found[row[1]] = row_to_record(row, self._db)
        return found

    def apply(self, namespace: str, segment: str, transition: Transition[T], durable: bool) -> T:
        return self.apply_many(namespace, [(segment, transition)], durable)[0]  # type: ignore[no-any-return]

    def apply_many(
        self, namespace: str, items: Sequence[tuple[str, Transition[Any]]], durable: bool
    ) -> list[Any]:
        conn = self._conn()
        self._set_sync(conn, durable)
        with _transaction(conn):
            now = self.now_ms()
            return [self._apply_locked(conn, namespace, segment, transition, now) for segment, transition in items]

    def _apply_locked(
        self, conn: sqlite3.Connection, namespace: str, segment: str, transition: Transition[T], now: int
    ) -> T:
        change: Change[T] = transition(self._read_with(conn, namespace, segment), now)
        if change.put is not None:
            conn.execute(UPSERT, record_to_row(segment, change.put))
        elif change.delete:
            conn.execute("DELETE FROM checkpoints WHERE namespace=? AND storage_key=?", (namespace, segment))
        return change.value

    def claim_once(
        self, namespace: str, segment: str, key: str, owner_run_id: str | None, lease_ms: int
    ) -> ClaimResult:
        """`machine.claim` with fewer statements: a done, failed or busy key is answered from one unlocked
        read; a key with no record is inserted without being read again under the lock."""
        conn = self._conn()
        row = conn.execute(SELECT_ONE, (namespace, segment)).fetchone()
        current = None if row is None else row_to_record(row, self._db)
        if current is not None:
            settled = machine.settled_claim(namespace, key, current)
            if settled is not None:
                return settled
        transition = machine.for_key(namespace, key, machine.claim(namespace, key, owner_run_id, lease_ms))
        if current is not None:
            change = transition(current, self.now_ms())
            if not change.writes:
                return change.value
        self._set_sync(conn, False)
        with _transaction(conn):
            now = self.now_ms()  # read under the lock: waiting for it must not shorten the lease
            if current is None:
                change = transition(None, now)
                assert change.put is not None  # a claim of an absent key always writes
                if conn.execute(INSERT_NEW, record_to_row(segment, change.put)).rowcount == 1:
                    return change.value
            return self._apply_locked(conn, namespace, segment, transition, now)

    def finish_once(
        self, namespace: str, segment: str, key: str, lease_token: str, status: Status, result: Any,
        result_json: str | None, result_ref: str | None, error: str | None,
    ) -> Checkpoint:
        """`machine.done` / `machine.fail` as one guarded UPDATE; whatever it does not settle (a lost lease,
        another key, an unreadable column) runs the machine's transition in the same transaction."""
        conn = self._conn()
        self._set_sync(conn, True)
        with _transaction(conn):
            now = self.now_ms()
            kept = conn.execute(
                FINISH, (status.value, result_json, result_ref, error, now, namespace, segment, key, lease_token)
            ).fetchone()
            if kept is not None:
                owner, attempts, created = kept
                # The columns this write kept are checked as a read would; a bad one rolls the write back.
                problem = row_problem(key, status.value, owner, None, None, result_json, result_ref, error,
                                      attempts, created, now)
                if problem is not None:
                    raise CorruptRecordError(self._location(namespace, segment), problem)
                return Checkpoint.stored(namespace, key, status, owner, None, None, result, result_ref, error,
                                         attempts, created, now, result_json)
            if status is Status.DONE:
                transition = machine.done(namespace, key, lease_token, result, result_json, result_ref)
            else:
                transition = machine.fail(namespace, key, lease_token, error or "")
            return self._apply_locked(conn, namespace, segment, machine.for_key(namespace, key, transition), now)

    def collect_expired(self, namespace: str, older_than: int) -> int:
        """gc of one namespace, a DELETE per chunk; each chunk decided under the write lock at its own `now`."""
        conn = self._conn()
        self._set_sync(conn, False)
        total = 0
        while True:
            with _transaction(conn):
                removed = conn.execute(COLLECT, (namespace, self.now_ms() - older_than, COLLECT_CHUNK)).rowcount
            total += removed
            if removed < COLLECT_CHUNK:
                return total

    def scan(self, namespace: str, status: Status | None = None) -> Iterator[Checkpoint | CorruptRecord]:
        # A separate connection: the cursor streams while the caller may write through its own.
        # Not bound to one thread: an async scan advances it from whichever worker thread is free.
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        try:
            sql = f"SELECT {COLUMNS} FROM checkpoints WHERE namespace=?"
            params: tuple[Any, ...] = (namespace,)
            if status is not None:
                sql += " AND status=?"
                params += (status.value,)
            for row in conn.execute(sql, params):
                try:
                    record = row_to_record(row, self._db)
                except CorruptRecordError as exc:
                    yield CorruptRecord(namespace, exc.location, exc.reason)
                else:
                    yield misplaced(namespace, row[1], record, self._location(namespace, row[1]))
        finally:
            conn.close()

    def namespaces(self) -> list[str]:
        return [row[0] for row in self._conn().execute("SELECT DISTINCT namespace FROM checkpoints ORDER BY 1")]

    def quarantine(self, namespace: str, location: str) -> str:
        conn = self._conn()
        self._set_sync(conn, True)
        with _transaction(conn):
            conn.execute(QUARANTINE_SCHEMA)
            moved = 0
            for (segment,) in conn.execute(
                "SELECT storage_key FROM checkpoints WHERE namespace=?", (namespace,)
            ).fetchall():
                if self._location(namespace, segment) == location:
                    conn.execute(
                        f"INSERT INTO checkpoints_quarantine SELECT {COLUMNS}, ? FROM checkpoints "
                        "WHERE namespace=? AND storage_key=?",
                        (wall_clock_ms(), namespace, segment),
                    )
                    conn.execute("DELETE FROM checkpoints WHERE namespace=? AND storage_key=?", (namespace, segment))
                    moved += 1
            if not moved:
                raise LookupError(f"no row at {location}")
        return f"{self.path} checkpoints_quarantine"

    def close(self) -> None:
        with self._guard:
            if self._pid == os.getpid():
                for conn in self._all:
                    conn.close()
            self._all = []
            self._local = threading.local()


def _enter_wal(conn: sqlite3.Connection) -> None:
    """PRAGMA journal_mode=WAL, waiting like any other statement: while another process switches a new
    database to WAL, SQLite answers "database is locked" at once instead of calling the busy handler."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


class _transaction:
    """BEGIN IMMEDIATE .. COMMIT; on any failure roll back and re-raise the original error."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if exc is None:
            try:
                self.conn.execute("COMMIT")
            except BaseException:
                # A failed COMMIT (disk full, I/O error) can leave the transaction open: end it.
                if self.conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self.conn.execute("ROLLBACK")
                raise
            return
        with contextlib.suppress(sqlite3.Error):  # the original error is what the caller must see
            self.conn.execute("ROLLBACK")
