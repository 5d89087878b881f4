"""Helpers the core tests share: store URL factories, a hand-moved clock, a view of a file store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mooncat_checkpoint import CheckpointClient


def _memory_url(directory: Path) -> str:
    return "memory://"


def _file_url(directory: Path) -> str:
    return f"file://{directory / 'checkpoints'}"


def _sqlite_url(directory: Path) -> str:
    return f"sqlite://{directory / 'checkpoints.db'}"


def _postgres_url(directory: Path) -> str:
    # A fresh schema on the test server (skips where none answers); see tests/pg_server.py.
    from pg_server import fresh_store_url

    return fresh_store_url()


# Backend name -> factory of a fresh store URL in a directory. Every test taking `store_url` or
# `client` runs once per entry, so another backend joins the whole suite by adding an entry here.
STORE_URLS: dict[str, Callable[[Path], str]] = {
    "memory": _memory_url,
    "file": _file_url,
    "sqlite": _sqlite_url,
    "postgres": _postgres_url,
}
# The backends that other processes can share: the cross-process tests run only on these.
SHARED_STORES = ("file", "sqlite", "postgres")


class FakeClock:
    """Epoch milliseconds that move only when a test says so; installed as a backend's `now_ms`."""

    def __init__(self, start: int = 1_700_000_000_000) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


def install_clock(client: CheckpointClient, clock: FakeClock) -> None:
    # An instance attribute shadows the backend's method: every transition reads time from it.
    client.backend.now_ms = clock  # type: ignore[method-assign]


def store_files(root: Path) -> list[str]:
    """Every file under a file store, relative to it, sorted: what `list`, `gc` or TypeScript could see."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
