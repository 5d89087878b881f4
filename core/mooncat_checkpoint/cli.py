"""`mooncat-checkpoint`: inspect, repair and move checkpoint stores. Commands as in the TypeScript CLI, plus
--json output, stats, export/import, doctor and bench."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import sqlite3
import stat
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, NoReturn

from . import __version__, machine
from .client import CheckpointClient, doctor_command
from .config import CONFIG_FILE_NAME, DEFAULT_URL, StoreLocation
from .errors import CheckpointError, CorruptRecordError, KeyConflictError
from .keys import HASHED_PREFIX, check_folder_namespace, check_key, check_namespace, storage_segment
from .protocol import Checkpoint, CorruptRecord, Status
from .serialize import encode_result, record_from_dict

EXIT_ABSENT = 1
EXIT_ERROR = 2
PROGRESS_EVERY = 10_000
CONFLICT_CHUNK = 1_000


class CliError(Exception):
    """A usage or input problem: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, like every other error of this program, instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)\n")


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


URL_HELP = "store URL (default: env MOONCAT_CHECKPOINT_URL, then the config file, then file://./.mooncat/checkpoints)"


def _add_common(parser: _Parser, default: Any) -> _Parser:
    parser.add_argument("--url", default=default, help=URL_HELP)
    parser.add_argument("--json", action="store_true", default=default, help="machine-readable output")
    return parser


