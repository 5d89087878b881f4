"""`mooncat-checkpoint bench` on PostgreSQL: every workload runs, records are counted right, the namespace is
left empty, and a namespace holding records is refused unless --force is given. A store the bench created
(here also a file or SQLite one) is removed afterwards, one that existed is kept. No timing is asserted."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
from mooncat_checkpoint import CheckpointClient, bench, cli
from pg_server import store_url

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


def _bench_quiet(url: str) -> None:
    code, _, err = _bench(url, "--n", "5", "--processes", "1")
    assert code == 0, err


def _schema_exists(admin: Any, schema: str) -> bool:
    return bool(admin.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchall())


def test_a_schema_the_bench_created_is_dropped_afterwards(schema: str, admin: Any) -> None:
    _bench_quiet(store_url(schema))
    assert not _schema_exists(admin, schema)


def test_tables_the_bench_created_in_an_existing_schema_go_and_the_schema_and_its_other_tables_stay(
    schema: str, admin: Any
) -> None:
    admin.execute(f'CREATE SCHEMA "{schema}"')
    admin.execute(f'CREATE TABLE "{schema}".mine (x int)')
    _bench_quiet(store_url(schema))
    tables = {t for (t,) in admin.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))}
    assert tables == {"mine"}


def test_a_store_that_existed_is_kept_even_when_empty(schema: str, admin: Any) -> None:
    url = store_url(schema)
    with CheckpointClient(url) as cp:
        cp.get(NS, "k")  # creates the store, with no record in it
    _bench_quiet(url)
    assert admin.execute("SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}".checkpoints',)).fetchone() == (True,)


def test_a_created_store_that_someone_else_wrote_to_meanwhile_is_kept(
    schema: str, admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = store_url(schema)
    real_measure = bench.measure

    def measure_while_another_worker_writes(client: CheckpointClient, *args: Any, **kwargs: Any) -> Any:
        with CheckpointClient(url) as other:
            other.claim("someone-else", "k")
        return real_measure(client, *args, **kwargs)

    monkeypatch.setattr(bench, "measure", measure_while_another_worker_writes)
    _bench_quiet(url)
    assert admin.execute(f'SELECT namespace FROM "{schema}".checkpoints').fetchall() == [("someone-else",)]


def test_a_file_store_folder_the_bench_created_is_removed_and_its_parents_too(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    _bench_quiet(f"file://{tmp_path}/made/by/bench")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_an_existing_file_store_folder_is_kept(tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.mkdir()
    _bench_quiet(f"file://{root}")
    assert root.is_dir()


def test_a_sqlite_file_the_bench_created_is_removed_and_an_existing_one_kept(tmp_path: Path) -> None:
    _bench_quiet(f"sqlite://{tmp_path}/new/bench.db")
    assert list(tmp_path.iterdir()) == []
    existing = tmp_path / "existing.db"
    with CheckpointClient(f"sqlite://{existing}") as cp:
        cp.get(NS, "k")
    _bench_quiet(f"sqlite://{existing}")
    assert existing.is_file()
