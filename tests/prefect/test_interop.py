"""Keys finished by the TypeScript package `mooncat-checkpoint@0.5.1` are skipped by Prefect tasks, and the
other way round: TS sees a key recorded by a Prefect task as done."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from interop_node import require_node, ts_run
from mooncat_checkpoint import CheckpointClient
from mooncat_prefect import checkpoint_task
from prefect import flow
from prefect.states import State

pytestmark = pytest.mark.interop

NS = "prefect-interop"


@pytest.fixture(params=["file", "sqlite"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    require_node()
    if request.param == "file":
        return f"file://{tmp_path / 'store'}"
    return f"sqlite://{tmp_path / 'store.db'}"


def test_key_finished_by_typescript_is_skipped(shared_url: str) -> None:
    ts_run(shared_url, [
        {"op": "claim", "ns": NS, "key": "report/2024-06-01", "ownerRunId": "ts-nightly"},
        {"op": "done", "ns": NS, "key": "report/2024-06-01", "leaseToken": {"from": 0},
         "result": {"pages": 3, "title": "juin"}},
    ])
    calls: list[str] = []

    @checkpoint_task(namespace=NS, key="report/{day}", url=shared_url)
    def build(day: str) -> dict[str, Any]:
        calls.append(day)
        return {"pages": 0}

    @flow
    def pipeline() -> dict[str, State[Any]]:
        return {"old": build("2024-06-01", return_state=True), "new": build("2024-06-02", return_state=True)}

    states = pipeline()
    assert states["old"].name == "Cached" and "ts-nightly" in (states["old"].message or "")
    assert states["old"].result() == {"pages": 3, "title": "juin"}
    assert calls == ["2024-06-02"]

    # And TypeScript finds the key the Prefect task recorded already done, with its result.
    claim, record = ts_run(shared_url, [
        {"op": "claim", "ns": NS, "key": "report/2024-06-02", "ownerRunId": "ts-nightly"},
        {"op": "get", "ns": NS, "key": "report/2024-06-02"},
    ])
    assert claim["kind"] == "done"
    assert record["status"] == "done" and record["result"] == {"pages": 0}
    assert record["ownerRunId"].startswith("prefect:")
    with CheckpointClient(shared_url) as client:
        assert client.get(NS, "report/2024-06-02").result == {"pages": 0}