def _common() -> _Parser:
    # SUPPRESS: an option given before the command is not reset by the command's own defaults.
    return _add_common(_Parser(add_help=False), argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = _Parser(
        prog="mooncat-checkpoint", description="Inspect, repair and move mooncat checkpoint stores."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--url", help=URL_HELP)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("init", parents=[common], help=f"write {CONFIG_FILE_NAME} in the current folder")
    sub.add_parser("url", parents=[common], help="print the store URL and where it came from")
    p = sub.add_parser("list", parents=[common], help="list the records of a namespace")
    p.add_argument("namespace")
    p.add_argument("--status", choices=[s.value for s in Status])
    p = sub.add_parser("get", parents=[common], help="print one record (exit 1 when absent)")
    p.add_argument("namespace")
    p.add_argument("key")
    p = sub.add_parser("reset", parents=[common], help="delete one record so its key runs again")
    p.add_argument("namespace")
    p.add_argument("key")
    p.add_argument("--force", action="store_true",
                   help="delete it even while a worker holds a live claim on it (that worker's result is then refused)")
    p = sub.add_parser("gc", parents=[common], help="delete claims whose lease ended")
    p.add_argument("--older-than", type=int, default=0, metavar="MS", help="only leases ended at least MS ago")
    p = sub.add_parser("stats", parents=[common], help="count records per namespace and status")
    p.add_argument("namespace", nargs="?")
    p = sub.add_parser("export", parents=[common], help="write records as JSON lines")
    p.add_argument("namespace", nargs="?", help="one namespace (default: all)")
    p.add_argument("--output", "-o", help="file to write (default: stdout)")
    p.add_argument("--progress", action="store_true", help="report progress on stderr")
    p = sub.add_parser("import", parents=[common], help="add records from JSON lines; existing keys are kept")
    p.add_argument("--input", "-i", help="file to read (default: stdin)")
    p.add_argument("--namespace", help="import only this namespace")
    p.add_argument("--progress", action="store_true", help="report progress on stderr")
    p = sub.add_parser("doctor", parents=[common], help="find unreadable records; --quarantine moves them aside")
    p.add_argument("namespace", nargs="?")
    p.add_argument("--quarantine", action="store_true")
    try:
        from . import bench  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        pass
    else:
        p = sub.add_parser("bench", parents=[common], help="measure a store's throughput")
        bench.configure_parser(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "init":
            return cmd_init(args)
        if args.command == "bench":
            from . import bench  # type: ignore[attr-defined,unused-ignore]

            code: int = bench.run(args)
            return code
        with CheckpointClient(args.url) as client:
            if client.location.scheme == "memory" and args.command in STORE_COMMANDS:
                raise CliError(
                    f"memory:// lives only as long as one process: `{args.command}` would "
                    + ("write records that are gone when it exits" if args.command == "import"
                       else "find an empty store")
                    + "; use a file://, sqlite:// or postgresql:// store"
                )
            if args.command in READS_ONLY:
                _require_existing_store(client)
            command = COMMANDS[args.command]
            return command(client, args)
    except BrokenPipeError:  # e.g. `export | head`
        return 0
    except (CheckpointError, CliError, OSError, ValueError, sqlite3.Error) as exc:
        print(f"mooncat-checkpoint: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("mooncat-checkpoint: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a defect of ours still gets one line, with the type to report it by
        print(f"mooncat-checkpoint: error: unexpected {type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2) if args.json else text)


def cmd_init(args: argparse.Namespace) -> int:
    target = Path.cwd() / CONFIG_FILE_NAME
    if target.exists():
        raise CliError(f"{target} already exists; remove it first to write a new one")
    if args.url is not None and not args.url.strip():
        raise CliError("--url is empty; leave it out for the default store")
    url = args.url or DEFAULT_URL
    if CheckpointClient(url).location.scheme == "memory":  # validated before writing anything
        raise CliError("memory:// lives only as long as one process: a config file cannot share it")
    target.write_text(json.dumps({"backend": {"url": url}}, indent=2) + "\n", encoding="utf-8")
    _emit(args, {"path": str(target), "url": url}, f"wrote {target}\n  backend.url = {url}")
    return 0


def cmd_url(client: CheckpointClient, args: argparse.Namespace) -> int:
    where = client.location.path or client.location.scheme
    _emit(args, {"url": client.url, "source": client.url_source, "location": where},
          f"{client.url}  # from {client.url_source}; {where}")
    return 0


def _describe(record: Checkpoint, now: int) -> str:
    age = max(now - record.updated_at, 0) // 1000
    if record.status is Status.DONE:
        detail = f"resultRef={record.result_ref}" if record.result_ref else "result=" + json.dumps(
            record.result, ensure_ascii=False)[:60]
    elif record.status is Status.FAILED:
        detail = f"error={(record.error or '')[:60]}"
    elif record.lease_until is not None and record.lease_until > now:
        detail = f"lease {(record.lease_until - now) // 1000}s left, owner={record.owner_run_id}"
    else:
        detail = "lease expired"
    return f"  [{record.status.value:<7}] {record.key}  (attempts={record.attempts}, {age}s ago, {detail})"


def _report_corrupt(problems: list[CorruptRecord], client: CheckpointClient) -> None:
    for problem in problems:
        print(f"! unreadable record {problem.location}: {problem.reason}", file=sys.stderr)
    if problems:
        doctor = doctor_command(client.location)
        print(f"! run `{doctor}` to inspect, `{doctor} --quarantine` to move them aside", file=sys.stderr)


def cmd_list(client: CheckpointClient, args: argparse.Namespace) -> int:
    records: list[Checkpoint] = []
    problems: list[CorruptRecord] = []
    for item in client.scan(args.namespace, args.status):
        (problems if isinstance(item, CorruptRecord) else records).append(item)  # type: ignore[arg-type]
    records.sort(key=lambda r: (-r.updated_at, r.key))
    now = int(time.time() * 1000)
    if args.json:
        print(json.dumps([r.to_dict() for r in records], ensure_ascii=False, indent=2))
    elif not records:
        which = f"{args.status} records" if args.status else "records"
        print(f'(namespace "{args.namespace}" has no {which})')
    else:
        print(f'namespace "{args.namespace}": {len(records)} record(s)')
        for record in records:
            print(_describe(record, now))
    _report_corrupt(problems, client)
    return 0


def cmd_get(client: CheckpointClient, args: argparse.Namespace) -> int:
    record = client.get(args.namespace, args.key)
    if record is None:
        if args.json:
            print("null")
        else:
            print(f"(no record: {args.namespace}/{args.key})", file=sys.stderr)
        return EXIT_ABSENT
    print(json.dumps(record.to_dict(), ensure_ascii=False, indent=2))
    return 0


def cmd_reset(client: CheckpointClient, args: argparse.Namespace) -> int:
    if args.force:
        deleted = client.reset(args.namespace, args.key)
    else:
        namespace = check_namespace(args.namespace)
        segment = storage_segment(check_key(args.key))
        transition = machine.for_key(namespace, args.key, machine.reset_unless_held)
        deleted, held = client.backend.apply(namespace, segment, transition, False)
        if held is not None:
            raise CliError(_held_message(held, client.backend.now_ms()))
    text = (f"deleted {args.namespace}/{args.key}; it will run again" if deleted
            else f"(no record: {args.namespace}/{args.key})")
    _emit(args, {"deleted": deleted}, text)
    return 0


def _held_message(record: Checkpoint, now: int) -> str:
    until = record.lease_until or now
    ends = datetime.fromtimestamp(until / 1000, tz=timezone.utc).isoformat(timespec="seconds")
    return (
        f"{record.namespace}/{record.key} is claimed by {record.owner_run_id or 'an unnamed run'} until {ends} "
        f"({max(until - now, 0) // 1000}s left); deleting it now would let another worker run it at the same "
        "time: wait for the lease to end, or pass --force"
    )


def cmd_gc(client: CheckpointClient, args: argparse.Namespace) -> int:
    count = client.gc(args.older_than)
    _emit(args, {"deleted": count}, f"deleted {count} expired claim(s)")
    return 0


def _namespaces(client: CheckpointClient, namespace: str | None) -> list[str]:
    return [namespace] if namespace else client.namespaces()


def cmd_stats(client: CheckpointClient, args: argparse.Namespace) -> int:
    table: dict[str, Counter[str]] = {}
    for ns in _namespaces(client, args.namespace):
        counts: Counter[str] = Counter()
        for item in client.scan(ns):
            counts["unreadable" if isinstance(item, CorruptRecord) else item.status.value] += 1
        table[ns] = counts
    if args.json:
        print(json.dumps({ns: dict(c) for ns, c in table.items()}, indent=2))
        return 0
    columns = ["claimed", "done", "failed", "unreadable"]
    print(f"{'namespace':<32} " + " ".join(f"{c:>10}" for c in columns) + f" {'total':>10}")
    for ns, counts in table.items():
        print(f"{ns:<32} " + " ".join(f"{counts[c]:>10}" for c in columns) + f" {sum(counts.values()):>10}")
    return 0


class _Progress:
    def __init__(self, enabled: bool, verb: str) -> None:
        self.enabled = enabled
        self.verb = verb
        self.count = 0
        self.started = time.monotonic()

    def tick(self) -> None:
        self.count += 1
        if self.enabled and self.count % PROGRESS_EVERY == 0:
            rate = self.count / max(time.monotonic() - self.started, 1e-9)
            print(f"\r{self.verb} {self.count:,} records ({rate:,.0f}/s)", end="", file=sys.stderr, flush=True)

    def finish(self) -> None:
        if self.enabled and self.count >= PROGRESS_EVERY:
            print(file=sys.stderr)


def _wants_progress(args: argparse.Namespace) -> bool:
    return bool(args.progress or sys.stderr.isatty())


def cmd_export(client: CheckpointClient, args: argparse.Namespace) -> int:
    if args.namespace is not None:
        check_namespace(args.namespace)
    progress = _Progress(_wants_progress(args), "exported")
    problems: list[CorruptRecord] = []
    if args.output:
        _check_not_the_store(args.output, client.location)
        output = _ReplacingFile(args.output)
        try:
            _export_into(output.file, client, args.namespace, progress, problems)
        except BaseException:
            output.discard()
            raise
        output.commit()
    else:
        with _stdout() as out:
            _export_into(out, client, args.namespace, progress, problems)
    progress.finish()
    print(f"exported {progress.count} record(s)", file=sys.stderr)
    _report_corrupt(problems, client)
    return EXIT_ERROR if problems else 0


def _export_into(out: IO[str], client: CheckpointClient, namespace: str | None, progress: _Progress,
                 problems: list[CorruptRecord]) -> None:
    for ns in _namespaces(client, namespace):
        for item in client.scan(ns):
            if isinstance(item, CorruptRecord):
                problems.append(item)
                continue
            out.write(json.dumps(item.to_dict(), ensure_ascii=False, separators=(",", ":")) + "\n")
            progress.tick()


SQLITE_SIDE_FILES = ("", "-wal", "-shm", "-journal")


def _check_not_the_store(output: str, location: StoreLocation) -> None:
    """An export written over the store it reads would destroy it: refused before anything is opened."""
    if location.scheme not in ("file", "sqlite"):
        return
    target = os.path.realpath(output)
    store = os.path.realpath(location.path)
    if location.scheme == "sqlite":
        hit = any(
            target == store + side
            or (os.path.exists(target) and os.path.exists(store + side) and os.path.samefile(target, store + side))
            for side in SQLITE_SIDE_FILES
        )
        what = "the store's database file (or one of its -wal/-shm/-journal files)"
    else:
        hit = target == store or target.startswith(store.rstrip(os.sep) + os.sep)
        what = "the file store's folder or lies inside it"
    if hit:
        raise CliError(f"--output {output} is {what}; writing it would destroy the records being exported. "
                       "Write the export elsewhere")


class _ReplacingFile:
    """The export is written to a new file beside the target and renamed over it only once complete, so a
    failed or interrupted export leaves an existing file as it was."""

    def __init__(self, output: str) -> None:
        self.target = os.path.realpath(output)  # through a symlink: the link stays, its file is replaced
        if os.path.isdir(self.target):
            raise CliError(f"--output {output} is a folder; name a file")
        try:
            existing: os.stat_result | None = os.stat(self.target)
        except FileNotFoundError:
            existing = None
        if existing is not None and not os.access(self.target, os.W_OK):
            raise CliError(f"--output {output} is not writable")
        directory, name = os.path.split(self.target)
        while True:
            self.temporary = os.path.join(directory, f".{name}.{secrets.token_hex(4)}.partial")
            try:
                fd = os.open(self.temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                continue
            break
        if existing is not None:
            os.fchmod(fd, stat.S_IMODE(existing.st_mode))
        self.file: IO[str] = os.fdopen(fd, "w", encoding="utf-8")

    def commit(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.temporary, self.target)

    def discard(self) -> None:
        self.file.close()
        with contextlib.suppress(OSError):
            os.unlink(self.temporary)


def _utf8(stream: IO[str]) -> None:
    """Exports are UTF-8 whatever the locale says, so a pipe between two stores never changes a key."""
    reconfigure = getattr(stream, "reconfigure", None)
    if reconfigure is not None and (getattr(stream, "encoding", "") or "").lower().replace("-", "") != "utf8":
        reconfigure(encoding="utf-8")


class _stdout:
    def __enter__(self) -> IO[str]:
        _utf8(sys.stdout)
        return sys.stdout

    def __exit__(self, *exc: object) -> None:
        sys.stdout.flush()


def _read_records(source: IO[str], only: str | None, target: str = "") -> Iterator[Checkpoint]:
    """Records of an export; with `target` (a store's scheme) each is checked against what it can hold."""
    for number, line in enumerate(source, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError as exc:
            raise CliError(f"line {number}: not JSON ({exc})") from None
        except RecursionError:
            raise CliError(f"line {number}: nested too deeply to read") from None
        try:
            record = record_from_dict(data, f"line {number}")
            if only is None or record.namespace == only:
                # Held to what any store accepts, so no line fails halfway through the import.
                check_namespace(record.namespace)
                if target == "file":
                    check_folder_namespace(record.namespace)
                check_key(record.key)
                encode_result(record.result)
        except CorruptRecordError as exc:  # a line to import, not a stored record: no doctor advice
            raise CliError(f"line {number}: {exc.reason}") from None
        except CheckpointError as exc:
            raise CliError(f"line {number}: {exc}") from None
        if only is None or record.namespace == only:
            yield record


def cmd_import(client: CheckpointClient, args: argparse.Namespace) -> int:
    if args.namespace is not None:
        check_namespace(args.namespace)
    # Validate every line before writing any: a bad line must not leave half an import behind.
    with tempfile.TemporaryFile("w+", encoding="utf-8") as spool:
        try:
            if args.input:
                with open(args.input, encoding="utf-8") as source:
                    total, existing = _validate_into(source, spool, args.namespace, client)
            else:
                _utf8(sys.stdin)
                total, existing = _validate_into(sys.stdin, spool, args.namespace, client)
        except UnicodeDecodeError as exc:
            raise CliError(f"the input is not UTF-8 text ({exc})") from None
        spool.seek(0)
        progress = _Progress(_wants_progress(args), "imported")
        added = kept = repeated = 0
        kept_keys: set[tuple[str, str]] = set()
        for record in _read_records(spool, args.namespace):
            if client.import_record(record):
                added += 1
            elif (target := (record.namespace, record.key)) in existing and target not in kept_keys:
                kept += 1
                kept_keys.add(target)
            else:
                # Its key was written by an earlier line of this input (or, rarely, by a worker meanwhile).
                repeated += 1
            progress.tick()
        progress.finish()
    text = f"imported {added} record(s); kept {kept} existing record(s) unchanged"
    if repeated:
        text += f"; skipped {repeated} line(s) repeating a key given earlier in the input (the first one counts)"
    _emit(args, {"read": total, "imported": added, "kept_existing": kept, "duplicates": repeated}, text)
    return 0


def _validate_into(
    source: IO[str], spool: IO[str], only: str | None, client: CheckpointClient
) -> tuple[int, set[tuple[str, str]]]:
    for line in source:
        spool.write(line)
    spool.seek(0)
    checked = _check_conflicts(_read_records(spool, only, client.location.scheme), client)
    spool.seek(0, os.SEEK_END)
    return checked


def _check_conflicts(
    records: Iterator[Checkpoint], client: CheckpointClient
) -> tuple[int, set[tuple[str, str]]]:
    """Keys that would land on another key's record, in the store or earlier in the input, are found
    before anything is written, a chunk of keys per read, so an import never stops halfway. Returns the
    number of records and the (namespace, key) pairs the store already holds."""
    hashed: dict[tuple[str, str], str] = {}  # only hashed segments can be shared by two keys
    chunk: dict[str, list[str]] = {}
    existing: set[tuple[str, str]] = set()
    total = 0

    def read_chunk() -> None:
        for namespace, keys in chunk.items():
            try:
                found = client.get_many(namespace, keys)
            except KeyConflictError as exc:
                raise CliError(f"{exc}; nothing was imported") from None
            existing.update((namespace, key) for key in found)
        chunk.clear()

    for total, record in enumerate(records, 1):
        segment = storage_segment(record.key)
        if segment.startswith(HASHED_PREFIX):
            earlier = hashed.setdefault((record.namespace, segment), record.key)
            if earlier != record.key:
                raise CliError(f"keys {earlier!r} and {record.key!r} of namespace {record.namespace!r} "
                               "map to one stored record; nothing was imported")
        chunk.setdefault(record.namespace, []).append(record.key)
        if total % CONFLICT_CHUNK == 0:
            read_chunk()
    read_chunk()
    return total, existing


def cmd_doctor(client: CheckpointClient, args: argparse.Namespace) -> int:
    found: list[CorruptRecord] = []
    for ns in _namespaces(client, args.namespace):
        found.extend(item for item in client.scan(ns) if isinstance(item, CorruptRecord))
    moved = [client.quarantine(problem) for problem in found] if args.quarantine else []
    if args.json:
        print(json.dumps([{"namespace": p.namespace, "location": p.location, "reason": p.reason}
                          for p in found], indent=2))
    elif not found:
        print("no unreadable records")
    else:
        for problem in found:
            print(f"{problem.namespace}: {problem.location}: {problem.reason}")
        if moved:
            print(f"moved {len(moved)} record(s) aside; their keys can now be claimed again")
        else:
            print("these keys cannot be claimed until repaired; `doctor --quarantine` moves them aside")
    return EXIT_ERROR if found and not args.quarantine else 0


# Commands that only read or tidy: on a store that does not exist they would make an empty one at a
# mistyped path and report "nothing there"; `import` is the command that creates a store.
READS_ONLY = {"list", "get", "reset", "gc", "stats", "export", "doctor"}
# Commands that read or write records: on memory:// a fresh, empty store that is gone when they exit.
STORE_COMMANDS = READS_ONLY | {"import"}


def _require_existing_store(client: CheckpointClient) -> None:
    """Reading commands refuse a store that is not there: opening it would create it, hiding a mistyped URL."""
    location = client.location
    shown = client.url
    if location.scheme in ("file", "sqlite"):
        if os.path.exists(location.path):
            return
        where = location.path
    elif location.scheme == "postgresql":
        try:
            from .backends import postgres
        except ImportError:
            return  # opening the store names the missing extra
        if postgres.store_exists(location.url):
            return
        target = postgres.open_target(location.url)
        where = f"{target.display} (schema {target.schema}, table {target.table})"
        shown = location.command_url or target.display  # without the password
    else:
        return
    raise CliError(
        f"no checkpoint store at {where} ({shown} from {client.url_source}); "
        "check --url, MOONCAT_CHECKPOINT_URL or the config file"
    )


COMMANDS = {
    "url": cmd_url, "list": cmd_list, "get": cmd_get, "reset": cmd_reset, "gc": cmd_gc, "stats": cmd_stats,
    "export": cmd_export, "import": cmd_import, "doctor": cmd_doctor,
}
