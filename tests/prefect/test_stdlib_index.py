"""The resumable stdlib-index pipeline in flows/: a rerun skips everything, a partial run is resumed."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
from mooncat_checkpoint import CheckpointClient
from mooncat_prefect import ARTIFACT_KEY
from prefect.artifacts import Artifact

FLOW_FILE = Path(__file__).resolve().parents[2] / "flows" / "stdlib_index.py"


@pytest.fixture(scope="module")
def pipeline() -> ModuleType:
    spec = importlib.util.spec_from_file_location("stdlib_index", FLOW_FILE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["stdlib_index"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def source_tree(tmp_path: Path) -> Path:
    root = tmp_path / "lib"
    (root / "pkg").mkdir(parents=True)
    (root / "site-packages").mkdir()
    (root / "a.py").write_text("import os\nfrom sys import path\n\nclass A:\n    def f(self):\n        pass\n")
    (root / "b.py").write_text("async def g():\n    def inner():\n        pass\n")
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "copy_of_a.py").write_text((root / "a.py").read_text())  # same content, same key
    (root / "pkg" / "broken.py").write_text("def oops(:\n")
    (root / "site-packages" / "ignored.py").write_text("import this\n")
    (root / "notes.txt").write_text("not python")
    return root


def test_key_scheme_is_the_documented_one(pipeline: ModuleType) -> None:
    assert pipeline.NAMESPACE == "stdlib-index"
    assert pipeline.content_key(b"") == "sha256:" + hashlib.sha256(b"").hexdigest()


def test_rerun_skips_every_file_and_partial_runs_resume(
    pipeline: ModuleType, source_tree: Path, store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    partial = pipeline.stdlib_index(root=str(source_tree), url=store_url, limit=2)
    assert partial["indexed"] == 2 and partial["skipped"] == 0

    full = pipeline.stdlib_index(root=str(source_tree), url=store_url)
    # 5 files, 4 distinct contents; the 2 from the interrupted run are not indexed again.
    assert (full["files"], full["indexed"], full["skipped"], full["failed"]) == (5, 2, 2, 0)
    assert (full["functions"], full["classes"], full["imports"]) == (2 * 1 + 2, 2 * 1, 2 * 2)
    assert full["unparsable"] == [str(source_tree / "pkg" / "broken.py")]

    again = pipeline.stdlib_index(root=str(source_tree), url=store_url)
    assert (again["indexed"], again["skipped"], again["failed"]) == (0, 4, 0)
    assert "0 indexed now, 4 skipped (already done)" in caplog.text
    # Keys found done up front never become task runs, yet the run's summary artifact counts them.
    artifact = Artifact.get(ARTIFACT_KEY)
    assert artifact is not None
    assert json.loads(artifact.data) == [{"task": "index_file", "ran": 0, "skipped": 4, "failed": 0}]

    with CheckpointClient(store_url) as client:
        key = pipeline.content_key((source_tree / "b.py").read_bytes())
        assert client.get("stdlib-index", key).result == {"functions": 2, "classes": 0, "imports": 0}


def test_keys_claimed_or_failed_elsewhere_are_not_taken_as_done(
    pipeline: ModuleType, source_tree: Path, store_url: str
) -> None:
    """A worker killed mid-run leaves a claim; a failed record says why it failed. Neither is an index."""
    with CheckpointClient(store_url) as client:
        a_key = pipeline.content_key((source_tree / "a.py").read_bytes())
        held = client.claim("stdlib-index", a_key, owner_run_id="killed-worker", lease_ms=1500)
        assert held.kind == "claimed"
        b_key = pipeline.content_key((source_tree / "b.py").read_bytes())
        failing = client.claim("stdlib-index", b_key, owner_run_id="other-run")
        client.fail("stdlib-index", b_key, "disk full", failing.lease_token)

    summary = pipeline.stdlib_index(root=str(source_tree), url=store_url)
    # a.py (and its copy) indexed once the abandoned lease ran out; b.py reported as failed, not counted.
    assert (summary["indexed"], summary["skipped"], summary["failed"]) == (3, 0, 1)
    assert (summary["functions"], summary["classes"], summary["imports"]) == (2, 2, 4)
    with CheckpointClient(store_url) as client:
        assert client.get("stdlib-index", a_key).result == {"functions": 1, "classes": 1, "imports": 2}
        assert client.get("stdlib-index", b_key).error == "disk full"


def test_an_unreadable_record_fails_its_own_file_and_not_the_run(
    pipeline: ModuleType, source_tree: Path, tmp_path: Path
) -> None:
    import sqlite3

    url = f"sqlite://{tmp_path / 'index.db'}"
    b_key = pipeline.content_key((source_tree / "b.py").read_bytes())
    with CheckpointClient(url) as client:
        held = client.claim("stdlib-index", b_key)
        client.done("stdlib-index", b_key, held.lease_token, result={"functions": 2, "classes": 0, "imports": 0})
    with sqlite3.connect(tmp_path / "index.db") as conn:
        conn.execute("UPDATE checkpoints SET result = '{bad' WHERE key = ?", (b_key,))

    summary = pipeline.stdlib_index(root=str(source_tree), url=url)
    # Every other content indexed; the unreadable one is neither overwritten nor taken as done.
    assert (summary["indexed"], summary["skipped"], summary["failed"]) == (3, 0, 1)
    with sqlite3.connect(tmp_path / "index.db") as conn:
        assert conn.execute("SELECT result FROM checkpoints WHERE key = ?", (b_key,)).fetchone() == ("{bad",)


def test_bad_root_or_limit_is_refused_before_anything_runs(pipeline: ModuleType, tmp_path: Path,
                                                            store_url: str) -> None:
    with pytest.raises(ValueError, match="not a folder"):
        pipeline.stdlib_index(root=str(tmp_path / "missing"), url=store_url)
    with pytest.raises(ValueError, match="positive"):
        pipeline.stdlib_index(root=str(tmp_path), url=store_url, limit=-1)


def test_a_store_that_cannot_be_opened_is_one_line_before_prefect_starts(tmp_path: Path) -> None:
    (tmp_path / "notes.db").write_text("not a database")
    run = subprocess.run([sys.executable, str(FLOW_FILE), "--root", str(tmp_path), "--url",
                          f"sqlite://{tmp_path / 'notes.db'}"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr[-2000:]
    assert run.stderr.startswith("stdlib_index: error: ") and run.stderr.count("\n") == 1, run.stderr[-2000:]
    assert "Starting temporary server" not in run.stdout + run.stderr
    assert (tmp_path / "notes.db").read_text() == "not a database"

    # memory:// would run, and keep nothing to resume from.
    run = subprocess.run([sys.executable, str(FLOW_FILE), "--root", str(tmp_path), "--url", "memory://"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "memory://" in run.stderr and run.stderr.count("\n") == 1, run.stderr[-2000:]


def _started_midway(tmp_path: Path, store_url: str, files: int, done_before_return: int) -> subprocess.Popen[bytes]:
    """The README's main job as a user runs it, in a process group of its own (a terminal's Ctrl-C signals
    the whole group, Prefect's own server process included), returned once some files are done."""
    root = tmp_path / "many"
    root.mkdir()
    for n in range(files):
        (root / f"m{n:03d}.py").write_text(f"def f{n}():\n    return {n}\n" * (n % 5 + 1))
    env = {name: value for name, value in os.environ.items() if not name.startswith("PREFECT_API")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    run = subprocess.Popen([sys.executable, str(FLOW_FILE), "--root", str(root), "--url", store_url],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    with CheckpointClient(store_url) as client:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and run.poll() is None:
            if len(client.list("stdlib-index", status="done")) >= done_before_return:
                break
            time.sleep(0.05)
    if run.poll() is not None:
        raise AssertionError("the run finished before it could be interrupted")
    return run


def _kill_if_running(run: subprocess.Popen[bytes]) -> None:
    if run.poll() is None:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()


def test_ctrl_c_midway_then_rerun_finishes_only_the_rest(pipeline: ModuleType, tmp_path: Path,
                                                          store_url: str) -> None:
    run = _started_midway(tmp_path, store_url, files=400, done_before_return=40)
    try:
        os.killpg(run.pid, signal.SIGINT)
        # Exits promptly: Prefect's exit hooks must not wait for the server the same Ctrl-C stopped.
        output = run.communicate(timeout=60)[0].decode("utf-8", "replace")
        assert run.returncode == 130, output[-3000:]
        assert "run the same command again" in output
        with CheckpointClient(store_url) as client:
            finished = {r.key for r in client.list("stdlib-index", status="done")}
            # Files in flight when interrupted gave their claims back: nothing waits for a lease to expire.
            assert client.list("stdlib-index", status="claimed") == []
    finally:
        _kill_if_running(run)

    rest = pipeline.stdlib_index(root=str(tmp_path / "many"), url=store_url)
    assert 40 <= rest["skipped"] == len(finished) < 400
    assert rest["indexed"] == 400 - len(finished) and rest["failed"] == 0


def test_a_store_named_by_a_config_file_in_a_parent_folder_is_the_one_every_task_uses(
    pipeline: ModuleType, source_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The config's relative path is relative to the config's folder, not to where the flow is started.
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    (project / "mooncat-checkpoint.config.json").write_text('{"backend": {"url": "sqlite://./store.db"}}')
    monkeypatch.delenv("MOONCAT_CHECKPOINT_URL", raising=False)
    monkeypatch.chdir(project / "sub")

    first = pipeline.stdlib_index(root=str(source_tree))
    assert (first["indexed"], first["skipped"]) == (4, 0)
    assert not (project / "sub" / "store.db").exists()
    with CheckpointClient(f"sqlite://{project / 'store.db'}") as client:
        assert len(client.list("stdlib-index", status="done")) == 4

    monkeypatch.chdir(project)
    again = pipeline.stdlib_index(root=str(source_tree))
    assert (again["indexed"], again["skipped"]) == (0, 4)


def test_a_folder_with_nothing_to_parse_gives_zero_totals(pipeline: ModuleType, tmp_path: Path, store_url: str) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.py").write_text("def (:\n")
    empty = pipeline.stdlib_index(root=str(tmp_path / "empty"), url=store_url)
    assert (empty["files"], empty["functions"], empty["classes"], empty["imports"]) == (0, 0, 0, 0)
    broken = pipeline.stdlib_index(root=str(tmp_path / "broken"), url=store_url)
    assert (broken["files"], broken["functions"], broken["unparsable"]) == (1, 0, [str(tmp_path / "broken" / "x.py")])


def test_bad_store_url_and_missing_folder_are_one_line_errors_before_prefect_starts(tmp_path: Path) -> None:

    for args, expected in ((["--url", "file://localhost/x"], "host part"),
                           (["--root", str(tmp_path / "nowhere")], "is not a folder")):
        run = subprocess.run([sys.executable, str(FLOW_FILE), *args], capture_output=True, text=True, timeout=60)
        assert run.returncode == 2, run.stderr
        assert run.stderr.count("\n") == 1 and expected in run.stderr, run.stderr


def test_ctrl_c_ends_the_run_when_its_output_pipe_was_closed_by_the_same_ctrl_c(tmp_path: Path, store_url: str) -> None:
    """`python flows/stdlib_index.py | tee log` and Ctrl-C: tee dies with the run, and every later write to
    the pipe fails; the run must still end within its grace period instead of hanging in exit hooks."""
    run = _started_midway(tmp_path, store_url, files=300, done_before_return=10)
    try:
        assert run.stdout is not None
        run.stdout.close()  # the reader (tee) is gone
        os.killpg(run.pid, signal.SIGINT)
        assert run.wait(timeout=60) == 130
    finally:
        _kill_if_running(run)
