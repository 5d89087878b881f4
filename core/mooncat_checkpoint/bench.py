"""`mooncat-checkpoint bench`: measure what a store costs per operation, in one namespace of its own.

Every workload runs on keys `k0 .. k<N-1>` of the bench namespace, which must be empty at the start
(or cleared with --force) and is emptied again at the end, also after an error or Ctrl-C. A store that
did not exist before the bench (a folder, a SQLite file, a PostgreSQL schema or table) is removed again at
the end, if it then holds nothing; what existed before is never removed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .client import CheckpointClient
from .config import StoreLocation
from .errors import InvalidArgumentError
from .keys import check_namespace
from .protocol import Checkpoint

DEFAULT_N = 2000
DEFAULT_PROCESSES = 4
DEFAULT_NAMESPACE = "mooncat-bench"
WORKLOADS = ("cycle", "rerun", "get_many", "claim_many", "list", "gc", "disjoint", "overlap")
LONG_LEASE_MS = 600_000
PROGRESS_SECONDS = 0.5


@dataclass
class Measurement:
    name: str
    ops: int
    seconds: float
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def per_second(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else float("inf")

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "per_second": round(self.per_second, 1)}


def key_of(index: int) -> str:
    return f"k{index}"


class Progress:
    """A one-line counter on stderr, redrawn at most twice a second; silent when disabled."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._label = ""
        self._total = 0
        self._shown = 0.0

    @contextmanager
    def phase(self, label: str, total: int) -> Iterator[Callable[[int], None]]:
        self._label, self._total, self._shown = label, total, 0.0
        self._draw(0, force=True)
        try:
            yield self.update
        finally:
            if self.enabled:
                print(f"\r{label}: done{' ' * 24}", file=sys.stderr, flush=True)

    def update(self, done: int) -> None:
        self._draw(done)

    def _draw(self, done: int, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if force or now - self._shown >= PROGRESS_SECONDS:
            self._shown = now
            print(f"\r{self._label}: {done:,}/{self._total:,}", end="", file=sys.stderr, flush=True)


def _no_progress(done: int) -> None:
    pass


# ---- workloads; each returns the seconds its measured part took ----


def fill_done(client: CheckpointClient, ns: str, n: int, tick: Callable[[int], None] = _no_progress) -> float:
    """claim + done for every key: the cycle a first run pays per task."""
    started = time.perf_counter()
    for index in range(n):
        key = key_of(index)
        claim = client.claim(ns, key, lease_ms=LONG_LEASE_MS)
        if claim.kind != "claimed":
            raise RuntimeError(f"bench key {ns}/{key} was {claim.kind}, expected an empty namespace")
        client.done(ns, key, claim.lease_token or "", result={"i": index})
        if index % 256 == 0:
            tick(index)
    return time.perf_counter() - started


def rerun_claims(client: CheckpointClient, ns: str, n: int, tick: Callable[[int], None] = _no_progress) -> float:
    """claim on keys that are done: what a rerun pays per finished task."""
    started = time.perf_counter()
    for index in range(n):
        if client.claim(ns, key_of(index)).kind != "done":
            raise RuntimeError(f"bench key {ns}/{key_of(index)} is not done")
        if index % 1024 == 0:
            tick(index)
    return time.perf_counter() - started


def batch_get(client: CheckpointClient, ns: str, n: int) -> float:
    keys = [key_of(index) for index in range(n)]
    started = time.perf_counter()
    found = client.get_many(ns, keys)
    seconds = time.perf_counter() - started
    if len(found) != n:
        raise RuntimeError(f"get_many found {len(found)} of {n} done keys")
    return seconds


def batch_claim(client: CheckpointClient, ns: str, n: int) -> float:
    keys = [key_of(index) for index in range(n)]
    started = time.perf_counter()
    answers = client.claim_many(ns, keys)
    seconds = time.perf_counter() - started
    if sum(1 for a in answers.values() if a.kind == "done") != n:
        raise RuntimeError("claim_many did not answer `done` for every done key")
    return seconds


def list_all(client: CheckpointClient, ns: str, n: int) -> float:
    started = time.perf_counter()
    records = client.list(ns)
    seconds = time.perf_counter() - started
    if len(records) != n:
        raise RuntimeError(f"list returned {len(records)} of {n} records")
    return seconds


def fill_expired(client: CheckpointClient, ns: str, n: int, tick: Callable[[int], None] = _no_progress) -> None:
    for index in range(n):
        client.claim(ns, key_of(index), lease_ms=1)
        if index % 256 == 0:
            tick(index)
    time.sleep(0.005)  # every lease has now ended


def collect_expired(client: CheckpointClient, ns: str, n: int) -> float:
    started = time.perf_counter()
    removed = client.gc(namespace=ns)
    seconds = time.perf_counter() - started
    if removed != n:
        raise RuntimeError(f"gc removed {removed} of {n} expired claims")
    return seconds


# ---- processes ----


def _worker(url: str, durability: str, ns: str, keys: list[str], gate: Any, out: Any) -> None:
    try:
        with CheckpointClient(url, durability=durability) as client:  # type: ignore[arg-type]
            client.get(ns, keys[0])  # open the store before the clock starts
            gate.wait()
            wins = 0
            for key in keys:
                claim = client.claim(ns, key, lease_ms=LONG_LEASE_MS)
                if claim.kind == "claimed":
                    client.done(ns, key, claim.lease_token or "", result={"by": "bench"})
                    wins += 1
            out.put(("ok", wins, time.perf_counter()))
    except BaseException as exc:  # reported to the parent, which stops with it
        out.put(("error", f"{type(exc).__name__}: {exc}", 0.0))


def run_processes(url: str, durability: str, ns: str, key_sets: list[list[str]]) -> tuple[float, int]:
    """One process per key set, released together by a barrier; returns (seconds, total wins)."""
    context = multiprocessing.get_context("spawn")
    gate = context.Barrier(len(key_sets) + 1)
    out = context.Queue()
    procs = [context.Process(target=_worker, args=(url, durability, ns, keys, gate, out)) for keys in key_sets]
    for proc in procs:
        proc.start()
    try:
        gate.wait(timeout=120)
        started = time.perf_counter()
        reports = [out.get(timeout=3600) for _ in procs]
    except BaseException:
        # Ctrl-C or a stuck worker: stop the others now, so cleanup does not race their writes.
        for proc in procs:
            proc.terminate()
        raise
    finally:
        for proc in procs:
            proc.join(60)
            if proc.is_alive():
                proc.kill()
                proc.join(10)
    errors = [str(detail) for status, detail, _ in reports if status == "error"]
    if errors:
        raise RuntimeError("a bench process failed: " + "; ".join(errors))
    finished = max(end for _, _, end in reports)
    return finished - started, sum(int(wins) for _, wins, _ in reports)


# ---- the command ----


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=DEFAULT_N, help=f"records per workload (default {DEFAULT_N})")
    parser.add_argument("--processes", type=int, default=DEFAULT_PROCESSES,
                        help=f"processes for the concurrent workloads (default {DEFAULT_PROCESSES}; 0 skips them)")
    parser.add_argument("--namespace", default=DEFAULT_NAMESPACE,
                        help=f"namespace to work in, emptied afterwards (default {DEFAULT_NAMESPACE})")
    parser.add_argument("--force", action="store_true",
                        help="use the namespace even if it has records: they are DELETED first")
    parser.add_argument("--durability", choices=("full", "fast"), default="full",
                        help="full: done/fail synced to disk (default); fast: no syncs, as the TypeScript package")
    parser.add_argument("--only", metavar="W[,W..]", help=f"run only these workloads: {', '.join(WORKLOADS)}")
    parser.add_argument("--progress", action="store_true", help="progress on stderr even when it is not a terminal")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")


