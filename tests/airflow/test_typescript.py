"""Keys finished by the TypeScript package (mooncat-checkpoint on npm), seen from Airflow."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import mc_basic
import mc_sensor
import pytest
from interop_node import require_node, ts_run
from support import calls, run_dag, xcom

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def node() -> Path:
    return require_node()


def test_key_finished_by_the_ts_package_is_skipped(node: Path, namespace: str, marker: Path, store_url: str) -> None:
    ts_run(
        store_url,
        [
            {"op": "claim", "ns": namespace, "key": "basic/one", "ownerRunId": "ts-job"},
            {
                "op": "done",
                "ns": namespace,
                "key": "basic/one",
                "leaseToken": {"from": 0},
                "result": {"label": "from-ts", "value": 99},
            },
        ],
    )
    run = run_dag(mc_basic.mc_basic, {"ns": namespace, "marker": str(marker)})
    assert str(run.state) == "success"
    assert xcom(run, "work") == {"label": "from-ts", "value": 99}
    assert calls(marker) == []


def test_sensor_returns_a_result_the_ts_package_finishes_while_it_waits(
    node: Path, namespace: str, store_url: str, client: Any
) -> None:
    import time

    errors: list[BaseException] = []

    def ts_job() -> None:
        try:
            # Claim, work for a while (the sensor is poking meanwhile), then finish.
            until = int(time.time() * 1000) + 1500
            ts_run(
                store_url,
                [
                    {"op": "claim", "ns": namespace, "key": "ts/export", "ownerRunId": "ts-job"},
                    {"op": "waitPast", "ms": until},
                    {
                        "op": "done",
                        "ns": namespace,
                        "key": "ts/export",
                        "leaseToken": {"from": 0},
                        "result": {"rows": 1234, "file": "export.csv"},
                    },
                ],
            )
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    job = threading.Thread(target=ts_job)
    job.start()
    try:
        run = run_dag(mc_sensor.mc_sensor_deferrable, {"ns": namespace, "key": "ts/export"})
    finally:
        job.join()
    assert not errors, errors
    assert str(run.state) == "success"
    assert xcom(run, "wait") == {"rows": 1234, "file": "export.csv"}
    assert client.get(namespace, "ts/export").owner_run_id == "ts-job"
