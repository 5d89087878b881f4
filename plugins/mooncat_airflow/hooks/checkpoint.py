"""Connection type ``mooncat``: where the checkpoint store is and which namespace tasks use by default."""

from __future__ import annotations

import asyncio
import contextlib
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


def _extra_value(extra: dict[str, Any], name: str) -> Any:
    # Forms of older Airflow versions stored custom fields as ``extra__<conn_type>__<name>``;
    # accept both spellings so a connection exported from either works.
    value = extra.get(name)
    if value in (None, ""):
        value = extra.get(f"extra__mooncat__{name}")
    return None if value in (None, "") else value


class CheckpointHook(BaseHook):
    """
    Give tasks a checkpoint client for the store named by a ``mooncat`` connection.

    The connection's ``extra`` holds ``url`` (the store URL), ``namespace`` (the default namespace) and
    optionally ``durability`` (``full``, the default, or ``fast``: fewer disk syncs per write),
    e.g. ``AIRFLOW_CONN_MOONCAT_DEFAULT='{"conn_type": "mooncat", "extra": {"url": "sqlite:///x.db"}}'``.
    A URL in ``host`` is accepted too. When the connection does not exist, or names no URL, the
    library's own resolution applies (``MOONCAT_CHECKPOINT_URL``, the nearest
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
        extra = conn.extra_dejson or {}
        url = _extra_value(extra, "url")
        if url is None and conn.host and "://" in conn.host:
            url = conn.host
        return url, _extra_value(extra, "namespace"), str(_extra_value(extra, "durability") or "full")

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
        resolved = namespace or self.default_namespace
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
        """Open the store and read one key; report the URL in use and where it came from."""
        try:
            client = self.get_conn()
            client.get(_PROBE_NAMESPACE, _PROBE_KEY)
            return True, f"Connected to {client.url} (from {client.url_source})"
        except Exception as exc:  # reported to the UI rather than raised
            return False, f"{type(exc).__name__}: {exc}"
        finally:
            self.close()