def _options(args: argparse.Namespace) -> tuple[int, int, str, list[str]]:
    n, processes = args.n, args.processes
    if not isinstance(n, int) or n <= 0:
        raise InvalidArgumentError(f"--n must be a positive number of records, got {n}")
    if processes < 0:
        raise InvalidArgumentError(f"--processes must be >= 0, got {processes}")
    ns = check_namespace(args.namespace)
    wanted = list(WORKLOADS) if not args.only else [w.strip() for w in args.only.split(",") if w.strip()]
    unknown = [w for w in wanted if w not in WORKLOADS]
    if unknown:
        raise InvalidArgumentError(
            f"--only: unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}"
        )
    return n, processes, ns, wanted


def clear_namespace(client: CheckpointClient, ns: str) -> int:
    """Delete every record of the namespace (readable or not) and, for a file store, its folder."""
    removed = 0
    for item in client.scan(ns):
        if isinstance(item, Checkpoint):
            removed += client.reset(ns, item.key)
        else:
            client.quarantine(item)
    if client.location.scheme == "file":
        folder = Path(client.location.path) / ns
        client.close()  # release the namespace's lock file before removing it
        _remove_empty_namespace(folder)
    return removed


def _remove_empty_namespace(folder: Path) -> None:
    try:
        leftovers = [p for p in folder.iterdir() if p.name != ".lock"]
    except FileNotFoundError:
        return
    if not leftovers:
        (folder / ".lock").unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # another client created something meanwhile: leave it
            folder.rmdir()


