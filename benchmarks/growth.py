"""Time and peak memory of list, stats (a counting scan), export and gc as a namespace grows.

    PYTHONPATH=core python benchmarks/growth.py [--sizes 10000,100000,1000000] [--schemes sqlite,file]

Each operation runs in a fresh Python process; its peak memory is that process's maximum resident set
minus what it held before the operation (interpreter and imports), so flat numbers mean streaming.
`list` returns every record by its API, so it is the one expected to grow; the others should not.
Records are expired claims written with claim_many (untimed), so gc, run last, deletes all of them.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "core"))

from mooncat_checkpoint import CheckpointClient  # noqa: E402

NS = "growth"
OPERATIONS = ("list", "stats", "export", "gc")
FILL_CHUNK = 5_000


def peak_rss_kb() -> int:
    # ru_maxrss is in kilobytes on Linux and bytes on macOS.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak


def current_rss_kb() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except OSError:
        return peak_rss_kb()


def child(operation: str, url: str, n: int) -> dict[str, float]:
    from mooncat_checkpoint import cli

    client = CheckpointClient(url)
    client.get(NS, "k0")  # open the store before measuring
    before = current_rss_kb()
    started = time.perf_counter()
    if operation == "list":
        count = len(client.list(NS))
    elif operation == "gc":
        count = client.gc(namespace=NS)
    else:
        sink = io.StringIO() if operation == "stats" else None
        command = ["--url", url, "stats", NS, "--json"] if operation == "stats" else \
            ["--url", url, "export", NS, "--output", os.devnull]
        with contextlib.redirect_stdout(sink or io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            if cli.main(command) != 0:
                raise RuntimeError(f"{operation} failed")
        count = n if operation == "export" else sum(json.loads(sink.getvalue())[NS].values())  # type: ignore[union-attr]
    seconds = time.perf_counter() - started
    if count != n:
        raise RuntimeError(f"{operation} saw {count} of {n} records")
    return {"seconds": seconds, "peak_mb": max(peak_rss_kb() - before, 0) / 1024}


def fill(url: str, n: int) -> float:
    started = time.perf_counter()
    with CheckpointClient(url, durability="fast") as client:
        for start in range(0, n, FILL_CHUNK):
            keys = [f"k{i}" for i in range(start, min(start + FILL_CHUNK, n))]
            client.claim_many(NS, keys, owner_run_id="growth", lease_ms=1)
            print(f"\r  filling {min(start + FILL_CHUNK, n):,}/{n:,}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    time.sleep(0.01)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--schemes", default="sqlite,file")
    parser.add_argument("--dir", default=".", help="where the stores go (default: the current directory)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", nargs=3, metavar=("OPERATION", "URL", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], int(args.child[2]))))
        return 0
    rows = []
    for scheme in args.schemes.split(","):
        for n in (int(size) for size in args.sizes.split(",")):
            workdir = Path(tempfile.mkdtemp(prefix="mooncat-growth-", dir=args.dir))
            url = f"{scheme}://{workdir / ('cp.db' if scheme == 'sqlite' else 'cp')}"
            try:
                print(f"{scheme} n={n:,}", file=sys.stderr)
                row: dict[str, object] = {"store": scheme, "records": n, "fill_seconds": round(fill(url, n), 1)}
                for operation in OPERATIONS:
                    proc = subprocess.run([sys.executable, __file__, "--child", operation, url, str(n)],
                                          capture_output=True, text=True, check=False)
                    if proc.returncode != 0:
                        raise RuntimeError(f"{operation} on {scheme} n={n}: {proc.stderr.strip()[-600:]}")
                    result = json.loads(proc.stdout)
                    row[f"{operation}_s"] = round(result["seconds"], 3)
                    row[f"{operation}_mb"] = round(result["peak_mb"], 1)
                rows.append(row)
                print(f"  {row}", file=sys.stderr)
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print("| store | records | " + " | ".join(f"{op} s | {op} MB" for op in OPERATIONS) + " |")
    print("|---|---:|" + "---:|---:|" * len(OPERATIONS))
    for row in rows:
        cells = " | ".join(f"{row[f'{op}_s']} | {row[f'{op}_mb']}" for op in OPERATIONS)
        print(f"| {row['store']} | {row['records']:,} | {cells} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
