"""Which store to use: the same resolution order as the TypeScript package, with its surprises refused."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .errors import ConfigError

ENV_VAR = "MOONCAT_CHECKPOINT_URL"
CONFIG_FILE_NAME = "mooncat-checkpoint.config.json"
DEFAULT_URL = "file://./.mooncat/checkpoints"
PATH_SCHEMES = ("file://", "sqlite://")
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


@dataclass(frozen=True)
class ResolvedUrl:
    url: str
    source: str  # "argument", "env MOONCAT_CHECKPOINT_URL", "config <path>" or "default"
    base_dir: Path  # what a relative file/sqlite path is relative to


@dataclass(frozen=True)
class StoreLocation:
    scheme: str  # "memory", "file", "sqlite" or "postgresql"
    path: str  # absolute path for file/sqlite, the URL for postgresql, "" for memory
    url: str

    @property
    def absolute_url(self) -> str:
        """A URL for the same store from any working directory: a relative path resolved against a config
        file's folder would, passed on as written, be read against the receiver's working directory."""
        return f"{self.scheme}://{self.path}" if self.scheme in ("file", "sqlite") else self.url

    @property
    def command_url(self) -> str | None:
        """The URL to name in a `mooncat-checkpoint ... --url` hint: absolute, and for PostgreSQL without a
        password (libpq takes it from PGPASSWORD or ~/.pgpass). None for memory://, which no command reaches."""
        if self.scheme == "memory":
            return None
        if self.scheme != "postgresql":
            return self.absolute_url
        parts = urlsplit(self.url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            netloc = f"{userinfo.split(':', 1)[0]}@{host}"
        query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "password"])
        return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def resolve_url(explicit: str | None = None, cwd: str | os.PathLike[str] | None = None) -> ResolvedUrl:
    here = Path(cwd) if cwd is not None else Path.cwd()
    if explicit is not None:
        if not isinstance(explicit, str) or not explicit.strip():
            raise ConfigError(f"store URL must be a non-empty string, got {explicit!r}")
        return ResolvedUrl(explicit, "argument", here)
    from_env = os.environ.get(ENV_VAR, "")
    if from_env:  # only an empty value counts as unset, as in TypeScript; a blank one is a bad URL
        return ResolvedUrl(from_env, f"env {ENV_VAR}", here)
    found = find_config(here)
    if found is not None:
        return found
    return ResolvedUrl(DEFAULT_URL, "default", here)


def find_config(start: Path) -> ResolvedUrl | None:
    directory = start.resolve()
    while True:
        candidate = directory / CONFIG_FILE_NAME
        if candidate.is_file():
            return _read_config(candidate)
        if candidate.exists():
            # TypeScript 0.5.1 fails to read it as a file, swallows the error and looks further up, as for
            # any unreadable config: refused here like every unreadable config (see _read_config).
            kind = "a folder" if candidate.is_dir() else "not a regular file"
            raise ConfigError(
                f"{candidate} is {kind}, not a config file; remove or rename it "
                "(the TypeScript package would ignore it and use the config file or store found further up)"
            )
        if directory.parent == directory:
            return None
        directory = directory.parent


def _read_config(path: Path) -> ResolvedUrl | None:
    # TypeScript skips an unreadable config and falls back to the default store, which silently
    # reruns finished work; a clear error is the safer answer.
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    backend = data.get("backend") if isinstance(data, dict) else None
    url = backend.get("url") if isinstance(backend, dict) else None
    if url is None:
        return None  # a config without a URL still marks the project root: stop looking, like TypeScript
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"{path}: backend.url must be a non-empty string, got {url!r}")
    return ResolvedUrl(url, f"config {path}", path.parent)


def parse_url(url: str, base_dir: Path | None = None) -> StoreLocation:
    """Turn a URL into a store location; relative paths become absolute against `base_dir`."""
    base = base_dir if base_dir is not None else Path.cwd()
    if url == "memory://":
        return StoreLocation("memory", "", url)
    if url.startswith("memory:"):
        raise ConfigError(f"memory store URL must be exactly 'memory://', got {url!r}")
    if url.startswith(POSTGRES_SCHEMES):
        return StoreLocation("postgresql", url, url)
    for scheme in PATH_SCHEMES:
        if url.startswith(scheme):
            raw = url[len(scheme):]
            _check_path(url, raw)
            path = Path(raw)
            absolute = path if path.is_absolute() else (base / path)
            return StoreLocation(scheme[:-3], os.path.normpath(absolute), url)
    raise ConfigError(
        f"unsupported store URL {url!r}; use file://<path>, sqlite://<path>, memory:// "
        "or postgresql://user@host:port/db"
    )


def _check_path(url: str, raw: str) -> None:
    if not raw:
        raise ConfigError(f"store URL {url!r} has no path; e.g. {url}./checkpoints")
    if raw.startswith("~"):
        raise ConfigError(f"store URL {url!r}: '~' is not expanded; write the absolute path")
    if "?" in raw or "#" in raw:
        raise ConfigError(
            f"store URL {url!r}: query strings and fragments are not supported "
            "(TypeScript would make them part of the file name)"
        )
    scheme = url[: len(url) - len(raw)]
    first = raw.split("/", 1)[0]
    if first.lower() == "localhost" or (first and ":" in first and not raw.startswith("/")):
        raise ConfigError(
            f"store URL {url!r}: a host part is not supported (TypeScript reads it as a relative folder "
            f"named {first!r}); write {scheme}/absolute/path or {scheme}./relative/path"
        )
    if "\x00" in raw:
        raise ConfigError(f"store URL {url!r} contains a NUL character")
