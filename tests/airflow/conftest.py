"""Hermetic Airflow for these tests: a throwaway AIRFLOW_HOME, a SQLite metadata database migrated once
per session, and DAG bundles pointing at the test DAGs and the example DAGs.

Airflow reads its configuration when first imported, so everything here happens at import time of
this conftest, before any test module (or the provider) imports airflow.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TEST_DAGS = HERE / "dags"
EXAMPLE_DAGS = REPO / "dags"

_home = Path(tempfile.mkdtemp(prefix="mooncat-airflow-"))
atexit.register(shutil.rmtree, _home, ignore_errors=True)

PLUGINS_DIR = _home / "plugins"
PLUGINS_DIR.mkdir()
STORE_URL = f"sqlite://{_home / 'checkpoints.db'}"
UI_PASSWORDS = {"admin": "admin-password", "viewer": "viewer-password"}
(_home / "passwords.json").write_text(json.dumps(UI_PASSWORDS), encoding="utf-8")

_bundles = [
    {
        "name": "mooncat-tests",
        "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
        "kwargs": {"path": str(TEST_DAGS), "refresh_interval": 0},
    },
    {
        "name": "mooncat-examples",
        "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
        "kwargs": {"path": str(EXAMPLE_DAGS), "refresh_interval": 0},
    },
]

os.environ.update(
    {
        "AIRFLOW_HOME": str(_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(TEST_DAGS),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS_DIR),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_home / 'airflow.db'}",
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(_bundles),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,viewer:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(_home / "passwords.json"),
        "AIRFLOW__API_AUTH__JWT_SECRET": "mooncat-tests-only-secret-" + "0123456789abcdef" * 4,
        "AIRFLOW__API__BASE_URL": "http://localhost:8080",
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
        # The store every test DAG uses unless it names another connection.
        "AIRFLOW_CONN_MOONCAT_DEFAULT": json.dumps({"conn_type": "mooncat", "extra": {"url": STORE_URL}}),
        # The same store with a default namespace, for tasks that name none.
        "AIRFLOW_CONN_MOONCAT_WITH_NAMESPACE": json.dumps(
            {"conn_type": "mooncat", "extra": {"url": STORE_URL, "namespace": "default-ns"}}
        ),
    }
)
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
# Tests must not pick up a store from the machine they run on.
os.environ.pop("MOONCAT_CHECKPOINT_URL", None)

# The DAG files import nothing from the tests, but the tests import the DAG files.
for path in (str(TEST_DAGS), str(EXAMPLE_DAGS), str(HERE), str(REPO / "tests")):
    if path not in sys.path:
        sys.path.insert(0, path)


def _plugin_entry_point_installed() -> bool:
    from importlib.metadata import entry_points

    return any(ep.value.startswith("mooncat_airflow.") for ep in entry_points(group="airflow.plugins"))


# The UI page reaches Airflow through the package's `airflow.plugins` entry point, as users get it.
assert _plugin_entry_point_installed(), "the airflow.plugins entry point of mooncat-checkpoint is not installed"

import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def airflow_db() -> Path:
    """Create the metadata database once for the whole session."""
    from airflow.utils import db

    db.initdb()
    return _home


@pytest.fixture(scope="session")
def store_url() -> str:
    return STORE_URL


@pytest.fixture
def client(store_url: str):  # type: ignore[no-untyped-def]
    from mooncat_checkpoint import CheckpointClient

    with CheckpointClient(store_url) as cp:
        yield cp


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "calls.txt"


@pytest.fixture
def namespace(request: pytest.FixtureRequest) -> str:
    """A namespace of its own for every test, so tests sharing the store never see each other."""
    import re

    return "t-" + re.sub(r"[^A-Za-z0-9_-]", "-", request.node.name)[:60]
