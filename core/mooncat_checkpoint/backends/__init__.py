"""Backends and the factory that opens one from a store location."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import StoreLocation
from ..errors import BackendUnavailableError, ConfigError
from .base import DURABILITY_MODES, AsyncBackend, Backend, ThreadedAsyncBackend
from .files import FileBackend
from .memory import MemoryBackend
from .sqlite import SqliteBackend

if TYPE_CHECKING:
    pass

__all__ = [
    "AsyncBackend", "Backend", "FileBackend", "MemoryBackend", "SqliteBackend", "ThreadedAsyncBackend",
    "open_async_backend", "open_backend",
]


def _check_durability(durability: str) -> None:
    if durability not in DURABILITY_MODES:
        raise ConfigError(f"durability must be one of {DURABILITY_MODES}, got {durability!r}")


def open_backend(location: StoreLocation, durability: str = "full") -> Backend:
    _check_durability(durability)
    if location.scheme == "memory":
        return MemoryBackend()
    if location.scheme == "file":
        return FileBackend(location.path, durability)
    if location.scheme == "sqlite":
        return SqliteBackend(location.path, durability)
    if location.scheme == "postgresql":
        postgres = _postgres()
        return postgres.PostgresBackend(location.url, durability)  # type: ignore[no-any-return]
    raise ConfigError(f"no backend for {location.url!r}")


def open_async_backend(location: StoreLocation, durability: str = "full", sync: Backend | None = None) -> AsyncBackend:
    _check_durability(durability)
    if location.scheme == "postgresql":
        return _postgres().AsyncPostgresBackend(location.url, durability)  # type: ignore[no-any-return]
    return ThreadedAsyncBackend(sync if sync is not None else open_backend(location, durability))


def _postgres():  # type: ignore[no-untyped-def]
    try:
        from . import postgres
    except ImportError as exc:
        raise BackendUnavailableError(
            "the PostgreSQL backend needs psycopg: pip install 'mooncat-checkpoint[postgres]' "
            f"({exc})"
        ) from None
    return postgres
