"""Where no PostgreSQL server answers, its tests skip with the reason, except under CI, where that skip fails.

Runs a small pytest session in a subprocess against a port nothing listens on, so the policy is checked on a
machine that does have the server too.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent

PROBE = '''
from pg_server import fresh_store_url


def test_needs_the_server() -> None:
    fresh_store_url()
'''


def _closed_port() -> int:
    # A port that was free a moment ago: connecting to it is refused at once.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_probe(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_probe.py").write_text(PROBE, encoding="utf-8")
    (tmp_path / "conftest.py").write_text((TESTS / "conftest.py").read_text(encoding="utf-8"), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["MOONCAT_TEST_POSTGRES_URL"] = f"postgresql://postgres@127.0.0.1:{_closed_port()}/test"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH", "")]))
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", "-q", str(tmp_path / "test_probe.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )


def test_without_a_server_the_tests_skip_and_say_why(tmp_path: Path) -> None:
    proc = _run_probe(tmp_path, ci=None)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 skipped" in proc.stdout
    assert "no PostgreSQL server answers at postgresql://postgres@127.0.0.1:" in proc.stdout


def test_under_ci_a_missing_server_fails_the_run(tmp_path: Path) -> None:
    proc = _run_probe(tmp_path, ci="1")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 failed" in proc.stdout
    assert "skipped under CI" in proc.stdout and "no PostgreSQL server answers" in proc.stdout
