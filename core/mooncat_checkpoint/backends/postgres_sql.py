"""The PostgreSQL store's URL options, schema, statements and the pure logic its sync and async fronts share.

Nothing here does I/O: the fronts in `postgres` run these statements and hand the rows back, so the
blocking and the asyncio backends cannot drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from .. import machine
from ..errors import ConfigError, CorruptRecordError, InvalidArgumentError
from ..machine import Change, Transition
from ..protocol import Checkpoint, ClaimResult, Status
from ..serialize import decode_result, result_json_of

SCHEMA_VERSION = 1
DEFAULT_SCHEMA = "mooncat"
DEFAULT_TABLE = "checkpoints"
# Our own URL options; everything else in the query string is a libpq parameter and passed on.
OWN_OPTIONS = ("schema", "table", "pool_size")
DEFAULT_POOL_SIZE = 8
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Derived names (<table>_quarantine, <table>_schema_version, ...) must stay within PostgreSQL's 63 bytes.
_MAX_TABLE_LEN = 40

# Session settings of every pooled connection. A statement that hangs (a lock held by a stuck client,
# a server in trouble) fails instead of stalling a worker forever; a client that dies inside a
# transaction cannot keep its row locks. Claims and touches commit without waiting for the WAL flush:
# losing one in a server crash only loses a lease; `done` and `fail` switch it back on (see `durable`).
STATEMENT_TIMEOUT_MS = 30_000
LOCK_TIMEOUT_MS = 20_000
IDLE_IN_TRANSACTION_TIMEOUT_MS = 60_000
CONNECT_TIMEOUT_S = 10

COLUMNS = (
    "namespace", "storage_key", "key", "status", "owner_run_id", "lease_token", "lease_until",
    "result", "result_ref", "error", "attempts", "created_at", "updated_at",
)
NOW_MS = "floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint"


@dataclass(frozen=True)
class PostgresTarget:
    """Where the records live: the connection string for libpq, and our schema and table names."""

    conninfo: str
    schema: str
    table: str
    pool_size: int
    display: str  # the URL without its password, for messages and record locations


def parse_postgres_url(url: str) -> PostgresTarget:
    """Split our options (`schema`, `table`, `pool_size`) off a postgresql:// URL; bad values are errors."""
    try:
        parts = urlsplit(url)
        port_number = parts.port  # checked here: urlsplit only finds a bad port when asked for it
    except ValueError as exc:  # a port out of range or not a number, an unclosed IPv6 bracket
        raise ConfigError(f"PostgreSQL URL {redact(url)}: {exc}") from None
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError(f"not a PostgreSQL URL: {redact(url)!r}")
    own: dict[str, str] = {}
    passed: list[tuple[str, str]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in OWN_OPTIONS:
            if name in own:
                raise ConfigError(f"store URL option {name!r} is given twice")
            own[name] = value
        else:
            passed.append((name, value))
    schema = _identifier(own.get("schema", DEFAULT_SCHEMA), "schema")
    table = _identifier(own.get("table", DEFAULT_TABLE), "table")
    if len(table) > _MAX_TABLE_LEN:
        raise ConfigError(f"store URL option table={table!r} is longer than {_MAX_TABLE_LEN} characters")
    pool_text = own.get("pool_size", str(DEFAULT_POOL_SIZE))
    if not re.fullmatch(r"[0-9]{1,3}", pool_text) or not 1 <= int(pool_text) <= 100:
        raise ConfigError(f"store URL option pool_size must be an integer from 1 to 100, got {pool_text!r}")
    # Percent-encoding, not urlencode's default '+' for a space: libpq reads '+' as itself.
    conninfo = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(passed, quote_via=quote), parts.fragment))
    host = parts.hostname or "localhost"
    user = f"{parts.username}@" if parts.username else ""
    port = f":{port_number}" if port_number else ""
    display = f"{parts.scheme}://{user}{host}{port}{parts.path}"
    return PostgresTarget(conninfo, schema, table, int(pool_text), display)


def redact(url: str) -> str:
    """The URL as it may be shown in a message: without a password, in the user part or the query."""
    shown = re.sub(r"(://[^/?#@:]*):[^/?#]*@", r"\1@", url)
    return re.sub(r"([?&]password=)[^&#]*", r"\1***", shown)


def _identifier(value: str, option: str) -> str:
    if not _IDENTIFIER.fullmatch(value) or len(value) > 63:
        raise ConfigError(
            f"store URL option {option}={value!r} must be a plain identifier (letters, digits, '_', "
            "not starting with a digit, at most 63 characters)"
        )
    return value


