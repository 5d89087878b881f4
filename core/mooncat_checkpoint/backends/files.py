"""JSON files, one per record: `<root>/<namespace>/<segment>.json`, as the TypeScript package lays them out.

Writers on one machine are serialised by byte-range locks on `<root>/<namespace>/.lock`, striped by
segment, so unrelated keys do not wait for each other. Nothing we create ends in `.json` except records,
and we create no directories beside the namespaces, so neither the TypeScript package nor our own
listing can mistake a lock or a temporary file for a record.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from ..errors import ConfigError, CorruptRecordError
from ..keys import MAX_FOLDER_NAMESPACE_LENGTH, check_folder_namespace, check_namespace
from ..machine import Transition
from ..protocol import Checkpoint, CorruptRecord, Status
from ..serialize import record_from_text, record_text
from .base import misplaced, wall_clock_ms

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: in-process locking only
    fcntl = None  # type: ignore[assignment]

T = TypeVar("T")

STRIPES = 64
LOCK_NAME = ".lock"
RECORD_SUFFIX = ".json"
TEMP_SUFFIX = ".tmp"
QUARANTINE_SUFFIX = ".corrupt"


class _NamespaceLock:
    """Per-namespace striped lock: a thread lock per stripe, and the matching byte of the lock file.

    POSIX record locks belong to the process, so threads are ordered by the thread locks first.
    """

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._guard = threading.Lock()
        self._pid = -1
        self._fd = -1
        self._stripes: list[threading.Lock] = []

    def _ready(self) -> int:
        with self._guard:
            if self._pid != os.getpid():  # a forked child must not share the parent's thread locks
                self._stripes = [threading.Lock() for _ in range(STRIPES)]
                try:
                    self._directory.mkdir(parents=True, exist_ok=True)
                except FileExistsError:
                    raise FileBackend._not_a_folder(self._directory) from None
                self._fd = os.open(self._directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
                self._pid = os.getpid()
            return self._fd

    @contextmanager
    def hold(self, stripes: Sequence[int]) -> Iterator[None]:
        fd = self._ready()
        ordered = sorted(set(stripes))  # one global order: no deadlock between batches
        taken: list[int] = []
        try:
            for stripe in ordered:
                self._stripes[stripe].acquire()
                taken.append(stripe)
                if fcntl is not None:
                    fcntl.lockf(fd, fcntl.LOCK_EX, 1, stripe)
            yield
        finally:
            for stripe in reversed(taken):
                if fcntl is not None:
                    fcntl.lockf(fd, fcntl.LOCK_UN, 1, stripe)
                self._stripes[stripe].release()

    def close(self) -> None:
        with self._guard:
            if self._pid == os.getpid() and self._fd >= 0:
                os.close(self._fd)
            self._fd, self._pid = -1, -1


# POSIX record locks belong to the process, and closing any descriptor of the lock file drops them all:
# every client of one namespace directory in this process must share one lock object and descriptor.
_SHARED_LOCKS: dict[str, tuple[_NamespaceLock, int]] = {}
_SHARED_LOCKS_GUARD = threading.Lock()


def _take_shared_lock(directory: Path) -> _NamespaceLock:
    name = os.path.realpath(directory)
    with _SHARED_LOCKS_GUARD:
        lock, users = _SHARED_LOCKS.get(name, (None, 0))
        if lock is None:
            lock = _NamespaceLock(Path(name))
        _SHARED_LOCKS[name] = (lock, users + 1)
        return lock


def _drop_shared_lock(lock: _NamespaceLock) -> None:
    with _SHARED_LOCKS_GUARD:
        for name, (shared, users) in list(_SHARED_LOCKS.items()):
            if shared is lock:
                if users > 1:
                    _SHARED_LOCKS[name] = (shared, users - 1)
                else:
                    del _SHARED_LOCKS[name]
                    lock.close()
                return


def _stripe(segment: str) -> int:
    return zlib.crc32(segment.encode("utf-8")) % STRIPES


class FileBackend:
    def __init__(self, root: str | os.PathLike[str], durability: str = "full") -> None:
        self.root = Path(root)
        self.sync_writes = durability == "full"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise ConfigError(f"cannot use {self.root} as a file store: it is a file, not a folder") from None
        except OSError as exc:  # a file on the way, no permission, a read-only filesystem: say which folder
            raise ConfigError(f"cannot use {self.root} as a file store: {exc.strerror or exc}") from None
        self._root = str(self.root)
        self._locks: dict[str, _NamespaceLock] = {}
        self._locks_guard = threading.Lock()

    def now_ms(self) -> int:
        return wall_clock_ms()

    # ---- paths ----

    def _path(self, namespace: str, segment: str) -> str:
        # Plain strings: a rerun builds one path per claim, and pathlib costs more than the read.
        if len(namespace) > MAX_FOLDER_NAMESPACE_LENGTH:
            check_folder_namespace(namespace)
        return f"{self._root}{os.sep}{namespace}{os.sep}{segment}{RECORD_SUFFIX}"

    def _lock(self, namespace: str) -> _NamespaceLock:
        with self._locks_guard:
            lock = self._locks.get(namespace)
            if lock is None:
                lock = self._locks[namespace] = _take_shared_lock(self.root / namespace)
            return lock

    # ---- reads ----

    def _read_path(self, path: str) -> Checkpoint | None:
        try:
            data = _read_file(path)
        except NotADirectoryError:
            raise self._not_a_folder(os.path.dirname(path)) from None
        return None if data is None else record_from_text(data, path)

    @staticmethod
    def _not_a_folder(directory: str | Path) -> ConfigError:
        return ConfigError(
            f"{directory} is a file, but the file store keeps the namespace {os.path.basename(directory)!r} "
            "in a folder of that name; move the file away"
        )

    def read(self, namespace: str, segment: str) -> Checkpoint | None:
        return self._read_path(self._path(namespace, segment))

    def read_many(self, namespace: str, segments: Sequence[str]) -> dict[str, Checkpoint]:
        found = {}
        for segment in segments:
            record = self.read(namespace, segment)
            if record is not None:
                found[segment] = record
        return found

    # ---- writes ----

    def apply(self, namespace: str, segment: str, transition: Transition[T], durable: bool) -> T:
        with self._lock(namespace).hold([_stripe(segment)]):
            return self._apply_locked(namespace, segment, transition)

    def apply_many(
        self, namespace: str, items: Sequence[tuple[str, Transition[Any]]], durable: bool
    ) -> list[Any]:
        # Files have no transactions: the batch is atomic per key, and all its keys are locked together.
        with self._lock(namespace).hold([_stripe(segment) for segment, _ in items]):
            return [self._apply_locked(namespace, segment, t) for segment, t in items]

    def _apply_locked(self, namespace: str, segment: str, transition: Transition[T]) -> T:
        path = self._path(namespace, segment)
        change = transition(self._read_path(path), self.now_ms())
        if change.put is not None:
            self._write(path, record_text(change.put).encode("utf-8"), change.durable and self.sync_writes)
        elif change.delete:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        return change.value

    def _write(self, path: str, data: bytes, sync: bool) -> None:
        """Write beside the target under a unique name, then rename over it: readers see old or new."""
        folder, name = os.path.split(path)
        stem = name[: -len(RECORD_SUFFIX)]
        temp = f"{folder}{os.sep}.{stem}.{os.getpid()}.{threading.get_ident()}.{os.urandom(4).hex()}{TEMP_SUFFIX}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                if sync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        if sync:
            _sync_directory(folder)

    # ---- listing ----

    def scan(self, namespace: str, status: Status | None = None) -> Iterator[Checkpoint | CorruptRecord]:
        directory = self.root / namespace
        try:
            entries = os.scandir(directory)
        except FileNotFoundError:
            return
        except NotADirectoryError:
            raise self._not_a_folder(directory) from None
        with entries:
            for entry in entries:
                if not entry.name.endswith(RECORD_SUFFIX):
                    continue
                try:
                    record = self._read_path(entry.path)
                except CorruptRecordError as exc:
                    yield CorruptRecord(namespace, exc.location, exc.reason)
                    continue
                if record is not None and (status is None or record.status is status):
                    yield misplaced(namespace, entry.name[: -len(RECORD_SUFFIX)], record, entry.path)

    def namespaces(self) -> list[str]:
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return []
        names = []
        for entry in entries:
            if entry.is_dir():
                try:
                    names.append(check_namespace(entry.name))
                except ValueError:
                    continue  # not ours: a namespace name can never fail this check
        return sorted(names)

    def quarantine(self, namespace: str, location: str) -> str:
        source = Path(location)
        if source.parent != self.root / namespace or not source.name.endswith(RECORD_SUFFIX):
            raise LookupError(f"{location} is not a record file of namespace {namespace!r}")
        # Unique per call: quarantining the same record twice must keep both copies.
        target = source.with_name(f"{source.name}.{int(time.time())}.{os.urandom(4).hex()}{QUARANTINE_SUFFIX}")
        with self._lock(namespace).hold([_stripe(source.name[: -len(RECORD_SUFFIX)])]):
            os.replace(source, target)
        _sync_directory(source.parent)
        return str(target)

    def close(self) -> None:
        with self._locks_guard:
            for lock in self._locks.values():
                _drop_shared_lock(lock)
            self._locks.clear()


_READ_CHUNK = 1 << 16


def _read_file(path: str) -> bytes | None:
    """The whole file, or None if there is none; os-level calls, since a rerun reads one per claim."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    except IsADirectoryError:  # where opening a directory for reading is refused outright
        raise CorruptRecordError(path, "is a directory, not a record file") from None
    try:
        chunks: list[bytes] = []
        while True:
            try:
                chunk = os.read(fd, _READ_CHUNK)
            except IsADirectoryError:
                raise CorruptRecordError(path, "is a directory, not a record file") from None
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)


def _sync_directory(directory: str | Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:  # some filesystems cannot sync a directory; the rename is still atomic
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)
