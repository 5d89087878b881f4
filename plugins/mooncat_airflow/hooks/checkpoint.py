"""Connection type ``mooncat``: where the checkpoint store is and which namespace tasks use by default."""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import json
import os
import threading
from typing import TYPE_CHECKING, Any, Literal

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

if TYPE_CHECKING:
    from airflow.sdk import Connection
    from mooncat_checkpoint import AsyncCheckpointClient, CheckpointClient

_SHARED_CLIENTS: dict[tuple[str, str, str], CheckpointClient] = {}
_SHARED_LOCK = threading.Lock()

# Probe used by test_connection: a read of a key nobody writes, so testing never changes the store.
_PROBE_NAMESPACE = "mooncat-connection-test"
_PROBE_KEY = "probe"


_EXTRA_FIELDS = ("url", "namespace", "durability")
# Forms of older Airflow versions stored custom fields as ``extra__<conn_type>__<name>``; both spellings
# are accepted so a connection exported from either works.
_LEGACY_PREFIX = "extra__mooncat__"
# Generic fields the form hides; a value in one of them would otherwise be silently ignored.
_UNUSED_FIELDS = ("login", "password", "schema", "port")


class InvalidConnectionError(ValueError):
    """A ``mooncat`` connection that cannot be used as written; raised before the store is touched."""


def _read_extra(conn: Connection, where: str) -> dict[str, Any]:
    raw = conn.extra
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    # Not extra_dejson: it logs bad JSON and returns {}, which would quietly drop every setting.
    try:
        extra = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError as exc:
        raise InvalidConnectionError(f"{where}: extra is not valid JSON ({exc})") from None
    if not isinstance(extra, dict):
        raise InvalidConnectionError(f"{where}: extra must be a JSON object, got {type(extra).__name__}")
    return extra


