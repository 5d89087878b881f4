"""The example DAGs in ``dags/`` run under ``dag.test()``, and a rerun skips everything."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import checkpoint_examples
import pytest
import stdlib_index
import wait_for_ts_export
from support import run_dag, ti_states, xcom

FILES = {
    "a.py": (
        "import os\nfrom sys import path\n\ndef f():\n    def g():\n        pass\n\n"
        "class C:\n    async def m(self):\n        pass\n"
    ),
    "pkg/__init__.py": "",
    "pkg/copy_of_empty.py": "",
    "pkg/broken.py": "def oops(:\n",
    "pkg/b.py": "class A: pass\nclass B(A): pass\nimport json\n",
    "pkg/__pycache__/ignored.py": "def ignored(): pass\n",
    "notes.txt": "not python\n",
}


@pytest.fixture
def source_tree(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    for name, text in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def key_of(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def test_stdlib_index_skips_keys_finished_elsewhere_and_reruns_skip_everything(source_tree: Path, client: Any) -> None:
    # As if the Prefect flow (same namespace, key and result scheme) had already indexed b.py.
    b_key = key_of(FILES["pkg/b.py"])
    claim = client.claim("stdlib-index", b_key, owner_run_id="prefect-run")
    client.done("stdlib-index", b_key, claim.lease_token, {"functions": 0, "classes": 2, "imports": 1})

    dag = stdlib_index.stdlib_index()
    first = run_dag(dag, {"root": str(source_tree)})
    assert str(first.state) == "success"
    planned = xcom(first, "plan")
    assert planned["skipped"] == 1
    # Five .py files, four distinct contents (two are empty), b.py already done.
    assert sorted(item["name"] for item in planned["todo"]) == ["a.py", "pkg/__init__.py", "pkg/broken.py"]
    summary = xcom(first, "summarize")
    assert summary["files"] == 5
    assert summary["contents"] == 4
    assert summary["missing"] == 0
    assert (summary["functions"], summary["classes"], summary["imports"]) == (3, 3, 3)
    assert summary["unparsable"] == [str(source_tree / "pkg" / "broken.py")]

    a_record = client.get("stdlib-index", key_of(FILES["a.py"]))
    assert a_record.result == {"functions": 3, "classes": 1, "imports": 2}
    assert client.get("stdlib-index", b_key).owner_run_id == "prefect-run"
    assert "SyntaxError" in client.get("stdlib-index", key_of(FILES["pkg/broken.py"])).result["error"]

    second = run_dag(dag, {"root": str(source_tree)})
    assert str(second.state) == "success"
    assert xcom(second, "plan")["todo"] == []
    assert xcom(second, "summarize") == {**summary, "skipped": 4}


def test_stdlib_index_plans_a_claimed_key_as_work_not_as_done(source_tree: Path, client: Any) -> None:
    # Another worker holds a file's key on a short lease that it never finishes (killed mid-run): the plan
    # must not count the key as indexed; its task waits out the lease and indexes the file.
    text = "def claimed_elsewhere():\n    pass\n"  # a content no other test indexes
    (source_tree / "held.py").write_text(text, encoding="utf-8")
    held_key = key_of(text)
    held = client.claim("stdlib-index", held_key, owner_run_id="killed-worker", lease_ms=1500)
    assert held.kind == "claimed"

    run = run_dag(stdlib_index.stdlib_index(), {"root": str(source_tree)})
    assert str(run.state) == "success"
    planned = xcom(run, "plan")
    assert "held.py" in [item["name"] for item in planned["todo"]]
    assert xcom(run, "summarize")["missing"] == 0
    assert client.get("stdlib-index", held_key).result == {"functions": 1, "classes": 0, "imports": 0}


def test_stdlib_index_an_unreadable_record_fails_its_own_file_only(source_tree: Path, store_url: str,
                                                                    client: Any) -> None:
    text = "def unreadable_later():\n    pass\n"  # a content no other test indexes
    (source_tree / "unreadable.py").write_text(text, encoding="utf-8")
    key = key_of(text)
    held = client.claim("stdlib-index", key)
    client.done("stdlib-index", key, held.lease_token, {"functions": 1, "classes": 0, "imports": 0})
    import sqlite3

    assert store_url.startswith("sqlite://")
    with sqlite3.connect(store_url.removeprefix("sqlite://")) as conn:
        conn.execute("UPDATE checkpoints SET result = '{bad' WHERE key = ?", (key,))

    run = run_dag(stdlib_index.stdlib_index(), {"root": str(source_tree)})
    assert str(run.state) == "failed"  # the one file fails, with the doctor hint in its log
    states = ti_states(run)
    assert states[("plan", -1)] == "success"
    files = [state for (task_id, _), state in states.items() if task_id == "index_file"]
    assert sorted(files).count("failed") == 1 and files.count("success") == len(files) - 1, states
    with sqlite3.connect(store_url.removeprefix("sqlite://")) as conn:  # the evidence is kept, not overwritten
        assert conn.execute("SELECT result FROM checkpoints WHERE key = ?", (key,)).fetchone() == ("{bad",)
        conn.execute("DELETE FROM checkpoints WHERE key = ?", (key,))  # the session's store stays readable


def test_stdlib_index_refuses_a_root_that_is_not_a_folder(tmp_path: Path) -> None:
    run = run_dag(stdlib_index.stdlib_index(), {"root": str(tmp_path / "missing")})
    assert str(run.state) == "failed"
    assert ti_states(run)[("plan", -1)] == "failed"


def test_checkpoint_examples_second_run_does_nothing_again() -> None:
    first = run_dag(checkpoint_examples.dag)
    assert str(first.state) == "success"
    assert xcom(first, "export") == "exported 2024-01-02"
    assert xcom(first, "report") == "2024-01-02: EURUSD 1.09"

    second = run_dag(checkpoint_examples.dag)
    states = ti_states(second)
    assert states[("fetch_rates", -1)] == "success"
    assert states[("export", -1)] == "skipped"
    assert states[("report", -1)] == "success"
    assert xcom(second, "fetch_rates")["day"] == "2024-01-02"


def test_wait_for_ts_export_hands_the_result_on(client: Any) -> None:
    claim = client.claim("ts-jobs", "export/2024-01-02", owner_run_id="ts-exporter")
    client.done("ts-jobs", "export/2024-01-02", claim.lease_token, {"rows": 10, "file": "day.csv"})
    run = run_dag(wait_for_ts_export.wait_for_ts_export())
    assert str(run.state) == "success"
    assert xcom(run, "publish") == "publishing 10 rows from day.csv"


def _prefect_flow_functions() -> dict[str, Any]:
    """The flow's key and count functions, lifted from its source (Prefect is not installed here)."""
    import ast
    import collections
    import hashlib as hashlib_module

    source = (Path(__file__).resolve().parents[2] / "flows" / "stdlib_index.py").read_text(encoding="utf-8")
    wanted = {"content_key", "count_definitions"}
    tree = ast.parse(source)
    body = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name in wanted]
    assert {node.name for node in body} == wanted
    namespace: dict[str, Any] = {"ast": ast, "hashlib": hashlib_module, "Counter": collections.Counter, "Any": Any}
    exec(compile(ast.Module(body=body, type_ignores=[]), "flows/stdlib_index.py", "exec"), namespace)
    return namespace


def test_dag_and_prefect_flow_file_the_same_results_under_the_same_keys(source_tree: Path) -> None:
    import sysconfig

    flow = _prefect_flow_functions()
    stdlib = stdlib_index.list_sources(Path(sysconfig.get_paths()["stdlib"]))[:150]
    for path in [*stdlib, *stdlib_index.list_sources(source_tree)]:
        data = path.read_bytes()
        assert stdlib_index.content_key(data) == flow["content_key"](data)
        assert stdlib_index.count_definitions(data) == flow["count_definitions"](data), path
