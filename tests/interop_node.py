"""Run the TypeScript package `mooncat-checkpoint@0.5.1` from Python tests.

Public API (everything else here is private):

- ``require_node()``: make sure Node, npm and the npm packages are ready, and return the install
  folder. When they cannot be had, the calling test is skipped, except when the environment variable
  ``CI`` is set: there a skipped interop test would hide a broken pipeline, so the test fails.
- ``ts_run(url, ops, cwd=None, env=None)``: run a list of operations through one ``CheckpointClient``
  of the TS package in one Node process, and return one result per operation (records as TS returns
  them: camelCase dicts). ``url=None`` lets TS resolve the store itself (environment, config file,
  default) from ``cwd``; ``env`` adds variables for Node, a ``None`` value removes one. See
  ``tests/interop/driver.mjs`` for the operation names and their arguments.
- ``ts_segments(keys)``: TS's storage segment (``safeKeySegment``) of each key, in one Node call.
- ``TsError``: an operation that threw inside Node. An op with ``"raises": True`` returns its
  ``TsError`` instead of failing the call; any other op that throws makes ``ts_run`` raise it.

The packages are installed with npm into ``<repo>/.interop`` (ignored by git), or into the folder
named by ``MOONCAT_INTEROP_DIR`` so that several test environments can share one install. The first
test session to get there installs them under a file lock; the others wait and reuse the result.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

TS_PACKAGE = "mooncat-checkpoint"
TS_VERSION = "0.5.1"
SQLITE_PACKAGE = "better-sqlite3"
SQLITE_RANGE = "12"
INSTALL_DIR_ENV = "MOONCAT_INTEROP_DIR"

REPO_ROOT = Path(__file__).resolve().parent.parent
DRIVER = Path(__file__).resolve().parent / "interop" / "driver.mjs"

# Building better-sqlite3 from source takes minutes on a small machine; a run never should.
_INSTALL_TIMEOUT_S = 30 * 60
_RUN_TIMEOUT_S = 120

_ready_dir: Path | None = None


class TsError(Exception):
    """An operation that threw inside the TypeScript package."""

    def __init__(self, index: int, op: dict[str, Any], name: str, message: str) -> None:
        super().__init__(f"TS op #{index} {op.get('op')!r} threw {name}: {message}")
        self.index = index
        self.op = op
        self.name = name
        self.message = message


class InteropUnavailable(Exception):
    """Node, npm or the npm packages cannot be had on this machine."""


def install_dir() -> Path:
    configured = os.environ.get(INSTALL_DIR_ENV, "").strip()
    return Path(configured).resolve() if configured else REPO_ROOT / ".interop"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_node() -> Path:
    """Return the folder holding the installed npm packages; skip (or, under CI, fail) without them."""
    global _ready_dir
    if _ready_dir is not None:
        return _ready_dir
    try:
        _ready_dir = _ensure_installed(install_dir())
    except InteropUnavailable as exc:
        if in_ci():
            pytest.fail(f"interop tests must run under CI, but: {exc}", pytrace=False)
        pytest.skip(f"TypeScript interop unavailable: {exc}")
    return _ready_dir


def ts_run(
    url: str | None,
    ops: list[dict[str, Any]],
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str | None] | None = None,
) -> list[Any]:
    """Run `ops` in order against the store at `url` with the TS client; one result per op."""
    answers = _drive({"url": url, "ops": ops}, cwd, env or {})
    results: list[Any] = []
    for index, (op, answer) in enumerate(zip(ops, answers, strict=True)):
        if "error" in answer:
            error = TsError(index, op, answer["error"]["name"], answer["error"]["message"])
            if not op.get("raises"):
                raise error
            results.append(error)
        elif op.get("raises"):
            raise AssertionError(f"TS op #{index} {op!r} was expected to throw, returned {answer['ok']!r}")
        else:
            results.append(answer["ok"])
    return results


def ts_segments(keys: list[str]) -> list[str]:
    """TS's `safeKeySegment` of every key, computed in one Node process."""
    segments = ts_run("memory://", [{"op": "segments", "keys": keys}])[0]
    assert isinstance(segments, list)
    return segments


