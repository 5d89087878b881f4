"""Fixtures for the interop tests: a fresh store per test, opened by both languages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from interop_node import require_node
from mooncat_checkpoint import CheckpointClient

BACKENDS = ["file", "sqlite"]


@pytest.fixture(scope="session")
def node_ready() -> Path:
    return require_node()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_url(node_ready: Path, backend: str, tmp_path: Path) -> str:
    if backend == "file":
        return f"file://{tmp_path / 'store'}"
    return f"sqlite://{tmp_path / 'store.db'}"


@pytest.fixture
def py(store_url: str) -> Iterator[CheckpointClient]:
    with CheckpointClient(store_url) as client:
        yield client

