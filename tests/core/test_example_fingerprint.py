"""The quick-start example as a user runs it: interrupted with Ctrl-C at random moments, then rerun."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from mooncat_checkpoint import CheckpointClient

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fingerprint.py"
FILES = 1500


def test_ctrl_c_anywhere_leaves_no_claim_and_the_rerun_finishes_only_the_rest(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    for n in range(FILES):
        (root / f"f{n}.py").write_text(f"x = {n}\n")
    url = f"file://{tmp_path / 'store'}"
    env = {**os.environ, "PYTHONPATH": str(EXAMPLE.parents[1] / "core")}
    command = [sys.executable, str(EXAMPLE), "--root", str(root), "--url", url]
    rng = random.Random(7)
    with CheckpointClient(url) as store:
        for _ in range(3):  # interrupts land wherever the run happens to be: claim, body, done
            before = len(store.list("stdlib-fingerprint", status="done"))
            run = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 60
            while len(store.list("stdlib-fingerprint", status="done")) < before + 50 and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0, 0.05))
            run.send_signal(signal.SIGINT)
            output = run.communicate(timeout=60)[0].decode()
            assert run.returncode == 130, output
            done = len(store.list("stdlib-fingerprint", status="done"))
            assert store.list("stdlib-fingerprint", status="claimed") == [], output
            ran = int(output.split("interrupted: ")[1].split(" fingerprinted")[0])
            # Never more than is stored; one less when the interrupt came after the write, before the count.
            assert done - before - 1 <= ran <= done - before, output

        rest = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=True)
        assert f"{FILES - done} fingerprinted, {done} skipped" in rest.stdout, rest.stdout


def _example(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MOONCAT_CHECKPOINT_URL"}
    env["PYTHONPATH"] = str(EXAMPLE.parents[1] / "core")
    return subprocess.run([sys.executable, str(EXAMPLE), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_bad_input_is_one_line_and_exit_2_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "a.py").write_text("x = 1\n")
    for args, complaint in [
        (["--root", str(tmp_path / "nonexistent"), "--url", "sqlite://./fp.db"], "is not a folder"),
        (["--root", str(tmp_path / "a.py"), "--url", "sqlite://./fp.db"], "is not a folder"),
        (["--root", str(tmp_path / "empty"), "--url", "sqlite://./fp.db"], "no .py files"),
        (["--root", str(tmp_path), "--url", "bogus://"], "unsupported store URL"),
        (["--root", str(tmp_path), "--url", "file://~/x"], "not expanded"),
    ]:
        run = _example(*args, cwd=tmp_path)
        assert run.returncode == 2, (args, run.stdout, run.stderr)
        assert complaint in run.stderr and run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
        assert run.stdout == ""
        assert sorted(p.name for p in tmp_path.iterdir()) == ["a.py", "empty"]  # no store was made


def test_a_file_recorded_as_failed_stops_the_run_with_its_reset_command(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    (root / "a.py").write_text("x = 1\n")
    url = f"sqlite://{tmp_path / 'fp.db'}"
    with CheckpointClient(url) as store:
        held = store.claim("stdlib-fingerprint", "a.py")
        assert held.lease_token is not None
        store.fail("stdlib-fingerprint", "a.py", "bad file", held.lease_token)
    run = _example("--root", str(root), "--url", url, cwd=tmp_path)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert f"mooncat-checkpoint reset --url {url} stdlib-fingerprint a.py" in run.stderr