# ---- running the driver ----


def _drive(request: dict[str, Any], cwd: str | os.PathLike[str] | None, env: Mapping[str, str | None]) -> list[Any]:
    folder = require_node()
    node_env = {name: value for name, value in os.environ.items() if name not in env}
    node_env.update({name: value for name, value in env.items() if value is not None})
    # ensure_ascii: lone surrogates and odd code points travel as escapes, never as raw bytes.
    payload = json.dumps(request, ensure_ascii=True)
    proc = subprocess.run(
        ["node", str(DRIVER), str(folder)],
        input=payload.encode("ascii"),
        cwd=cwd,
        env=node_env,
        capture_output=True,
        timeout=_RUN_TIMEOUT_S,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"node driver exited with {proc.returncode}:\n{proc.stderr.decode('utf-8', 'replace')}"
        )
    answers = json.loads(proc.stdout.decode("utf-8"))
    if not isinstance(answers, list) or len(answers) != len(request["ops"]):
        raise RuntimeError(f"node driver answered {len(answers)} results for {len(request['ops'])} ops")
    return answers


# ---- installing the packages ----


def _ensure_installed(folder: Path) -> Path:
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            raise InteropUnavailable(f"`{tool}` is not on PATH")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InteropUnavailable(f"cannot create {folder}: {exc}") from None
    # One installer at a time; the others wait here and then find the packages ready.
    with _FileLock(folder / ".install.lock"):
        if not _installed(folder):
            _install(folder)
        if not _sqlite_loads(folder):
            # The install may have skipped or lost the native build (scripts disabled, another Node).
            _npm(folder, ["rebuild", SQLITE_PACKAGE])
            if not _sqlite_loads(folder):
                raise InteropUnavailable(f"{SQLITE_PACKAGE} in {folder} does not load after `npm rebuild`")
    return folder


def _installed(folder: Path) -> bool:
    modules = folder / "node_modules"
    try:
        ts = json.loads((modules / TS_PACKAGE / "package.json").read_text("utf-8"))
        sqlite = json.loads((modules / SQLITE_PACKAGE / "package.json").read_text("utf-8"))
    except (OSError, ValueError):
        return False
    return ts.get("version") == TS_VERSION and str(sqlite.get("version", "")).startswith(SQLITE_RANGE + ".")


def _install(folder: Path) -> None:
    manifest = {"name": "mooncat-checkpoint-interop", "version": "0.0.0", "private": True}
    (folder / "package.json").write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
    _npm(folder, ["install", "--no-save", f"{TS_PACKAGE}@{TS_VERSION}", f"{SQLITE_PACKAGE}@{SQLITE_RANGE}"])
    if not _installed(folder):
        raise InteropUnavailable(f"npm install in {folder} did not leave {TS_PACKAGE}@{TS_VERSION}")


def _npm(folder: Path, args: list[str]) -> None:
    # node-gyp reads JOBS: build the native module on every core instead of one.
    env = {**os.environ, "JOBS": os.environ.get("JOBS", "max")}
    try:
        proc = subprocess.run(
            ["npm", *args], cwd=folder, env=env, capture_output=True, timeout=_INSTALL_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InteropUnavailable(f"`npm {' '.join(args)}` did not finish: {exc}") from None
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-15:]
        raise InteropUnavailable(f"`npm {' '.join(args)}` failed ({proc.returncode}):\n" + "\n".join(tail))


def _sqlite_loads(folder: Path) -> bool:
    probe = f"const D = require({SQLITE_PACKAGE!r}); new D(':memory:').prepare('select 1').get();"
    proc = subprocess.run(["node", "-e", probe], cwd=folder, capture_output=True, timeout=60, check=False)
    return proc.returncode == 0


class _FileLock:
    """An exclusive lock on a file, held across processes (advisory, POSIX); a no-op elsewhere."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> _FileLock:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return self
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)  # closing the descriptor releases the lock
        self.fd = -1
