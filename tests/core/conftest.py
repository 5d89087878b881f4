"""Fixtures for the core suite: one store per backend (see `core_support.STORE_URLS`), and a fake clock."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from core_support import SHARED_STORES, STORE_URLS, FakeClock, install_clock
from mooncat_checkpoint import CheckpointClient


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests name their store; a URL in the environment of the machine must not leak in."""
    monkeypatch.delenv("MOONCAT_CHECKPOINT_URL", raising=False)


@pytest.fixture(params=list(STORE_URLS))
def backend_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def store_url(backend_name: str, tmp_path: Path) -> str:
    return STORE_URLS[backend_name](tmp_path)


@pytest.fixture(params=list(SHARED_STORES))
def shared_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return STORE_URLS[request.param](tmp_path)


@pytest.fixture
def client(store_url: str) -> Iterator[CheckpointClient]:
    with CheckpointClient(store_url) as cp:
        yield cp


@pytest.fixture
def clock(client: CheckpointClient) -> FakeClock:
    fake = FakeClock()
    install_clock(client, fake)
    return fake


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return Path(os.getcwd())
