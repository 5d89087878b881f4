"""Side-by-side throughput of this package and the npm package mooncat-checkpoint 0.5.1, in one run, on one disk.

    PYTHONPATH=core python benchmarks/peer_compare.py [--n 1000] [--batch 10000] [--rounds 3] [--json]

Every comparison runs its rounds alternately (TypeScript, then Python) in fresh stores under --dir, and
keeps each side's best round, so a burst of load from elsewhere on the machine hurts one round, not a side.
Records a workload needs beforehand (done keys for the rerun, expired claims for gc) are written by this
package in the shared format and read by both sides; only the workload itself is timed.
The npm packages come from the folder the test sessions install them into (`MOONCAT_INTEROP_DIR`, by default
`~/.cache/mooncat-checkpoint/interop-0.5.1`); if they are missing they are installed there first, through the
test helper (tests/interop_node.py) or, without pytest, by plain `npm install`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "core"))

from mooncat_checkpoint import CheckpointClient  # noqa: E402
from mooncat_checkpoint.bench import (  # noqa: E402
    batch_claim,
    batch_get,
    collect_expired,
    fill_done,
    fill_expired,
    list_all,
    rerun_claims,
)

NODE_SCRIPT = Path(__file__).resolve().parent / "peer_bench.mjs"
NAMESPACE = "bench"
TS_VERSION = "0.5.1"


# ---- the peer ----


def default_install_dir() -> Path:
    """The folder the test sessions install the npm peer into (see noxfile.py), so one install serves both."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "mooncat-checkpoint" / f"interop-{TS_VERSION}"


def peer_modules() -> Path:
    """node_modules holding mooncat-checkpoint 0.5.1 and a working better-sqlite3."""
    if not os.environ.get("MOONCAT_INTEROP_DIR", "").strip():
        os.environ["MOONCAT_INTEROP_DIR"] = str(default_install_dir())
    folder = Path(os.environ["MOONCAT_INTEROP_DIR"])
    try:
        sys.path.insert(0, str(REPO / "tests"))
        import interop_node

        folder = interop_node.require_node()
    except ImportError:
        _npm_install(folder)
    except BaseException as exc:  # the helper skips a test when Node is missing; here that is fatal
        raise SystemExit(f"the TypeScript package cannot be installed: {exc}") from None
    return folder / "node_modules"


def _npm_install(folder: Path) -> None:
    if (folder / "node_modules" / "mooncat-checkpoint" / "package.json").exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "package.json").exists():
        (folder / "package.json").write_text('{"name": "peer-bench", "private": true}\n', "utf-8")
    subprocess.run(["npm", "install", "--no-save", f"mooncat-checkpoint@{TS_VERSION}", "better-sqlite3@12"],
                   cwd=folder, check=True)
    subprocess.run(["npm", "rebuild", "better-sqlite3"], cwd=folder, check=True)


def ts_rate(modules: Path, url: str, workload: str, n: int, prefilled: bool) -> float:
    command = ["node", str(NODE_SCRIPT), "--url", url, "--n", str(n), "--workload", workload,
               "--namespace", NAMESPACE, "--prefilled", "1" if prefilled else "0"]
    proc = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "MOONCAT_PEER_MODULES":
                                                                          str(modules)}, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"node {workload} failed: {proc.stderr.strip()[-800:]}")
    result = json.loads(proc.stdout)
    if result["ops"] != n:
        raise RuntimeError(f"node {workload}: {result['ops']} operations, expected {n}")
    if workload == "rerun" and result.get("done") != n:
        raise RuntimeError(f"node rerun: {result.get('done')} of {n} claims answered done")
    return float(result["perSecond"])


# ---- our side ----

Workload = Callable[[CheckpointClient, str, int], float]


def ours_rate(url: str, durability: str, workload: str, n: int) -> float:
    with CheckpointClient(url, durability=durability) as client:  # type: ignore[arg-type]
        client.get(NAMESPACE, "k0")  # open the store first: the Node side opens it before its clock starts
        return n / OURS[workload](client, NAMESPACE, n)


OURS: dict[str, Workload] = {
    "cycle": lambda c, ns, n: fill_done(c, ns, n),
    "rerun": lambda c, ns, n: rerun_claims(c, ns, n),
    "get_many": batch_get,
    "claim_many": batch_claim,
    "list": list_all,
    "gc": collect_expired,
}