def _extra_fields(extra: dict[str, Any], where: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    unknown: list[str] = []
    for name, value in extra.items():
        field = name[len(_LEGACY_PREFIX) :] if name.startswith(_LEGACY_PREFIX) else name
        if field not in _EXTRA_FIELDS:
            unknown.append(name)
            continue
        if value is None:  # a blank form field
            continue
        if field in values and values[field] != value:
            raise InvalidConnectionError(
                f"{where}: extra sets {field!r} twice with different values ({values[field]!r} and {value!r})"
            )
        values[field] = value
    if unknown:
        hints = []
        for name in sorted(unknown):
            close = difflib.get_close_matches(name.removeprefix(_LEGACY_PREFIX), _EXTRA_FIELDS, n=1)
            hints.append(f"{name!r} (did you mean {close[0]!r}?)" if close else repr(name))
        raise InvalidConnectionError(
            f"{where}: unknown key(s) in extra: {', '.join(hints)}; the known keys are "
            f"{', '.join(map(repr, _EXTRA_FIELDS))}"
        )
    return values


def _check_url(url: Any, where: str, field: str) -> str:
    from mooncat_checkpoint import CheckpointError, resolve_url
    from mooncat_checkpoint.config import parse_url

    try:
        # The library's own checks and messages: resolve_url refuses an empty or non-string URL,
        # parse_url an unsupported scheme or a malformed path.
        resolved = resolve_url(url)
        parse_url(resolved.url, resolved.base_dir)
    except CheckpointError as exc:
        raise InvalidConnectionError(f"{where}: {field}: {exc}") from None
    return resolved.url


def _check_namespace(namespace: Any, where: str) -> str:
    from mooncat_checkpoint import CheckpointError
    from mooncat_checkpoint.keys import check_namespace

    try:
        return check_namespace(namespace)
    except CheckpointError as exc:
        raise InvalidConnectionError(f"{where}: extra 'namespace': {exc}") from None


def _check_durability(value: Any, where: str) -> str:
    if value not in ("full", "fast"):
        raise InvalidConnectionError(f"{where}: extra 'durability' must be 'full' or 'fast', got {value!r}")
    return str(value)


def _validated_settings(conn: Connection) -> tuple[str | None, str | None, str]:
    where = f"Connection {conn.conn_id!r}"
    unused = [name for name in _UNUSED_FIELDS if getattr(conn, name, None) not in (None, "")]
    if unused:
        raise InvalidConnectionError(
            f"{where}: field(s) {', '.join(unused)} are not used by a mooncat connection; put everything "
            "the store needs (credentials included) into the store URL in extra 'url'"
        )
    values = _extra_fields(_read_extra(conn, where), where)
    url = _check_url(values["url"], where, "extra 'url'") if "url" in values else None
    if conn.host not in (None, ""):
        host_url = _check_url(conn.host, where, "host")
        if url is not None and url != host_url:
            raise InvalidConnectionError(f"{where}: host {conn.host!r} and extra 'url' {url!r} name different stores")
        url = host_url
    namespace = _check_namespace(values["namespace"], where) if "namespace" in values else None
    durability = _check_durability(values["durability"], where) if "durability" in values else "full"
    return url, namespace, durability


class CheckpointHook(BaseHook):
    """
    Give tasks a checkpoint client for the store named by a ``mooncat`` connection.

    The connection's ``extra`` holds ``url`` (the store URL), ``namespace`` (the default namespace) and
    optionally ``durability`` (``full``, the default, or ``fast``: fewer disk syncs per write),
    e.g. ``AIRFLOW_CONN_MOONCAT_DEFAULT='{"conn_type": "mooncat", "extra": {"url": "sqlite:///x.db"}}'``.
    A URL in ``host`` is accepted too. Every field is checked when the connection is read, with the
    library's own rules: a bad URL, namespace or durability, an unknown key in ``extra`` (a typo such as
    ``namepsace``) or a value in a field the connection does not use raises
    :class:`InvalidConnectionError` (``test_connection`` reports it). When the connection does not
    exist, or names no URL, the library's own resolution applies (``MOONCAT_CHECKPOINT_URL``, the nearest
    ``mooncat-checkpoint.config.json``, then ``file://./.mooncat/checkpoints``), so a DAG works the
    same way a plain script does.

    :param mooncat_conn_id: the connection to read; missing is allowed.
    """

    conn_name_attr = "mooncat_conn_id"
    default_conn_name = "mooncat_default"
    conn_type = "mooncat"
    hook_name = "Mooncat Checkpoint"

    def __init__(self, mooncat_conn_id: str | None = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mooncat_conn_id = mooncat_conn_id
        self._settings: tuple[str | None, str | None, str] | None = None
        self._client: CheckpointClient | None = None

    # -- connection ----------------------------------------------------------------------------------

    @staticmethod
    def _settings_from(conn: Connection | None) -> tuple[str | None, str | None, str]:
        if conn is None:
            return None, None, "full"
        # Every field is checked up front, so a typo fails the Test button and the task that uses the
        # connection, instead of silently falling back to a default.
        return _validated_settings(conn)

    def _connection_settings(self) -> tuple[str | None, str | None, str]:
        if self._settings is None:
            conn = None
            if self.mooncat_conn_id:
                try:
                    conn = self.get_connection(self.mooncat_conn_id)
                except AirflowNotFoundException:
                    # No connection is a supported setup: fall back to the library's resolution.
                    self.log.debug("Connection %s not defined; using default resolution", self.mooncat_conn_id)
            self._settings = self._settings_from(conn)
        return self._settings

    async def _aconnection_settings(self) -> tuple[str | None, str | None, str]:
        if self._settings is None:
            conn = None
            if self.mooncat_conn_id:
                with contextlib.suppress(AirflowNotFoundException):
                    conn = await self.aget_connection(self.mooncat_conn_id)
            self._settings = self._settings_from(conn)
        return self._settings

    @property
    def url(self) -> str | None:
        """The URL the connection names, or ``None`` when the library resolves it."""
        return self._connection_settings()[0]

    @property
    def default_namespace(self) -> str | None:
        """The connection's default namespace, if it has one."""
        return self._connection_settings()[1]

    @property
    def durability(self) -> str:
        """``full`` (the library's default: every write synced to disk) or ``fast``."""
        return self._connection_settings()[2]

    def resolve_namespace(self, namespace: str | None) -> str:
        """Return ``namespace``, or the connection's default; fail clearly when neither is set."""
        # Read (and so check) the connection even when the task names its namespace: a broken connection
        # must fail the task that uses it, not only the ones that rely on its default.
        default = self.default_namespace
        resolved = namespace or default
        if not resolved:
            raise ValueError(
                f"No checkpoint namespace: pass namespace=... or set 'namespace' in the extra of "
                f"connection {self.mooncat_conn_id!r}"
            )
        return resolved

    # -- clients -------------------------------------------------------------------------------------

    def get_conn(self) -> CheckpointClient:
        """Return a (cached) synchronous client for the store."""
        if self._client is None:
            from mooncat_checkpoint import CheckpointClient

            self._client = CheckpointClient(self.url, durability=self._durability_choice(self.durability))
        return self._client

    def get_shared_conn(self) -> CheckpointClient:
        """
        Return the client this process shares for the same store; never close it.

        Tasks use this one: opening and closing a store for every try costs more than the claim itself
        (closing SQLite's last connection checkpoints its write-ahead log), and the library's client is
        built to be shared by threads and to reopen itself after a fork.
        """
        from mooncat_checkpoint import CheckpointClient, resolve_url
        from mooncat_checkpoint.config import parse_url

        durability = self._durability_choice(self.durability)
        resolved = resolve_url(self.url)
        # Absolute: a relative path from a config file is relative to that file's folder, not ours.
        url = parse_url(resolved.url, resolved.base_dir).absolute_url
        # A relative path of the connection depends on the working directory, so it is part of the identity.
        identity = (url, os.getcwd(), durability)
        with _SHARED_LOCK:
            client = _SHARED_CLIENTS.get(identity)
            if client is None:
                client = _SHARED_CLIENTS[identity] = CheckpointClient(url, durability=durability)
        return client

    async def aget_conn(self) -> AsyncCheckpointClient:
        """Return a new asynchronous client; the caller closes it (``async with``)."""
        from mooncat_checkpoint import AsyncCheckpointClient

        url, _, durability = await self._aconnection_settings()
        # Without a URL the library looks for a config file up the directory tree: file system work
        # that must not run on the triggerer's event loop.
        return await asyncio.to_thread(AsyncCheckpointClient, url, durability=self._durability_choice(durability))

    @staticmethod
    def _durability_choice(value: str) -> Literal["full", "fast"]:
        if value not in ("full", "fast"):
            raise ValueError(f"durability in the connection extra must be 'full' or 'fast', not {value!r}")
        return "full" if value == "full" else "fast"

    def close(self) -> None:
        """Close the cached client, if any."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def test_connection(self) -> tuple[bool, str]:
        """Check every field, open the store and read one key in the default namespace; report what is used."""
        try:
            namespace = self.default_namespace
            client = self.get_conn()
            # A read in the connection's own namespace lets the store apply its limits too (the file
            # store caps a namespace at a folder name's length); the key is one nobody writes.
            client.get(namespace or _PROBE_NAMESPACE, _PROBE_KEY)
            where = f"namespace {namespace!r}" if namespace else "no default namespace"
            return True, f"Connected to {client.url} (from {client.url_source}); {where}"
        except Exception as exc:  # reported to the UI rather than raised
            return False, f"{type(exc).__name__}: {exc}"
        finally:
            self.close()
