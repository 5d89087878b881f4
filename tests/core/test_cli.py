"""The command-line tool, run as a real subprocess the way users run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mooncat_checkpoint import CheckpointClient


def cli(
    *args: str, cwd: Path, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "MOONCAT_CHECKPOINT_URL"}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "mooncat_checkpoint", *args],
        cwd=cwd, input=stdin, capture_output=True, text=True, env=environment, timeout=120,
    )


def finish(url: str, ns: str, key: str, result: object) -> None:
    with CheckpointClient(url) as cp:
        claim = cp.claim(ns, key, owner_run_id="cli-test")
        assert claim.lease_token is not None
        cp.done(ns, key, claim.lease_token, result=result)


@pytest.fixture(params=["file", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"file://{tmp_path}/store" if request.param == "file" else f"sqlite://{tmp_path}/store.db"


def test_init_writes_a_config_that_url_then_reports(tmp_path: Path) -> None:
    made = cli("init", "--url", "sqlite://./cp.db", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    config = json.loads((tmp_path / "mooncat-checkpoint.config.json").read_text())
    assert config == {"backend": {"url": "sqlite://./cp.db"}}
    shown = cli("url", "--json", cwd=tmp_path)
    data = json.loads(shown.stdout)
    assert data["url"] == "sqlite://./cp.db"
    assert data["source"].startswith("config ")
    assert data["location"] == str(tmp_path / "cp.db")
    again = cli("init", cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr


def test_init_refuses_a_bad_url_before_writing(tmp_path: Path) -> None:
    made = cli("init", "--url", "file://~/x", cwd=tmp_path)
    assert made.returncode == 2
    assert not (tmp_path / "mooncat-checkpoint.config.json").exists()


def test_list_get_reset_and_exit_codes(url: str, tmp_path: Path) -> None:
    finish(url, "ns", "a key/with slash", {"n": 1})
    listed = cli("list", "ns", "--url", url, "--json", cwd=tmp_path)
    assert [r["key"] for r in json.loads(listed.stdout)] == ["a key/with slash"]
    human = cli("--url", url, "list", "ns", cwd=tmp_path)
    assert "[done   ] a key/with slash" in human.stdout
    got = cli("get", "ns", "a key/with slash", "--url", url, cwd=tmp_path)
    assert got.returncode == 0 and json.loads(got.stdout)["result"] == {"n": 1}
    missing = cli("get", "ns", "nope", "--url", url, cwd=tmp_path)
    assert missing.returncode == 1
    reset = cli("reset", "ns", "a key/with slash", "--url", url, "--json", cwd=tmp_path)
    assert json.loads(reset.stdout) == {"deleted": True}
    assert cli("get", "ns", "a key/with slash", "--url", url, cwd=tmp_path).returncode == 1


def test_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    for args in (["list", "bad ns", "--url", "memory://"], ["list", "ns", "--url", "file://x?y=1"],
                 ["gc", "--url", "nosuch://x"]):
        run = cli(*args, cwd=tmp_path)
        assert run.returncode == 2
        assert run.stderr.startswith("mooncat-checkpoint: error: ")
        assert "Traceback" not in run.stderr and run.stderr.count("\n") == 1


def test_stats_counts_per_namespace_and_status(url: str, tmp_path: Path) -> None:
    finish(url, "alpha", "k1", 1)
    finish(url, "alpha", "k2", 2)
    with CheckpointClient(url) as cp:
        cp.claim("beta", "k3")
    stats = json.loads(cli("stats", "--url", url, "--json", cwd=tmp_path).stdout)
    assert stats == {"alpha": {"done": 2}, "beta": {"claimed": 1}}


def test_gc_deletes_only_expired_claims(url: str, tmp_path: Path) -> None:
    with CheckpointClient(url) as cp:
        cp.claim("ns", "short", lease_ms=1)
        cp.claim("ns", "long", lease_ms=600_000)
    import time

    time.sleep(0.01)
    gc = cli("gc", "--url", url, "--json", cwd=tmp_path)
    assert json.loads(gc.stdout) == {"deleted": 1}
    with CheckpointClient(url) as cp:
        assert [r.key for r in cp.list("ns")] == ["long"]


def test_export_then_import_moves_a_store_and_never_overwrites(tmp_path: Path) -> None:
    source = f"file://{tmp_path}/src"
    target = f"sqlite://{tmp_path}/dst.db"
    finish(source, "ns", "k1", {"v": "é"})
    finish(source, "ns", "needs hashing", [1, 2])
    finish(source, "other", "k3", None)
    exported = cli("export", "--url", source, cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    lines = exported.stdout.splitlines()
    assert len(lines) == 3
    # The target already has its own version of k1: import must keep it.
    finish(target, "ns", "k1", {"v": "theirs"})
    imported = cli("import", "--url", target, "--json", cwd=tmp_path, stdin=exported.stdout)
    assert json.loads(imported.stdout) == {"read": 3, "imported": 2, "kept_existing": 1, "duplicates": 0}
    with CheckpointClient(target) as cp:
        assert cp.get("ns", "k1").result == {"v": "theirs"}  # type: ignore[union-attr]
        assert cp.get("ns", "needs hashing").result == [1, 2]  # type: ignore[union-attr]
        assert cp.claim("other", "k3").kind == "done"


def test_import_validates_every_line_before_writing(tmp_path: Path) -> None:
    target = f"sqlite://{tmp_path}/dst.db"
    good = json.dumps({"namespace": "ns", "key": "k", "status": "done", "ownerRunId": None, "leaseToken": None,
                       "leaseUntil": None, "result": 1, "resultRef": None, "attempts": 1, "createdAt": 1,
                       "updatedAt": 1})
    bad = good.replace('"done"', '"finished"')
    run = cli("import", "--url", target, cwd=tmp_path, stdin=good + "\n" + bad + "\n")
    assert run.returncode == 2 and "line 2" in run.stderr and "finished" in run.stderr
    with CheckpointClient(target) as cp:
        assert cp.get("ns", "k") is None


def test_doctor_reports_and_quarantines_unreadable_records(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/store"
    finish(url, "ns", "fine", 1)
    broken = tmp_path / "store" / "ns" / "broken.json"
    broken.write_text("{not json")
    listed = cli("list", "ns", "--url", url, cwd=tmp_path)
    assert "fine" in listed.stdout and "broken.json" in listed.stderr
    found = cli("doctor", "--url", url, "--json", cwd=tmp_path)
    assert found.returncode == 2
    assert [p["location"] for p in json.loads(found.stdout)] == [str(broken)]
    fixed = cli("doctor", "--quarantine", "--url", url, cwd=tmp_path)
    assert fixed.returncode == 0 and "moved 1" in fixed.stdout
    assert not broken.exists()
    assert cli("doctor", "--url", url, cwd=tmp_path).returncode == 0
    with CheckpointClient(url) as cp:
        assert cp.claim("ns", "broken").kind == "claimed"


def test_a_file_that_is_no_checkpoint_database_is_one_line_and_left_alone(tmp_path: Path) -> None:
    (tmp_path / "text.db").write_text("hi")
    (tmp_path / "folder.db").mkdir()
    import sqlite3

    with sqlite3.connect(tmp_path / "foreign.db") as conn:
        conn.execute("CREATE TABLE checkpoints (x)")
    for name, expected in (("text.db", "file is not a database"), ("folder.db", "unable to open"),
                           ("foreign.db", "not a checkpoint table")):
        before = (tmp_path / name).stat().st_mtime_ns
        for command in (["list", "ns"], ["get", "ns", "k"]):
            run = cli("--url", f"sqlite://./{name}", *command, cwd=tmp_path, stdin="")
            assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
            assert expected in run.stderr and run.stderr.count("\n") == 1, run.stderr
        assert (tmp_path / name).stat().st_mtime_ns == before
    assert (tmp_path / "text.db").read_text() == "hi"


@pytest.mark.parametrize("command", [["list", "ns"], ["get", "ns", "k"], ["stats"], ["export"], ["doctor"],
                                     ["gc"], ["reset", "ns", "k"]])
@pytest.mark.parametrize("scheme", ["file", "sqlite"])
def test_reading_a_store_that_does_not_exist_is_an_error_and_creates_nothing(
    tmp_path: Path, command: list[str], scheme: str
) -> None:
    run = cli("--url", f"{scheme}://./typo/store", *command, cwd=tmp_path)
    assert run.returncode == 2 and "no checkpoint store at" in run.stderr, run.stderr
    assert list(tmp_path.iterdir()) == []


def test_import_names_the_line_of_a_result_or_namespace_no_store_can_hold(tmp_path: Path) -> None:
    good = json.dumps({"namespace": "ns", "key": "a", "status": "done", "result": 1, "attempts": 1,
                       "createdAt": 1, "updatedAt": 1})
    for bad, expected in (
        (good.replace("\"result\": 1", "\"result\": NaN"), "nan"),
        (good.replace('"result": 1', '"result": "' + "x" * 70_000 + '"'), "inline limit"),
        (good.replace('"ns"', '"' + "n" * 256 + '"'), "at most 255"),
        (good.replace('"status": "done", ', ""), "unknown status"),
    ):
        # The file store, whose folder names also cap namespaces; nothing is imported, not even line 1.
        run = cli("--url", "file://./store", "import", cwd=tmp_path, stdin=f"{good}\n{bad}\n")
        assert run.returncode == 2 and run.stderr.startswith("mooncat-checkpoint: error: line 2: "), run.stderr
        assert expected in run.stderr and "doctor" not in run.stderr, run.stderr[:300]
        assert CheckpointClient(f"file://{tmp_path}/store").get("ns", "a") is None


def test_messages_name_the_status_the_scheme_and_where_a_bad_url_came_from(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/s.db"
    finish(url, "ns", "k", 1)
    listed = cli("--url", url, "list", "ns", "--status", "claimed", cwd=tmp_path)
    assert listed.returncode == 0 and 'has no claimed records' in listed.stdout
    host = cli("--url", "sqlite://localhost/x.db", "list", "ns", cwd=tmp_path)
    assert "write sqlite:///absolute/path" in host.stderr
    from_env = cli("list", "ns", cwd=tmp_path, env={"MOONCAT_CHECKPOINT_URL": "~/x"})
    assert from_env.returncode == 2 and "(from env MOONCAT_CHECKPOINT_URL)" in from_env.stderr
    for bad in ("", "memory://"):
        made = cli("init", "--url", bad, cwd=tmp_path)
        assert made.returncode == 2 and not (tmp_path / "mooncat-checkpoint.config.json").exists(), made.stderr


# Every command misused: a usage error, a bad value, a store that cannot be one. Each must be one line on
# stderr and exit status 2, never a usage block or a traceback. "{store}" is an existing file store,
# "{file}" an ordinary file, "{jsonl}" a valid export, "{dir}" the folder holding them.
MISUSE = [
    [], ["bogus"], ["--url"],
    ["init", "--url", ""], ["init", "--url", "ftp://x"], ["init", "--url", "memory://"], ["init", "extra"],
    ["url", "extra"], ["url", "--url", "file://~/x"],
    ["list"], ["list", "ns", "--status", "nope"], ["list", "bad ns", "--url", "{store}"],
    ["list", "ns", "--url", "file://{file}"], ["list", "ns", "--url", "sqlite://{file}"],
    ["get"], ["get", "ns"], ["get", "ns", "k", "extra"], ["get", "ns\n", "k", "--url", "{store}"],
    ["reset", "ns"], ["reset", "bad ns", "k", "--url", "{store}"],
    ["gc", "--older-than", "abc"], ["gc", "--older-than", "-5", "--url", "{store}"],
    ["gc", "--older-than", "1.5"], ["gc", "extra"],
    ["stats", "bad ns", "--url", "{store}"], ["stats", "a", "b"],
    ["export", "bad ns", "--url", "{store}"], ["export", "-o", "{dir}", "--url", "{store}"],
    ["import", "-i", "{dir}/missing.jsonl", "--url", "{store}"], ["import", "-i", "{dir}", "--url", "{store}"],
    ["import", "--namespace", "bad ns", "-i", "{jsonl}", "--url", "{store}"],
    ["import", "-i", "{file}", "--url", "file://{file}"],
    ["doctor", "bad ns", "--url", "{store}"], ["doctor", "--quarantine", "extra", "more"],
    ["bench", "--n", "abc"], ["bench", "--n", "-1", "--url", "memory://"],
]


@pytest.mark.parametrize("args", MISUSE, ids=lambda args: " ".join(args) or "(none)")
def test_every_misuse_is_one_line_and_exit_2(tmp_path: Path, args: list[str]) -> None:
    store = tmp_path / "store"
    finish(f"file://{store}", "ns", "k", 1)
    plain = tmp_path / "plain.txt"
    plain.write_text("not a store\n")
    export = tmp_path / "export.jsonl"
    export.write_text(_export_line() + "\n")
    places = {"{store}": f"file://{store}", "{file}": str(plain), "{jsonl}": str(export), "{dir}": str(tmp_path)}
    filled = []
    for arg in args:
        for mark, place in places.items():
            arg = arg.replace(mark, place)
        filled.append(arg)
    before = sorted(p.name for p in tmp_path.iterdir())
    run = cli(*filled, cwd=tmp_path)
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert run.stderr.count("\n") == 1 and "error: " in run.stderr, run.stderr
    assert "Traceback" not in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing created beside the store
    assert plain.read_text() == "not a store\n"


def _export_line(**fields: object) -> str:
    record = {"namespace": "ns", "key": "new", "status": "done", "ownerRunId": None, "leaseToken": None,
              "leaseUntil": None, "result": 1, "resultRef": None, "attempts": 1, "createdAt": 1, "updatedAt": 1}
    record.update(fields)
    return json.dumps(record)


BAD_IMPORT_INPUT = {
    # Each of these once ended in a traceback, or wrote a record no store or JavaScript reader keeps.
    "nested too deep to parse": b"[" * 100_000 + b"]" * 100_000 + b"\n",
    "not UTF-8": b"\xff\xfe{}\n",
    "lease end past 2**53": _export_line(status="claimed", leaseToken="t" * 32, leaseUntil=10**23).encode(),
    "fractional attempts": _export_line(attempts=1.5).encode(),
    "NaN attempts": _export_line().replace('"attempts": 1', '"attempts": NaN').encode(),
    "claimed without token": _export_line(status="claimed").encode(),
}


@pytest.mark.parametrize("name", list(BAD_IMPORT_INPUT))
@pytest.mark.parametrize("scheme", ["file", "sqlite"])
def test_malformed_import_lines_are_one_line_errors_and_write_nothing(tmp_path: Path, name: str, scheme: str) -> None:
    url = f"file://{tmp_path}/store" if scheme == "file" else f"sqlite://{tmp_path}/store.db"
    source = tmp_path / "in.jsonl"
    source.write_bytes(_export_line(key="first").encode() + b"\n" + BAD_IMPORT_INPUT[name])
    run = cli("import", "-i", str(source), "--url", url, cwd=tmp_path)
    assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stderr
    assert "Traceback" not in run.stderr
    assert "UTF-8" in run.stderr if name == "not UTF-8" else "line 2" in run.stderr
    with CheckpointClient(url) as cp:
        assert cp.list("ns") == []  # the good first line was not imported either


def test_import_refuses_keys_that_would_land_on_another_keys_record_before_writing_any(tmp_path: Path) -> None:
    from mooncat_checkpoint.keys import storage_segment

    hashed = "not a file name"
    spelled = storage_segment(hashed)  # a safe key that spells the hashed segment of another key
    line = {"namespace": "ns", "status": "done", "result": 1, "attempts": 1, "createdAt": 1, "updatedAt": 1}
    first = json.dumps({**line, "key": "first"})
    url = f"sqlite://{tmp_path}/dst.db"

    # Both keys in the input itself.
    both = "\n".join([first, json.dumps({**line, "key": hashed}), json.dumps({**line, "key": spelled})])
    run = cli("import", "--url", url, cwd=tmp_path, stdin=both + "\n")
    assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stderr
    assert repr(hashed) in run.stderr and repr(spelled) in run.stderr and "nothing was imported" in run.stderr

    # One key already stored, the other in the input, after a line that would have been imported first.
    finish(url, "ns", spelled, "stored")
    run = cli("import", "--url", url, cwd=tmp_path, stdin=first + "\n" + json.dumps({**line, "key": hashed}) + "\n")
    assert run.returncode == 2 and repr(spelled) in run.stderr and "nothing was imported" in run.stderr, run.stderr
    with CheckpointClient(url) as cp:
        assert cp.get("ns", "first") is None
        assert cp.get("ns", spelled).result == "stored"


def _one_line_error(run: subprocess.CompletedProcess[str]) -> None:
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert run.stderr.startswith("mooncat-checkpoint: error: ") and run.stderr.count("\n") == 1, run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("target", ["v2.db", "./v2.db", "v2.db-wal", "v2.db-shm", "v2.db-journal", "link.db"])
def test_export_never_writes_over_the_sqlite_store_it_reads(tmp_path: Path, target: str) -> None:
    url = f"sqlite://{tmp_path / 'v2.db'}"
    finish(url, "ns", "k", {"kept": True})
    (tmp_path / "link.db").symlink_to(tmp_path / "v2.db")
    before = (tmp_path / "v2.db").read_bytes()
    run = cli("export", "--url", "sqlite://./v2.db", "-o", target, cwd=tmp_path)
    _one_line_error(run)
    assert "store's database file" in run.stderr
    assert (tmp_path / "v2.db").read_bytes() == before
    with CheckpointClient(url) as cp:
        record = cp.get("ns", "k")
    assert record is not None and record.result == {"kept": True}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


@pytest.mark.parametrize("target", ["store", "store/ns/k.json", "store/ns/new.jsonl", "store/other.jsonl"])
def test_export_never_writes_into_the_file_store_it_reads(tmp_path: Path, target: str) -> None:
    url = f"file://{tmp_path / 'store'}"
    finish(url, "ns", "k", {"kept": True})
    before = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "store").rglob("*"))
    run = cli("export", "--url", "file://./store", "-o", target, cwd=tmp_path)
    _one_line_error(run)
    assert "file store's folder" in run.stderr
    assert sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "store").rglob("*")) == before
    with CheckpointClient(url) as cp:
        record = cp.get("ns", "k")
    assert record is not None and record.result == {"kept": True}


def test_a_failed_export_leaves_the_existing_output_as_it_was(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'store'}"
    finish(url, "ns", "k", 1)
    (tmp_path / "store" / "broken").write_text("a file where a namespace folder belongs\n")
    output = tmp_path / "backup.jsonl"
    output.write_text("yesterday's export\n")
    run = cli("export", "broken", "--url", url, "-o", str(output), cwd=tmp_path)
    _one_line_error(run)
    assert output.read_text() == "yesterday's export\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup.jsonl", "store"]  # no partial file left


def test_export_replaces_the_output_only_when_complete_keeping_its_mode_and_link(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'cp.db'}"
    finish(url, "ns", "k", {"n": 1})
    real = tmp_path / "exports" / "real.jsonl"
    real.parent.mkdir()
    real.write_text("old\n")
    real.chmod(0o640)
    link = tmp_path / "latest.jsonl"
    link.symlink_to(real)
    run = cli("export", "--url", url, "-o", str(link), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert link.is_symlink() and json.loads(real.read_text())["key"] == "k"
    assert real.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in real.parent.iterdir()) == ["real.jsonl"]


def test_import_reports_lines_repeating_a_key_apart_from_existing_records(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'cp.db'}"
    finish(url, "ns", "old", "stored")
    lines = [_export_line(key="new"), _export_line(key="new", result={"second": True}),
             _export_line(key="old"), _export_line(key="old"), _export_line(key="other")]
    text = "\n".join(lines) + "\n"
    run = cli("import", "--url", url, "--json", cwd=tmp_path, stdin=text)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"read": 5, "imported": 2, "kept_existing": 1, "duplicates": 2}
    human = cli("import", "--url", f"sqlite://{tmp_path / 'fresh.db'}", cwd=tmp_path,
                stdin="\n".join(lines[:2]) + "\n")
    assert "imported 1 record(s); kept 0 existing record(s) unchanged" in human.stdout
    assert "skipped 1 line(s) repeating a key given earlier in the input" in human.stdout
    with CheckpointClient(url) as cp:
        record = cp.get("ns", "new")
    assert record is not None and record.result != {"second": True}  # the first line counts


@pytest.mark.parametrize(
    "args",
    [["list", "ns"], ["get", "ns", "k"], ["reset", "ns", "k"], ["gc"], ["stats"], ["export"], ["doctor"],
     ["import"]],
    ids=lambda args: args[0],
)
def test_commands_on_a_memory_store_are_refused(tmp_path: Path, args: list[str]) -> None:
    run = cli(*args, "--url", "memory://", cwd=tmp_path, stdin=_export_line() + "\n")
    _one_line_error(run)
    assert "memory://" in run.stderr and run.stdout == ""
    assert sorted(tmp_path.iterdir()) == []


def test_url_still_reports_a_memory_store(tmp_path: Path) -> None:
    run = cli("url", "--url", "memory://", "--json", cwd=tmp_path)
    assert run.returncode == 0 and json.loads(run.stdout)["url"] == "memory://"


def test_reset_refuses_a_live_claim_unless_forced(url: str, tmp_path: Path) -> None:
    with CheckpointClient(url) as cp:
        cp.claim("ns", "live", owner_run_id="worker-7", lease_ms=600_000)
        cp.claim("ns", "stale", owner_run_id="gone", lease_ms=1)
        time.sleep(0.01)
        refused = cli("reset", "ns", "live", "--url", url, cwd=tmp_path)
        _one_line_error(refused)
        assert "worker-7" in refused.stderr and "until 20" in refused.stderr and "--force" in refused.stderr
        assert cp.get("ns", "live") is not None
        stale = cli("reset", "ns", "stale", "--url", url, "--json", cwd=tmp_path)
        assert stale.returncode == 0 and json.loads(stale.stdout) == {"deleted": True}
        forced = cli("reset", "ns", "live", "--force", "--url", url, "--json", cwd=tmp_path)
        assert forced.returncode == 0 and json.loads(forced.stdout) == {"deleted": True}
        assert cp.get("ns", "live") is None
        # The library's reset is the 0.1.0 call: it deletes whatever is there.
        cp.claim("ns", "live", lease_ms=600_000)
        assert cp.reset("ns", "live") is True
