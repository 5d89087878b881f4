"""Errors raised by mooncat_checkpoint. Every one of them derives from CheckpointError."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .protocol import Checkpoint


class CheckpointError(Exception):
    """Base class of every error this library raises on purpose."""


class InvalidArgumentError(CheckpointError, ValueError):
    """An argument is malformed; raised before any I/O."""


class ConfigError(CheckpointError, ValueError):
    """A store URL or a config file cannot be used."""


class LeaseLostError(CheckpointError):
    """The lease named by a token is no longer ours: another holder took the key, or it finished.

    This is the fencing signal: the caller's work must not be recorded.
    """

    def __init__(self, namespace: str, key: str, reason: str) -> None:
        super().__init__(f"lease lost: {namespace}/{key}: {reason}")
        self.namespace = namespace
        self.key = key
        self.reason = reason

    def __reduce__(self) -> tuple[type[LeaseLostError], tuple[str, str, str]]:
        # Errors cross processes (executors, task runners): rebuilt from their fields, not their message.
        return type(self), (self.namespace, self.key, self.reason)


class CheckpointResultSerializationError(CheckpointError, ValueError):
    """A result cannot be stored inline: not JSON that JavaScript reads back unchanged, or too large."""


class CorruptRecordError(CheckpointError):
    """A stored record cannot be read: never treated as absent, since that would redo finished work.

    The client that met it fills in `url` (as for StepFailedError), so the doctor hint reaches its store."""

    def __init__(self, location: str, reason: str, url: str | None = None) -> None:
        super().__init__(location, reason)
        self.location = location
        self.reason = reason
        self.url = url

    def __str__(self) -> str:
        doctor = "mooncat-checkpoint doctor" + ("" if self.url is None else f" --url {_shell_quote(self.url)}")
        return (
            f"corrupt checkpoint record at {self.location}: {self.reason} "
            f"(inspect with `{doctor}`, move it aside with `{doctor} --quarantine`)"
        )

    def __reduce__(self) -> tuple[type[CorruptRecordError], tuple[str, str, str | None]]:
        return type(self), (self.location, self.reason, self.url)


class KeyConflictError(CheckpointError):
    """Two different keys map to one stored record (a hashed-looking key, or a case-insensitive filesystem)."""

    def __init__(self, namespace: str, key: str, stored_key: str, stored_namespace: str | None = None) -> None:
        if stored_namespace is None or stored_namespace == namespace:
            other = f"another key {stored_key!r}"
        else:  # namespace folders that differ only in case are one folder on a case-insensitive filesystem
            other = f"key {stored_key!r} of namespace {stored_namespace!r}"
        super().__init__(
            f"key {key!r} in namespace {namespace!r} maps to the record of {other}; "
            "refusing to read or overwrite it"
        )
        self.namespace = namespace
        self.key = key
        self.stored_key = stored_key
        self.stored_namespace = namespace if stored_namespace is None else stored_namespace

    def __reduce__(self) -> tuple[type[KeyConflictError], tuple[str, str, str, str]]:
        return type(self), (self.namespace, self.key, self.stored_key, self.stored_namespace)


class StepFailedError(CheckpointError):
    """The key holds a terminal `failed` record; it stays failed until reset.

    With the store's `url` (the step helper passes it), the reset hint names it with `--url`, always and
    quoted for a shell: the command then reaches this store from any folder, whatever the environment or
    config file there says. A PostgreSQL URL is shown without its password."""

    def __init__(self, checkpoint: Checkpoint, url: str | None = None) -> None:
        command = reset_command(checkpoint.namespace, checkpoint.key, url)
        super().__init__(
            f"checkpoint {checkpoint.namespace}/{checkpoint.key} is failed ({checkpoint.error or 'no message'}); "
            f"reset it to run again: {command}"
        )
        self.checkpoint = checkpoint
        self.url = url

    def __reduce__(self) -> tuple[type[StepFailedError], tuple[Checkpoint, str | None]]:
        return type(self), (self.checkpoint, self.url)


class StepBusyError(CheckpointError):
    """Another holder has a live lease on the key."""

    def __init__(self, checkpoint: Checkpoint, waited: float | None = None) -> None:
        waited_text = f" after waiting {waited:.1f}s" if waited else ""
        super().__init__(
            f"checkpoint {checkpoint.namespace}/{checkpoint.key} is held by "
            f"{checkpoint.owner_run_id or 'an unnamed run'}{waited_text}"
        )
        self.checkpoint = checkpoint
        self.waited = waited

    def __reduce__(self) -> tuple[type[StepBusyError], tuple[Checkpoint, float | None]]:
        return type(self), (self.checkpoint, self.waited)


class BackendUnavailableError(CheckpointError):
    """A backend needs an optional dependency that is not installed."""


def _shell_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def reset_command(namespace: str, key: str, url: str | None = None) -> str:
    """The shell command that resets one key: options first, and `--` before a namespace or key that starts
    with '-', which the command line would otherwise read as an option."""
    import shlex

    words = ["mooncat-checkpoint", "reset", *(["--url", url] if url is not None else [])]
    if namespace.startswith("-") or key.startswith("-"):
        words.append("--")
    return shlex.join([*words, namespace, key])
