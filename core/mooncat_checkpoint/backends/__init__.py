"""Backends and the factory that opens one from a store location."""

from __future__ import annotations

from types import ModuleType

from ..config import StoreLocation
from ..errors import BackendUnavailableError, ConfigError
from .base import DURABILITY_MODES, AsyncBackend, Backend, ThreadedAsyncBackend
from .files import FileBackend
from .memory import MemoryBackend, shared_memory_backend
from .sqlite import SqliteBackend

__all__ = [
    "AsyncBackend", "Backend", "FileBackend", "MemoryBackend", "SqliteBackend", "ThreadedAsyncBackend",
    "open_async_backend", "open_backend",
]


def _check_durability(durability: str) -> None:
    if durability not in DURABILITY_MODES:
        raise ConfigError(f"durability must be one of {DURABILITY_MODES}, got {durability!r}")


def open_backend(location: StoreLocation, durability: str = "full", memory_id: str | None = None) -> Backend:
    """`memory_id` names an in-process memory store that copies of one client share; without it, a new one."""
    _check_durability(durability)
    if location.scheme == "memory":
        return MemoryBackend() if memory_id is None else shared_memory_backend(memory_id)
    if location.scheme == "file":
        return FileBackend(location.path, durability)
    if location.scheme == "sqlite":
        return SqliteBackend(location.path, durability)
    if location.scheme == "postgresql":
        backend: Backend = _postgres().PostgresBackend(location.url, durability)
        return backend
    raise ConfigError(f"no backend for {location.url!r}")


def open_async_backend(
    location: StoreLocation, durability: str = "full", sync: Backend | None = None, memory_id: str | None = None
) -> AsyncBackend:
    _check_durability(durability)
    if location.scheme == "postgresql":
        async_backend: AsyncBackend = _postgres().AsyncPostgresBackend(location.url, durability)
        return async_backend
    return ThreadedAsyncBackend(sync if sync is not None else open_backend(location, durability, memory_id))


def _postgres() -> ModuleType:
    try:
        from . import postgres
    except ImportError as exc:
        raise BackendUnavailableError(
            "the PostgreSQL backend needs psycopg: pip install 'mooncat-checkpoint[postgres]' "
            f"({exc})"
        ) from None
    return postgres