def _first_missing(path: Path) -> Path | None:
    """The highest folder or file on the way to `path` that does not exist: what opening it would create."""
    missing = None
    for candidate in (path, *path.parents):
        if candidate.exists():
            break
        missing = candidate
    return missing


def _remove_empty_tree(top: Path) -> None:
    """Remove `top` and the folders under it, bottom up, as long as each holds nothing but a lock file."""
    if not top.is_dir():
        return
    for folder, _, files in os.walk(top, topdown=False):
        here = Path(folder)
        if files == [".lock"]:
            (here / ".lock").unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # not empty: someone else's records, kept
            here.rmdir()


def created_store_remover(location: StoreLocation) -> Callable[[], None] | None:
    """Looked at before the bench opens the store: how to remove the store afterwards if the bench is what
    creates it, or None when it exists already (or lives in memory)."""
    if location.scheme == "file":
        top = _first_missing(Path(location.path))
        return None if top is None else lambda: _remove_empty_tree(top)
    if location.scheme == "sqlite":
        database = Path(location.path)
        if database.exists():
            return None
        folders = _first_missing(database.parent)

        def remove_database() -> None:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{database}{suffix}").unlink(missing_ok=True)
            if folders is not None:
                _remove_empty_tree(folders)

        return remove_database
    if location.scheme == "postgresql":
        try:
            from .backends import postgres
        except ImportError:
            return None  # opening the store names the missing extra
        schema_existed, table_existed = postgres.store_parts(location.url)
        if table_existed:
            return None

        def remove_tables() -> None:
            postgres.drop_empty_store(location.url, with_schema=not schema_existed)

        return remove_tables
    return None


def run(args: argparse.Namespace) -> int:
    n, processes, ns, wanted = _options(args)
    client = CheckpointClient(args.url, durability=args.durability)
    remove_created = created_store_remover(client.location)
    empty_at_end = False
    try:  # closed on every way out: a PostgreSQL pool left to the garbage collector complains from its thread
        progress = Progress(not args.quiet and (args.progress or sys.stderr.isatty()))
        if processes > 0 and client.location.scheme == "memory" and {"disjoint", "overlap"} & set(wanted):
            print("mooncat-checkpoint: note: memory:// lives in one process; the multi-process workloads are "
                  "skipped", file=sys.stderr)
            processes = 0
        if any(True for _ in client.scan(ns)):
            if not args.force:
                print(f"mooncat-checkpoint: error: namespace {ns!r} of {client.url} already has records; "
                      "pass --force to delete them and run, or choose another --namespace", file=sys.stderr)
                return 2
            clear_namespace(client, ns)
        results: list[Measurement] = []
        try:
            results = measure(client, ns, n, processes, wanted, progress, args.durability)
        finally:
            with progress.phase("cleaning up", 1):
                clear_namespace(client, ns)
            # A store the bench created is removed only if nobody else wrote to it meanwhile.
            empty_at_end = not client.namespaces()
    finally:
        client.close()
        if remove_created is not None and empty_at_end:
            remove_created()
    report(args, client, args.durability, n, processes, results)
    return 0


