"""The PostgreSQL server the tests use, and fresh schemas on it that are dropped when the run ends.

The server is MOONCAT_TEST_POSTGRES_URL, by default the local one on 127.0.0.1:5432 (database `test`).
Where it does not answer, the tests that need it skip with the reason (and under CI a skip fails).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import itertools
import os
import secrets

import pytest

SERVER_URL = os.environ.get("MOONCAT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
SCHEMA_PREFIX = "mooncat_test_"
_counter = itertools.count()
_created: list[str] = []
_creator_pid = os.getpid()


@functools.cache
def server_problem() -> str | None:
    """Why the PostgreSQL tests cannot run here, or None when they can."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install -e '.[postgres]')"
    try:
        with psycopg.connect(SERVER_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"no PostgreSQL server answers at {SERVER_URL}: {exc}".strip()
    return None


def require_server() -> None:
    problem = server_problem()
    if problem is not None:
        pytest.skip(problem)


def fresh_schema() -> str:
    """A schema name no other test or run uses; it is dropped when this test process exits."""
    require_server()
    _drop_leftovers()
    name = f"{SCHEMA_PREFIX}{os.getpid()}_{next(_counter)}_{secrets.token_hex(3)}"
    _created.append(name)
    return name


def store_url(schema: str, **options: str) -> str:
    extra = "".join(f"&{name}={value}" for name, value in options.items())
    return f"{SERVER_URL}?schema={schema}{extra}"


def fresh_store_url() -> str:
    return store_url(fresh_schema())


def drop_schema(name: str) -> None:
    import psycopg

    with psycopg.connect(SERVER_URL, autocommit=True, connect_timeout=3) as conn:
        conn.execute("SET lock_timeout = '10s'")
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@functools.cache
def _drop_leftovers() -> None:
    """Schemas of earlier runs whose process is gone (killed before it could drop them)."""
    import psycopg

    with psycopg.connect(SERVER_URL, autocommit=True, connect_timeout=3) as conn:
        names = [row[0] for row in conn.execute(
            "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)", (SCHEMA_PREFIX,)
        )]
    for name in names:
        pid = name[len(SCHEMA_PREFIX):].split("_", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            drop_schema(name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@atexit.register
def _drop_created() -> None:
    if os.getpid() != _creator_pid or not _created:
        return  # a forked worker must not drop the schemas its parent still uses
    for name in _created:
        # A server gone at exit leaves a schema behind, dropped by the next run's leftover sweep.
        with contextlib.suppress(Exception):
            drop_schema(name)
