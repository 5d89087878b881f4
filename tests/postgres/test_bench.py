"""`mooncat-checkpoint bench` on PostgreSQL: every workload runs, records are counted right, the namespace is
left empty, and a namespace holding records is refused unless --force is given. No timing is asserted."""

from __future__ import annotations

import contextlib
import io
import json
from typing import Any

import pytest
from mooncat_checkpoint import CheckpointClient, cli

NS = "bench-here"


def _bench(url: str, *extra: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["bench", "--url", url, "--namespace", NS, "--quiet", *extra])
    return code, out.getvalue(), err.getvalue()


def test_every_workload_runs_and_the_namespace_is_left_empty(pg_url: str) -> None:
    code, out, err = _bench(pg_url, "--n", "40", "--processes", "2", "--json")
    assert code == 0, err
    report = json.loads(out)
    names = [r["name"] for r in report["results"]]
    assert len(names) == 8
    assert all(r["ops"] == 40 for r in report["results"])
    overlap = report["results"][-1]
    assert overlap["detail"] == {"keys": 40, "attempts": 80, "wins": 40}
    with CheckpointClient(pg_url) as cp:
        assert cp.list(NS) == []


def test_a_namespace_with_records_is_refused_unless_forced(pg_url: str) -> None:
    with CheckpointClient(pg_url) as cp:
        claim = cp.claim(NS, "precious")
        assert claim.lease_token is not None
        cp.done(NS, "precious", claim.lease_token, result=1)
    code, out, err = _bench(pg_url, "--n", "5", "--processes", "0")
    assert code == 2 and out == ""
    assert "already has records" in err and "--force" in err
    with CheckpointClient(pg_url) as cp:
        record = cp.get(NS, "precious")
        assert record is not None and record.result == 1
    code, _, err = _bench(pg_url, "--n", "5", "--processes", "0", "--only", "cycle,rerun", "--force")
    assert code == 0, err
    with CheckpointClient(pg_url) as cp:
        assert cp.list(NS) == []


@pytest.mark.parametrize("option", [["--n", "0"], ["--processes", "-1"], ["--only", "cycle,nope"]])
def test_bad_options_are_refused_before_anything_is_written(
    pg_url: str, schema: str, admin: Any, option: list[str]
) -> None:
    code, out, err = _bench(pg_url, *option)
    assert code == 2 and out == ""
    assert err.startswith("mooncat-checkpoint: error:")
    # Not even the store's schema was created.
    assert admin.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchall() == []