def measure(client: CheckpointClient, ns: str, n: int, processes: int, wanted: list[str],
            progress: Progress, durability: str = "full") -> list[Measurement]:
    results: list[Measurement] = []
    needs_done = {"cycle", "rerun", "get_many", "claim_many", "list"}
    if needs_done & set(wanted):
        with progress.phase("claim+done", n) as tick:
            seconds = fill_done(client, ns, n, tick)
        if "cycle" in wanted:
            results.append(Measurement("claim+done cycle", n, seconds))
        if "rerun" in wanted:
            with progress.phase("claim on done keys", n) as tick:
                results.append(Measurement("claim on a done key (rerun)", n, rerun_claims(client, ns, n, tick)))
        if "get_many" in wanted:
            results.append(Measurement(f"get_many of {n} done keys (1 call)", n, batch_get(client, ns, n)))
        if "claim_many" in wanted:
            results.append(Measurement(f"claim_many of {n} done keys (1 call)", n, batch_claim(client, ns, n)))
        if "list" in wanted:
            results.append(Measurement(f"list of {n} records", n, list_all(client, ns, n)))
        with progress.phase("clearing", 1):
            clear_namespace(client, ns)
    if "gc" in wanted:
        with progress.phase("expired claims for gc", n) as tick:
            fill_expired(client, ns, n, tick)
        results.append(Measurement(f"gc of {n} expired claims", n, collect_expired(client, ns, n)))
        clear_namespace(client, ns)
    concurrent = [w for w in ("disjoint", "overlap") if w in wanted]
    if concurrent and processes > 0 and client.location.scheme != "memory":
        keys = [key_of(index) for index in range(n)]
        url = client.shareable_url
        if "disjoint" in wanted:
            with progress.phase(f"{processes} processes, disjoint keys", n):
                key_sets = [keys[i::processes] for i in range(processes)]
                seconds, wins = run_processes(url, durability, ns, key_sets)
            results.append(Measurement(f"{processes} processes claim+done, disjoint keys", wins, seconds,
                                       {"keys": n, "wins": wins}))
            clear_namespace(client, ns)
        if "overlap" in wanted:
            with progress.phase(f"{processes} processes, the same keys", n):
                seconds, wins = run_processes(url, durability, ns, [keys] * processes)
            if wins != n:
                raise RuntimeError(f"{wins} wins over {n} keys: a key was claimed twice or never")
            results.append(Measurement(f"{processes} processes claim+done, same keys", n, seconds,
                                       {"keys": n, "attempts": n * processes, "wins": wins}))
            clear_namespace(client, ns)
    return results


def report(args: argparse.Namespace, client: CheckpointClient, durability: str, n: int, processes: int,
           results: list[Measurement]) -> None:
    if args.json:
        print(json.dumps({"url": client.url, "durability": durability, "n": n, "processes": processes,
                          "python": sys.version.split()[0], "results": [m.as_json() for m in results]}, indent=2))
        return
    print(f"store {client.url}  durability={durability}  n={n}  processes={processes}")
    width = max([len(m.name) for m in results] + [8])
    print(f"{'workload':<{width}}  {'ops':>9}  {'seconds':>9}  {'ops/s':>12}")
    for m in results:
        print(f"{m.name:<{width}}  {m.ops:>9,}  {m.seconds:>9.3f}  {m.per_second:>12,.0f}")