@dataclass(frozen=True)
class Statements:
    """Every statement the backends send, bound to one schema and table."""

    target: PostgresTarget
    names: dict[str, str] = field(default_factory=dict)

    @classmethod
    def for_target(cls, target: PostgresTarget) -> Statements:
        # Plain double quotes are safe: the names were checked to be letters, digits and '_'.
        s, t = target.schema, target.table
        return cls(target, {
            "schema": f'"{s}"',
            "table": f'"{s}"."{t}"',
            "quarantine": f'"{s}"."{t}_quarantine"',
            "version": f'"{s}"."{t}_schema_version"',
            "status_index": f'"{t}_status_idx"',
        })

    def _sql(self, text: str) -> str:
        # Built once per statement (cached properties): the same text each call keeps it prepared.
        return text.format(cols=", ".join(COLUMNS), now=NOW_MS, **self.names)

    @cached_property
    def lock_key(self) -> str:
        return f"mooncat-checkpoint:{self.target.schema}.{self.target.table}"

    # Quoted for to_regclass, which folds unquoted names to lower case as SQL does.
    @cached_property
    def version_table(self) -> str:
        return self.names["version"]

    @cached_property
    def records_table(self) -> str:
        return self.names["table"]

    # ---- schema ----

    def create(self) -> list[str]:
        """Schema version 1. `namespace` and `storage_key` sort bytewise (COLLATE "C"), as in SQLite."""
        return [
            self._sql("CREATE SCHEMA IF NOT EXISTS {schema}"),
            self._sql(
                "CREATE TABLE IF NOT EXISTS {table} ("
                'namespace TEXT COLLATE "C" NOT NULL, storage_key TEXT COLLATE "C" NOT NULL, '
                "key TEXT NOT NULL, "
                "status TEXT NOT NULL, owner_run_id TEXT, lease_token TEXT, lease_until BIGINT, "
                "result TEXT, result_ref TEXT, error TEXT, attempts INTEGER NOT NULL DEFAULT 0, "
                "created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, "
                "PRIMARY KEY (namespace, storage_key))"
            ),
            # list, gc and abandon_owned all page through one namespace's records of one status.
            self._sql(
                "CREATE INDEX IF NOT EXISTS {status_index} ON {table} (namespace, status, storage_key)"
            ),
            self._sql(
                "CREATE TABLE IF NOT EXISTS {quarantine} (LIKE {table}, quarantined_at BIGINT NOT NULL)"
            ),
            self._sql(
                "CREATE TABLE IF NOT EXISTS {version} ("
                "version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            ),
            self._sql("INSERT INTO {version} (version) VALUES (1) ON CONFLICT DO NOTHING"),
        ]

    def drop(self) -> list[str]:
        """Undo `create` for a store that holds nothing (the schema is left to the caller: it may hold more)."""
        return [self._sql("DROP TABLE {version}, {quarantine}, {table}")]

    @cached_property
    def lock_all(self) -> str:
        return self._sql("LOCK TABLE {table}, {quarantine}, {version} IN ACCESS EXCLUSIVE MODE")

    @cached_property
    def holds_nothing(self) -> str:
        return self._sql("SELECT NOT EXISTS (SELECT 1 FROM {table}) AND NOT EXISTS (SELECT 1 FROM {quarantine})")

    @cached_property
    def schema_exists(self) -> str:
        return self._sql("SELECT to_regnamespace(%s) IS NOT NULL")

    @cached_property
    def drop_schema(self) -> str:
        # RESTRICT: a schema that holds anything else stays.
        return self._sql("DROP SCHEMA {schema} RESTRICT")

    @cached_property
    def version_exists(self) -> str:
        return self._sql("SELECT to_regclass(%s) IS NOT NULL")

    @cached_property
    def read_version(self) -> str:
        return self._sql("SELECT max(version) FROM {version}")

    # ---- reads ----

    @cached_property
    def now(self) -> str:
        return self._sql("SELECT {now}")

    @cached_property
    def select_one(self) -> str:
        return self._sql("SELECT {cols} FROM {table} WHERE namespace = %s AND storage_key = %s")

    @cached_property
    def select_many(self) -> str:
        return self._sql("SELECT {cols} FROM {table} WHERE namespace = %s AND storage_key = ANY(%s)")

    def page(self, with_status: bool) -> str:
        """One page of a namespace in key order: scans stream by key ranges, holding no transaction open."""
        return self._page_with_status if with_status else self._page_all

    @cached_property
    def _page_with_status(self) -> str:
        return self._page("AND status = %(status)s ")

    @cached_property
    def _page_all(self) -> str:
        return self._page("")

    def _page(self, status: str) -> str:
        return self._sql(
            "SELECT {cols} FROM {table} WHERE namespace = %(ns)s " + status
            + "AND storage_key > %(after)s ORDER BY storage_key LIMIT %(limit)s"
        )

    @cached_property
    def namespaces(self) -> str:
        # A skip scan over the primary key: one index probe per namespace, not a pass over every row.
        return self._sql(
            "WITH RECURSIVE ns(name) AS ("
            "(SELECT namespace FROM {table} ORDER BY namespace LIMIT 1) UNION ALL "
            "SELECT (SELECT namespace FROM {table} WHERE namespace > ns.name ORDER BY namespace LIMIT 1) "
            "FROM ns WHERE ns.name IS NOT NULL) "
            "SELECT name FROM ns WHERE name IS NOT NULL"
        )

    @cached_property
    def segments_of(self) -> str:
        return self._sql("SELECT storage_key FROM {table} WHERE namespace = %s")

    # ---- writes ----

    @cached_property
    def lock_many(self) -> str:
        # Locked in key order, so two transactions over overlapping keys cannot deadlock.
        return self._sql(
            "SELECT {cols} FROM {table} WHERE namespace = %s AND storage_key = ANY(%s) "
            "ORDER BY storage_key FOR UPDATE"
        )

    @cached_property
    def insert(self) -> str:
        # No ON CONFLICT: a row that appeared since the lock read is a unique violation, and the
        # whole transaction is run again against it.
        marks = ", ".join(["%s"] * len(COLUMNS))
        return self._sql("INSERT INTO {table} ({cols}) VALUES (" + marks + ")")

    @cached_property
    def update(self) -> str:
        return self._sql(
            "UPDATE {table} SET key = %s, status = %s, owner_run_id = %s, lease_token = %s, "
            "lease_until = %s, "
            "result = %s, result_ref = %s, error = %s, attempts = %s, created_at = %s, updated_at = %s "
            "WHERE namespace = %s AND storage_key = %s"
        )

    @cached_property
    def delete(self) -> str:
        return self._sql("DELETE FROM {table} WHERE namespace = %s AND storage_key = %s")

    @cached_property
    def claim(self) -> str:
        """Claim in one statement: insert, or take over a claimed record whose lease has ended.

        It mirrors `machine.claim`: the WHERE clauses are `lease_expired` (a missing lease_until
        counts as ended), and the new row is what `machine.claim` builds (attempts + 1, created_at
        kept, result, result_ref and error cleared). When nothing is written the statement returns
        the record it saw, and `machine.claim` itself gives the answer (done, failed or busy). A
        claimed row holding a result is not one this library writes; it is left to the locking path,
        which reads (and so validates) it first.
        """
        return self._sql(
            "WITH clock AS (SELECT coalesce(%(now)s::bigint, {now}) AS ms), "
            "seen AS (SELECT {cols} FROM {table} WHERE namespace = %(ns)s AND storage_key = %(sk)s), "
            "taken AS ("
            "INSERT INTO {table} AS c ({cols}) "
            "SELECT %(ns)s, %(sk)s, %(key)s, 'claimed', %(owner)s, %(token)s, clock.ms + %(lease)s, "
            "NULL, NULL, NULL, 1, clock.ms, clock.ms FROM clock "
            "WHERE NOT EXISTS (SELECT 1 FROM seen WHERE seen.key <> %(key)s OR seen.status <> 'claimed' "
            "OR seen.lease_until > clock.ms OR seen.result IS NOT NULL) "
            "ON CONFLICT (namespace, storage_key) DO UPDATE SET key = EXCLUDED.key, status = 'claimed', "
            "owner_run_id = EXCLUDED.owner_run_id, lease_token = EXCLUDED.lease_token, "
            "lease_until = EXCLUDED.lease_until, result = NULL, result_ref = NULL, error = NULL, "
            "attempts = c.attempts + 1, updated_at = EXCLUDED.updated_at "
            "WHERE c.key = EXCLUDED.key AND c.status = 'claimed' "
            "AND (c.lease_until IS NULL OR c.lease_until <= EXCLUDED.updated_at) AND c.result IS NULL "
            "RETURNING c.*) "
            "SELECT true, taken.*, (SELECT ms FROM clock) FROM taken "
            "UNION ALL SELECT false, seen.*, (SELECT ms FROM clock) FROM seen "
            "WHERE NOT EXISTS (SELECT 1 FROM taken)"
        )

    # ---- quarantine ----

    @cached_property
    def quarantine_copy(self) -> str:
        return self._sql(
            "INSERT INTO {quarantine} SELECT {cols}, {now} FROM {table} "
            "WHERE namespace = %s AND storage_key = %s"
        )

    @cached_property
    def quarantine_name(self) -> str:
        return f"{self.target.display} {self.target.schema}.{self.target.table}_quarantine"

    def location(self, namespace: str, segment: str) -> str:
        return (
            f"{self.target.display} {self.target.schema}.{self.target.table}"
            f"(namespace={namespace!r}, storage_key={segment!r})"
        )


def row_to_record(row: Sequence[Any], location: str) -> Checkpoint:
    namespace, _segment, key, status, owner, token, until, result, ref, error = row[:10]
    attempts, created, updated = row[10:13]
    try:
        parsed_status = Status(status)
    except ValueError:
        raise CorruptRecordError(location, f"unknown status {status!r}") from None
    return Checkpoint(
        namespace=namespace, key=key, status=parsed_status, owner_run_id=owner, lease_token=token,
        lease_until=until, result=decode_result(result, location), result_ref=ref, error=error,
        attempts=attempts, created_at=created, updated_at=updated, result_json=result,
    )


def check_storable(record: Checkpoint) -> None:
    """PostgreSQL text cannot hold NUL characters: refuse such a record before anything is written."""
    for name in ("key", "owner_run_id", "result_ref", "error"):
        value = getattr(record, name)
        if isinstance(value, str) and "\x00" in value:
            raise InvalidArgumentError(
                f"{name} {value!r} contains a NUL character, which PostgreSQL text cannot store"
            )


def check_claim_args(key: str, owner_run_id: str | None) -> None:
    for name, value in (("key", key), ("owner_run_id", owner_run_id)):
        if value is not None and "\x00" in value:
            raise InvalidArgumentError(
                f"{name} {value!r} contains a NUL character, which PostgreSQL text cannot store"
            )


@dataclass
class Writes:
    """What one transaction decided: the callers' answers, then the rows to insert, update and delete."""

    values: list[Any]
    inserts: list[tuple[Any, ...]]
    updates: list[tuple[Any, ...]]
    deletes: list[tuple[str, str]]


def decide(
    statements: Statements, namespace: str, items: Sequence[tuple[str, Transition[Any]]],
    locked_rows: Sequence[Sequence[Any]], now: int,
) -> Writes:
    """Run the transitions, in order, against the locked rows; the last state of each segment is written.

    A transition that raises (a lost lease, a key conflict, bad input) aborts the whole unit.
    """
    stored: dict[str, Checkpoint | None] = {
        row[1]: row_to_record(row, statements.location(namespace, row[1])) for row in locked_rows
    }
    existed = set(stored)
    current = dict(stored)
    values: list[Any] = []
    for segment, transition in items:
        change: Change[Any] = transition(current.get(segment), now)
        if change.put is not None:
            check_storable(change.put)
            current[segment] = change.put
        elif change.delete:
            current[segment] = None
        values.append(change.value)
    writes = Writes(values, [], [], [])
    for segment in sorted(current):  # key order again: inserts into the same keys never wait in a cycle
        record = current[segment]
        if record is stored.get(segment):
            continue
        if record is None:
            if segment in existed:
                writes.deletes.append((namespace, segment))
        elif segment in existed:
            writes.updates.append(_update_params(segment, record))
        else:
            writes.inserts.append(_insert_params(segment, record))
    return writes


def _insert_params(segment: str, record: Checkpoint) -> tuple[Any, ...]:
    return (
        record.namespace, segment, record.key, record.status.value, record.owner_run_id, record.lease_token,
        record.lease_until, result_json_of(record), record.result_ref, record.error, record.attempts,
        record.created_at, record.updated_at,
    )


def _update_params(segment: str, record: Checkpoint) -> tuple[Any, ...]:
    return (
        record.key, record.status.value, record.owner_run_id, record.lease_token, record.lease_until,
        result_json_of(record), record.result_ref, record.error, record.attempts, record.created_at,
        record.updated_at, record.namespace, segment,
    )


def claim_params(
    namespace: str, segment: str, key: str, owner_run_id: str | None, lease_ms: int, token: str,
    now: int | None,
) -> dict[str, Any]:
    """`now` None means the server's clock; only a clock installed by a test passes a number."""
    return {
        "ns": namespace, "sk": segment, "key": key, "owner": owner_run_id, "lease": lease_ms, "token": token,
        "now": now,
    }


def claim_answer(
    statements: Statements, namespace: str, key: str, owner_run_id: str | None, lease_ms: int,
    rows: Sequence[Sequence[Any]],
) -> ClaimResult | None:
    """The outcome of the one-statement claim, or None when the statement could not decide: it saw a
    record that changed under it (a concurrent claim committed between its snapshot and its insert),
    or one it leaves to the locking path. The caller then runs the claim as a locked transaction."""
    if not rows:
        return None
    taken, *record_row, now = rows[0]
    record = row_to_record(record_row, statements.location(namespace, record_row[1]))
    if taken:
        return ClaimResult("claimed", record, record.lease_token)
    transition = machine.for_key(namespace, key, machine.claim(namespace, key, owner_run_id, lease_ms))
    change = transition(record, now)
    if change.writes:
        return None  # the rules say claimable, yet the statement could not take it: it saw an old version
    result: ClaimResult = change.value
    return result