def prefill(url: str, workload: str, n: int) -> None:
    """Write what a workload reads, through the same calls a first run makes (no syncs: setup is untimed)."""
    with CheckpointClient(url, durability="fast") as client:
        if workload == "gc":
            fill_expired(client, NAMESPACE, n)
        elif workload != "cycle":
            fill_done(client, NAMESPACE, n)


# ---- comparisons ----


@dataclass
class Side:
    label: str
    impl: str  # "ts" or "py"
    workload: str
    durability: str = "full"


@dataclass
class Comparison:
    name: str
    scheme: str
    ours: Side
    theirs: Side
    n_key: str  # "n" or "batch"
    target: float | None
    ours_rate: float = 0.0
    theirs_rate: float = 0.0

    @property
    def ratio(self) -> float:
        return self.ours_rate / self.theirs_rate if self.theirs_rate else float("inf")


def comparisons() -> list[Comparison]:
    ts = lambda w: Side("TS 0.5.1", "ts", w)  # noqa: E731
    py = lambda w, d="full": Side(f"ours ({d})", "py", w, d)  # noqa: E731
    return [
        Comparison("SQLite claim+done, ours full vs TS", "sqlite", py("cycle"), ts("cycle"), "n", 0.6),
        Comparison("SQLite claim+done, ours fast vs TS", "sqlite", py("cycle", "fast"), ts("cycle"), "n", 1.5),
        Comparison("SQLite claim on a done key", "sqlite", py("rerun"), ts("rerun"), "batch", 4.0),
        Comparison("File claim on a done key", "file", py("rerun"), ts("rerun"), "batch", 1.0),
        Comparison("File claim+done, ours full vs TS", "file", py("cycle"), ts("cycle"), "n", 0.5),
        Comparison("File claim+done, ours fast vs TS", "file", py("cycle", "fast"), ts("cycle"), "n", 1.0),
        Comparison("SQLite get_many vs our single claims", "sqlite", py("get_many"), py("rerun"), "batch", 20.0),
        Comparison("SQLite claim_many vs our single claims", "sqlite", py("claim_many"), py("rerun"), "batch", 20.0),
        Comparison("File get_many vs our single claims", "file", py("get_many"), py("rerun"), "batch", 20.0),
        Comparison("File claim_many vs our single claims", "file", py("claim_many"), py("rerun"), "batch", 20.0),
        Comparison("SQLite get_many vs TS single claims", "sqlite", py("get_many"), ts("rerun"), "batch", None),
        Comparison("File get_many vs TS single claims", "file", py("get_many"), ts("rerun"), "batch", None),
        Comparison("SQLite list", "sqlite", py("list"), ts("list"), "batch", None),
        Comparison("File list", "file", py("list"), ts("list"), "batch", None),
        Comparison("SQLite gc", "sqlite", py("gc"), ts("gc"), "batch", None),
        Comparison("File gc", "file", py("gc"), ts("gc"), "batch", None),
    ]


def run_side(side: Side, scheme: str, n: int, workdir: Path, modules: Path) -> float:
    store = Path(tempfile.mkdtemp(prefix=f"{side.impl}-{side.workload}-", dir=workdir))
    url = f"{scheme}://{store / ('cp.db' if scheme == 'sqlite' else 'cp')}"
    try:
        if side.workload != "cycle":
            prefill(url, side.workload, n)
        if side.impl == "ts":
            return ts_rate(modules, url, side.workload, n, prefilled=side.workload != "cycle")
        return ours_rate(url, side.durability, side.workload, n)
    finally:
        shutil.rmtree(store, ignore_errors=True)


# ---- the machine ----


def fsync_rate(directory: Path, count: int = 200) -> float:
    """Syncs per second of a one-byte write: the ceiling on durable commits on this disk."""
    path = directory / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        started = time.perf_counter()
        for _ in range(count):
            os.write(fd, b"x")
            os.fsync(fd)
        return count / (time.perf_counter() - started)
    finally:
        os.close(fd)
        path.unlink()


