"""Index every ``.py`` file of the Python standard library, resumably, with Airflow and mooncat-checkpoint.

The same pipeline as ``flows/stdlib_index.py`` (Prefect), with the same keys and results, so a file that
either of them (or a TypeScript job) already indexed is skipped by the other:

- namespace ``stdlib-index``;
- key ``sha256:<64 lowercase hex digits of SHA-256 over the file's raw bytes>``;
- result ``{"functions": F, "classes": C, "imports": I}`` (``def`` and ``async def`` statements, ``class``
  statements, ``import`` and ``from ... import`` statements, all nesting levels), or ``{"error": "..."}``
  for a file that does not parse, which is a finished answer too.

``plan`` lists the files and asks the store, in one batch, which contents are already indexed; only the
rest become mapped ``index_file`` tasks, each claiming its own key (so two runs started together never
index one file twice). ``summarize`` adds up the counts of every file, however it was indexed.

Params: ``root`` (default: the standard library of the worker's Python) and ``limit`` (index only the
first N files). The store comes from the ``mooncat_default`` connection, else the library's resolution.
"""

from __future__ import annotations

import ast
import datetime as dt
import hashlib
import os
import sysconfig
from collections import Counter
from pathlib import Path
from typing import Any

from airflow.sdk import Param, dag, get_current_context, task

NAMESPACE = "stdlib-index"
SKIP_DIRS = {"site-packages", "dist-packages", "__pycache__"}


def content_key(data: bytes) -> str:
    """The shared key scheme: the hash of the bytes, never the path, so copies and renames share it."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def count_definitions(source: bytes) -> dict[str, Any]:
    """Counts for one file; must agree exactly with every other indexer writing this namespace."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError) as exc:  # the stdlib ships deliberately broken test files
        return {"error": f"{type(exc).__name__}: {exc}"}
    kinds = Counter(type(node).__name__ for node in ast.walk(tree))
    return {
        "functions": kinds["FunctionDef"] + kinds["AsyncFunctionDef"],
        "classes": kinds["ClassDef"],
        "imports": kinds["Import"] + kinds["ImportFrom"],
    }


def list_sources(root: Path) -> list[Path]:
    """Every ``.py`` file under ``root`` in a stable order, third-party and cache folders left out."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        found.extend(Path(dirpath, name) for name in sorted(filenames) if name.endswith(".py"))
    return found


@dag(
    dag_id="stdlib_index",
    schedule=None,
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    tags=["mooncat", "example"],
    params={
        "root": Param(None, type=["null", "string"], description="folder to index (default: the stdlib)"),
        "limit": Param(None, type=["null", "integer"], minimum=1, description="index only the first N files"),
    },
)
def stdlib_index() -> None:
    # multiple_outputs=False: these return dicts, which would otherwise be split into one XCom per key.
    @task(multiple_outputs=False)
    def plan() -> dict[str, Any]:
        from mooncat_airflow import CheckpointHook

        params = get_current_context()["params"]
        base = Path(params.get("root") or sysconfig.get_paths()["stdlib"])
        limit = params.get("limit")
        if not base.is_dir():  # else os.walk finds nothing and the run "succeeds" with zero files
            raise ValueError(f"root {str(base)!r} is not a folder")
        if limit is not None and limit < 1:  # a negative slice would drop files from the end instead
            raise ValueError(f"limit must be a positive number of files, got {limit}")
        sources = list_sources(base)[:limit]
        paths_by_key: dict[str, list[str]] = {}
        for source in sources:
            paths_by_key.setdefault(content_key(source.read_bytes()), []).append(str(source))

        hook = CheckpointHook()
        try:
            # An unreadable record is left out: its file's task then reports it, and no other file waits.
            found = hook.get_conn().get_many(NAMESPACE, list(paths_by_key), skip_unreadable=True)
        finally:
            hook.close()
        # Only finished keys are skipped; a claimed or failed one goes to its task, which waits for the
        # holder (or takes an expired lease) or reports the failure.
        done = {key for key, record in found.items() if record.status.value == "done"}
        todo = [
            {"path": paths[0], "digest": key, "name": os.path.relpath(paths[0], base)}
            for key, paths in paths_by_key.items()
            if key not in done
        ]
        print(
            f"{len(sources)} files under {base}, {len(paths_by_key)} distinct contents: "
            f"{len(done)} already indexed, {len(todo)} to index"
        )
        return {"todo": todo, "paths_by_key": paths_by_key, "skipped": len(done)}

    @task
    def work_items(planned: dict[str, Any]) -> list[dict[str, Any]]:
        return list(planned["todo"])

    @task.mooncat(
        namespace=NAMESPACE,
        key="{digest}",
        lease_ms=20_000,
        retries=1,
        retry_delay=dt.timedelta(seconds=5),
        multiple_outputs=False,
        map_index_template="{{ task.op_kwargs['name'] }}",
    )
    def index_file(path: str, digest: str, name: str) -> dict[str, Any]:
        """Parse one file; ``digest`` is its key, ``name`` only labels the mapped task instance."""
        data = Path(path).read_bytes()
        if content_key(data) != digest:
            # Changed since plan listed it: its counts would land under another content's key.
            raise RuntimeError(f"{path} changed while indexing; run again")
        return count_definitions(data)

    @task(trigger_rule="none_failed", multiple_outputs=False)
    def summarize(planned: dict[str, Any]) -> dict[str, Any]:
        from mooncat_airflow import CheckpointHook

        paths_by_key: dict[str, list[str]] = planned["paths_by_key"]
        hook = CheckpointHook()
        try:
            records = hook.get_conn().get_many(NAMESPACE, list(paths_by_key), skip_unreadable=True)
        finally:
            hook.close()
        totals: Counter[str] = Counter()
        unparsable: list[str] = []
        missing = 0
        for key, paths in paths_by_key.items():
            record = records.get(key)
            if record is None or str(getattr(record.status, "value", record.status)) != "done":
                missing += 1
                continue
            counts = record.result or {}
            if "error" in counts:
                unparsable.extend(paths)
                continue
            for field in ("functions", "classes", "imports"):
                totals[field] += int(counts[field]) * len(paths)
        summary = {
            "files": sum(len(paths) for paths in paths_by_key.values()),
            "contents": len(paths_by_key),
            "skipped": planned["skipped"],
            "missing": missing,
            **{field: totals[field] for field in ("functions", "classes", "imports")},
            "unparsable": sorted(unparsable),
        }
        print(
            f"totals: {summary['functions']} functions, {summary['classes']} classes, "
            f"{summary['imports']} import statements; {len(unparsable)} files do not parse"
        )
        return summary

    planned = plan()
    indexed = index_file.expand_kwargs(work_items(planned))
    indexed >> summarize(planned)


stdlib_index()
