"""Hermetic Prefect for these tests: PREFECT_HOME in a throwaway folder, and one Prefect test server
(``prefect_test_harness``) for the whole session, since starting one costs many seconds.

Prefect reads its settings on first import, so the environment is set at import time of this conftest.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

_home = Path(tempfile.mkdtemp(prefix="mooncat-prefect-"))
atexit.register(shutil.rmtree, _home, ignore_errors=True)
os.environ.update(
    {
        "PREFECT_HOME": str(_home),
        "PREFECT_LOCAL_STORAGE_PATH": str(_home / "storage"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "240",
        # No checkpoint store may leak in from the machine running the tests.
        "MOONCAT_CHECKPOINT_URL": f"sqlite://{_home / 'default-store.db'}",
    }
)

import pytest  # noqa: E402
from mooncat_checkpoint import CheckpointClient  # noqa: E402
from prefect.testing.utilities import prefect_test_harness  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def prefect_server() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=240):
        yield


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    # SQLite: claims are atomic across processes, which the race tests need.
    return f"sqlite://{tmp_path / 'checkpoints.db'}"


@pytest.fixture
def client(store_url: str) -> Iterator[CheckpointClient]:
    with CheckpointClient(store_url) as cp:
        yield cp