def filesystem_of(path: Path) -> str:
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) >= 3 and str(path).startswith(fields[1]) and len(fields[1]) > len(best):
                    best, kind = fields[1], f"{fields[2]} ({fields[0]} on {fields[1]})"
    except OSError:
        pass
    return kind


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(workdir: Path, modules: Path) -> dict[str, Any]:
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    probe = "console.log(new (require('better-sqlite3'))(':memory:').prepare('select sqlite_version() v').get().v)"
    ts_sqlite = subprocess.run(["node", "-e", probe], cwd=modules.parent, capture_output=True, text=True,
                               check=False).stdout.strip()
    return {
        "cpu": cpu_model(), "cores": os.cpu_count(), "os": platform.platform(),
        "filesystem": filesystem_of(workdir.resolve()), "python": platform.python_version(),
        "python_sqlite": sqlite3.sqlite_version, "node": node, "node_sqlite": ts_sqlite,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "fsync_per_second": round(fsync_rate(workdir)),
    }


# ---- main ----


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="claim+done cycles per round (default 1000)")
    parser.add_argument("--batch", type=int, default=10_000,
                        help="done keys for the rerun, batch, list and gc workloads (default 10000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per side; the best is kept (default 3)")
    parser.add_argument("--dir", default=".", help="where the stores go (default: the current directory)")
    parser.add_argument("--only", help="run only comparisons whose name contains this text")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a Markdown table")
    args = parser.parse_args(argv)
    modules = peer_modules()
    workdir = Path(tempfile.mkdtemp(prefix="mooncat-peer-", dir=args.dir))
    try:
        about = machine(workdir, modules)
        chosen = [c for c in comparisons() if not args.only or args.only.lower() in c.name.lower()]
        # One measurement per distinct side, shared by every comparison that uses it.
        best: dict[tuple[str, str, str, str, int], float] = {}
        for number, comparison in enumerate(chosen, 1):
            n = args.n if comparison.n_key == "n" else args.batch
            print(f"[{number}/{len(chosen)}] {comparison.name} (n={n})", file=sys.stderr, flush=True)
            sides = [(s, (s.impl, s.workload, s.durability, comparison.scheme, n))
                     for s in (comparison.theirs, comparison.ours)]
            todo = [(side, key) for side, key in sides if key not in best]
            for _ in range(args.rounds):
                for side, key in todo:
                    best[key] = max(best.get(key, 0.0), run_side(side, comparison.scheme, n, workdir, modules))
            comparison.theirs_rate, comparison.ours_rate = best[sides[0][1]], best[sides[1][1]]
        about["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    rows = [{
        "comparison": c.name, "ours": c.ours.label + " " + c.ours.workload, "ours_per_s": round(c.ours_rate),
        "theirs": c.theirs.label + " " + c.theirs.workload, "theirs_per_s": round(c.theirs_rate),
        "ratio": round(c.ratio, 2), "target": c.target,
        "met": None if c.target is None else c.ratio >= c.target,
    } for c in chosen]
    if args.json:
        print(json.dumps({"machine": about, "n": args.n, "batch": args.batch, "rounds": args.rounds,
                          "results": rows}, indent=2))
    else:
        print_markdown(about, args, rows)
    return 0


def print_markdown(about: dict[str, Any], args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    print(f"Machine: {about['cpu']}, {about['cores']} cores, {about['os']}; filesystem {about['filesystem']}; "
          f"disk fsync {about['fsync_per_second']:,}/s; Python {about['python']} (SQLite {about['python_sqlite']}), "
          f"Node {about['node']} (better-sqlite3 SQLite {about['node_sqlite']}); load average "
          f"{about['load_average']} before, {about['load_average_after']} after.")
    print(f"Cycles n={args.n}, batch/rerun/list/gc n={args.batch}, best of {args.rounds} alternating rounds.\n")
    print("| comparison | ours /s | peer /s | ratio | target | met |")
    print("|---|---:|---:|---:|---:|:---:|")
    for row in rows:
        target = "" if row["target"] is None else f">= {row['target']}x"
        met = "" if row["met"] is None else ("yes" if row["met"] else "**no**")
        print(f"| {row['comparison']} ({row['theirs']}) | {row['ours_per_s']:,} | {row['theirs_per_s']:,} | "
              f"{row['ratio']:.2f}x | {target} | {met} |")


if __name__ == "__main__":
    raise SystemExit(main())
