"""Test sessions. Prefect 3 and Airflow 3 pin incompatible FastAPI versions, so each adapter gets its own
virtual environment; uv makes creating them cheap. `scripts/test` installs nox and uv and runs them all."""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv"
nox.options.sessions = ["lint", "core", "prefect", "airflow"]
nox.options.error_on_missing_interpreters = True

ROOT = Path(__file__).parent
TEST_TOOLS = ["pytest>=8", "hypothesis>=6.100"]


def _env() -> dict[str, str]:
    # One npm install of the TypeScript peer serves every session and every later run: better-sqlite3
    # compiles from source here, which takes minutes, so the install lives in the user's cache folder.
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    default = cache / "mooncat-checkpoint" / "interop-0.5.1"
    return {"MOONCAT_INTEROP_DIR": os.environ.get("MOONCAT_INTEROP_DIR", str(default))}


@nox.session
def lint(session: nox.Session) -> None:
    """ruff and strict mypy over the core library."""
    session.install("-e", ".[postgres]", "ruff>=0.6", "mypy>=1.11")
    session.run("ruff", "check", ".")
    session.run("mypy")


@nox.session
def core(session: nox.Session) -> None:
    """The core library on every backend, the CLI, interop with the TypeScript package, PostgreSQL."""
    session.install("-e", ".[postgres]", *TEST_TOOLS)
    paths = [p for p in ("tests/core", "tests/interop", "tests/postgres") if (ROOT / p).is_dir()]
    session.run("pytest", *paths, *session.posargs, env=_env())


@nox.session
def prefect(session: nox.Session) -> None:
    """The Prefect adapter and the flows, against one Prefect test server for the session."""
    session.install("-e", ".[prefect]", *TEST_TOOLS)
    session.run("pytest", "tests/prefect", *session.posargs, env=_env())


@nox.session
def airflow(session: nox.Session) -> None:
    """The Airflow provider and the DAGs, on one migrated SQLite metadata database for the session."""
    session.install("-e", ".[airflow]", *TEST_TOOLS)
    session.run("pytest", "tests/airflow", *session.posargs, env=_env())
