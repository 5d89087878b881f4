"""Quick start: fingerprint every file of the Python standard library, resumably.

    python examples/fingerprint.py                 # first run: fingerprints every file
    python examples/fingerprint.py                 # rerun: skips every file
    python examples/fingerprint.py --root DIR --url sqlite://./fp.db

Interrupt it with Ctrl-C and run it again: only the files not yet finished are fingerprinted.
Keys are the files' paths relative to the root, so a TypeScript job walking the same tree can share them.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import sysconfig
import time
from pathlib import Path

from mooncat_checkpoint import CheckpointClient, CheckpointError

NAMESPACE = "stdlib-fingerprint"


def fingerprint(path: Path) -> dict[str, object]:
    data = path.read_bytes()
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "lines": data.count(b"\n")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path(sysconfig.get_paths()["stdlib"]))
    parser.add_argument("--url", help="store URL (default: the embedded file store)")
    args = parser.parse_args()
    # Bad input is one line and exit 2 before any work: a mistyped root must not report "0 files" as success.
    if not args.root.is_dir():
        parser.exit(2, f"{parser.prog}: error: --root {args.root} is not a folder\n")
    try:
        store = CheckpointClient(args.url)  # checks the URL; the store itself opens on first use
    except CheckpointError as exc:
        parser.exit(2, f"{parser.prog}: error: {' '.join(str(exc).split())}\n")

    # site-packages changes whenever something is installed: only the standard library itself.
    skip = {"__pycache__", "site-packages", "dist-packages"}
    files = sorted(p for p in args.root.rglob("*.py") if p.is_file() and not skip.intersection(p.parts))
    if not files:
        parser.exit(2, f"{parser.prog}: error: no .py files under {args.root}\n")
    try:
        store.namespaces()  # opens the store: one that cannot be opened is one line too
    except (CheckpointError, OSError) as exc:
        parser.exit(2, f"{parser.prog}: error: {' '.join(str(exc).split())}\n")
    keys = {p.relative_to(args.root).as_posix(): p for p in files}
    ran = skipped = 0
    owner = f"fingerprint-{os.getpid()}-{time.time_ns()}"  # one per run: its leftovers are its own
    started = time.monotonic()
    with store:
        print(f"store: {store.url} ({store.url_source}); {len(keys)} files under {args.root}")
        # One batch read tells which files a previous run already finished.
        finished = store.get_many(NAMESPACE, keys)
        try:
            for key, path in keys.items():
                if key in finished and finished[key].status == "done":
                    skipped += 1
                    continue
                with store.step(NAMESPACE, key, owner_run_id=owner) as step:
                    if not step.skipped:
                        step.value = fingerprint(path)
                # Counted once the block has stored the result: an interrupt inside it counts nothing.
                if step.skipped:
                    skipped += 1
                else:
                    ran += 1
        except CheckpointError as exc:  # e.g. a file recorded as failed by another job: say which, and how out
            print(f"\nstopped: {ran} fingerprinted, {skipped} skipped", flush=True)
            print(f"{parser.prog}: error: {' '.join(str(exc).split())}", file=sys.stderr)
            raise SystemExit(2) from None
        except KeyboardInterrupt:
            # A Ctrl-C inside `claim` itself leaves a claim whose token never reached us: this run's
            # owner id finds it, so the rerun need not wait for its lease to end.
            store.abandon_owned(owner, NAMESPACE)
            print(f"\ninterrupted: {ran} fingerprinted, {skipped} skipped; run again to finish the rest")
            raise SystemExit(130) from None
    print(f"done in {time.monotonic() - started:.1f}s: {ran} fingerprinted, {skipped} skipped (finished before)")


if __name__ == "__main__":
    main()
