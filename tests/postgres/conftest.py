"""Fixtures for the PostgreSQL tests: a fresh schema per test on the test server, and the server's clock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from mooncat_checkpoint import CheckpointClient
from pg_server import SERVER_URL, fresh_schema, require_server, store_url

pytestmark = pytest.mark.postgres


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MOONCAT_CHECKPOINT_URL", raising=False)


@pytest.fixture
def schema() -> str:
    return fresh_schema()


@pytest.fixture
def pg_url(schema: str) -> str:
    # Named after the schema, so a test that ends connections ends only its own store's.
    return store_url(schema, application_name=schema)


@pytest.fixture
def client(pg_url: str) -> Iterator[CheckpointClient]:
    with CheckpointClient(pg_url) as cp:
        yield cp


@pytest.fixture
def admin() -> Iterator[object]:
    """A plain autocommit connection for looking at and poking the server directly."""
    require_server()
    import psycopg

    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        yield conn
