"""Index every ``.py`` file of the Python standard library, resumably, with Prefect and mooncat-checkpoint.

Each file is parsed with ``ast`` and its functions, classes and import statements are counted; the counts of all
files are then added up. Work is checkpointed per file *content*, so a rerun skips every file already indexed, an
interrupted run resumes where it stopped, and identical files (the many empty ``__init__.py``) are indexed once.

Run it (no Prefect server to start: Prefect runs in its ephemeral mode)::

    python flows/stdlib_index.py                     # the running Python's stdlib, default store
    python flows/stdlib_index.py --root DIR --url sqlite://./index.db

Key scheme (shared with the Airflow DAG and TypeScript jobs, so any of them can finish a file for the others):

- namespace: ``stdlib-index``
- key: ``sha256:`` followed by the 64 lowercase hex digits of SHA-256 over the file's raw bytes
  (no path, no decoding, no newline normalisation), e.g. ``sha256:e3b0c442...b855`` for an empty file.
- result (inline JSON): ``{"functions": F, "classes": C, "imports": I}`` where F counts ``def`` and
  ``async def`` statements (methods and nested functions included), C counts ``class`` statements and I counts
  ``import`` and ``from ... import`` statements; a file that does not parse gives ``{"error": "<message>"}``
  (that is a finished answer too, not a failure to retry).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

# A first run creates Prefect's local database, which takes longer than Prefect's default wait for its
# ephemeral server on a small machine. Set before Prefect reads its settings.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
# The temporary server's own errors (telemetry it cannot send offline, events it had not flushed when it is
# stopped at exit) are about Prefect's bookkeeping, not this run's results; set the variable to see them.
os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")

from mooncat_checkpoint import Checkpoint, CheckpointClient, CheckpointError, Status
from mooncat_prefect import checkpoint_task, count_skipped
from prefect import flow, task
from prefect.task_runners import ThreadPoolTaskRunner

NAMESPACE = "stdlib-index"
SKIP_DIRS = {"site-packages", "dist-packages", "__pycache__"}


def content_key(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def count_definitions(source: bytes) -> dict[str, Any]:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError) as exc:  # the stdlib ships deliberately broken test files
        return {"error": f"{type(exc).__name__}: {exc}"}
    counts = Counter(type(node).__name__ for node in ast.walk(tree))
    return {
        "functions": counts["FunctionDef"] + counts["AsyncFunctionDef"],
        "classes": counts["ClassDef"],
        "imports": counts["Import"] + counts["ImportFrom"],
    }


@checkpoint_task(namespace=NAMESPACE, key="{digest}", lease_ms=20_000, retries=1, task_run_name="index {name}")
def index_file(path: str, digest: str, name: str) -> dict[str, Any]:
    """Parse one file. ``digest`` is its key; ``name`` only labels the task run."""
    data = Path(path).read_bytes()
    if content_key(data) != digest:
        # The file changed since it was listed: its counts would be filed under another content's key.
        raise RuntimeError(f"{path} changed while indexing; run again")
    return count_definitions(data)


def list_sources(root: Path) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        files.extend(Path(dirpath, f) for f in sorted(filenames) if f.endswith(".py"))
    return files


@task
def aggregate(per_file: dict[str, dict[str, Any]], paths_by_key: dict[str, list[str]]) -> dict[str, Any]:
    totals = Counter[str]()
    unparsable = []
    for key, counts in per_file.items():
        copies = len(paths_by_key[key])
        if "error" in counts:
            unparsable.extend(paths_by_key[key])
            continue
        for field in ("functions", "classes", "imports"):
            totals[field] += counts[field] * copies
    return {
        "files": sum(len(p) for p in paths_by_key.values()),
        **{field: totals[field] for field in ("functions", "classes", "imports")},  # zero when nothing parsed
        "unparsable": sorted(unparsable),
    }


@flow(name="stdlib-index", task_runner=ThreadPoolTaskRunner(max_workers=8), log_prints=True)
def stdlib_index(root: str | None = None, url: str | None = None, limit: int | None = None) -> dict[str, Any]:
    base = Path(root or sysconfig.get_paths()["stdlib"])
    if not base.is_dir():  # else os.walk finds nothing and the run "succeeds" with zero files
        raise ValueError(f"root {str(base)!r} is not a folder")
    if limit is not None and limit < 1:  # a negative slice would drop files from the end instead
        raise ValueError(f"limit must be a positive number of files, got {limit}")
    sources = list_sources(base)[:limit]
    paths_by_key: dict[str, list[str]] = {}
    for source in sources:
        paths_by_key.setdefault(content_key(source.read_bytes()), []).append(str(source))

    # One batch read tells which contents are already indexed; only the rest become task runs. Those still
    # claim their key, so two runs started together do not index the same file twice.
    client = CheckpointClient(url)
    done = finished(client, list(paths_by_key))
    per_file = {key: record.result for key, record in done.items()}
    todo = [key for key in paths_by_key if key not in done]

    indexer = index_file.with_options(url=client.shareable_url)
    count_skipped(indexer, len(done))  # in the run's summary artifact, beside the task runs that ran
    futures = indexer.map(
        path=[paths_by_key[key][0] for key in todo],
        digest=todo,
        name=[os.path.relpath(paths_by_key[key][0], base) for key in todo],
    )
    failed = waited = 0
    for key, future in zip(todo, futures, strict=True):
        future.wait()
        state = future.state
        if state.is_completed():
            per_file[key] = future.result()
            waited += state.name == "Cached"  # another run held the key and finished it meanwhile
        else:
            failed += 1
    indexed, skipped = len(todo) - failed - waited, len(done) + waited

    summary = aggregate(per_file, {key: paths_by_key[key] for key in per_file})
    print(
        f"{len(sources)} files under {base} ({len(paths_by_key)} distinct contents): "
        f"{indexed} indexed now, {skipped} skipped (already done), {failed} failed; "
        f"store {client.url}"
    )
    print(
        f"totals: {summary['functions']} functions, {summary['classes']} classes, "
        f"{summary['imports']} import statements; {len(summary['unparsable'])} files do not parse"
    )
    return {**summary, "indexed": indexed, "skipped": skipped, "failed": failed}


def finished(client: CheckpointClient, keys: list[str]) -> dict[str, Checkpoint]:
    """The done records among `keys`, in one read. Claimed and failed keys are not finished: their task runs
    wait for the holder (or take an expired lease) or report the failure. An unreadable record must not stop
    every other file, nor count as done: its key becomes a task run, whose claim reports it (with the doctor
    command that repairs it), and the run ends with it counted as failed."""
    found = client.get_many(NAMESPACE, keys, skip_unreadable=True)
    return {key: record for key, record in found.items() if record.status is Status.DONE}


EXIT_GRACE_S = 10.0
INTERRUPTED = "interrupted: files already indexed stay done; run the same command again to finish the rest"
_told = threading.Event()


def _tell_interrupted() -> None:
    if not _told.is_set():
        _told.set()
        # Output piped into a program the same Ctrl-C ended is gone: the exit must not depend on it.
        with contextlib.suppress(OSError, ValueError):
            print(INTERRUPTED, file=sys.stderr, flush=True)


def _on_interrupt(signum: int, frame: Any) -> None:
    """Ctrl-C in a terminal also stops Prefect's ephemeral server, which shares the process group; Prefect
    then retries its calls to that server, and its exit hooks wait to hand it their last logs. So the
    first Ctrl-C also starts a watchdog that ends the process after a grace period, whatever is waiting.
    Claims of task runs cut off by the interrupt are given back as it unwinds; any the grace period cuts
    short expire with their lease."""
    if not _told.is_set():
        threading.Thread(target=_exit_after_grace, name="exit-watchdog", daemon=True).start()
    signal.default_int_handler(signum, frame)


def _exit_after_grace() -> None:
    time.sleep(EXIT_GRACE_S)
    try:
        _tell_interrupted()
        _stop_temporary_servers()
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()
    finally:
        os._exit(130)


def _stop_temporary_servers() -> None:
    """`os._exit` skips Prefect's exit hook that stops its ephemeral server; a server still draining after
    the same Ctrl-C would outlive the run and keep its port and the terminal's output, so stop it here."""
    try:
        from prefect.server.api.server import SubprocessASGIServer

        servers = [server.server_process for server in SubprocessASGIServer._instances.values()]
    except (ImportError, AttributeError):  # another Prefect layout: nothing of ours to stop
        return
    for process in servers:
        if process is None or process.poll() is not None:
            continue
        process.terminate()
        try:
            process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            process.kill()


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", help="folder to index (default: this Python's standard library)")
    parser.add_argument("--url", help="checkpoint store URL (default: MOONCAT_CHECKPOINT_URL, config file, "
                                      "else file://./.mooncat/checkpoints)")
    parser.add_argument("--limit", type=_positive_int, help="index only the first N files (a quick demo)")
    args = parser.parse_args(argv)
    # Checked before Prefect starts: a bad store URL or folder is one line, not a failed flow run.
    if args.root is not None and not Path(args.root).is_dir():
        print(f"stdlib_index: error: --root {args.root!r} is not a folder", file=sys.stderr)
        return 2
    try:
        with CheckpointClient(args.url) as client:
            client.namespaces()  # opens the store: not a database, no server, a missing extra
            if client.location.scheme == "memory":
                print("stdlib_index: error: memory:// keeps nothing after the run, so nothing could be resumed; "
                      "use a file, sqlite or postgresql store", file=sys.stderr)
                return 2
    except CheckpointError as exc:
        print(f"stdlib_index: error: {exc}", file=sys.stderr)
        return 2
    if threading.current_thread() is threading.main_thread():
        # `kill` (SIGTERM) ends the run as Ctrl-C does: claims given back, Prefect's server stopped.
        signal.signal(signal.SIGINT, _on_interrupt)
        signal.signal(signal.SIGTERM, _on_interrupt)
    started = time.monotonic()
    try:
        result = stdlib_index(root=args.root, url=args.url, limit=args.limit)
    except KeyboardInterrupt:
        _tell_interrupted()
        return 130
    print(f"finished in {time.monotonic() - started:.1f}s")
    return 1 if result["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
