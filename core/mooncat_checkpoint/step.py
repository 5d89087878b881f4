"""The step helper the adapters share: claim, heartbeat while running, then done / abandon / fail."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import inspect
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from .errors import InvalidArgumentError, LeaseLostError, StepBusyError, StepFailedError
from .keys import KeySpec, check_key_spec, check_namespace, render_key
from .protocol import DEFAULT_LEASE_MS, Checkpoint, ClaimResult
from .serialize import check_optional_str

if TYPE_CHECKING:
    from .client import AsyncCheckpointClient, CheckpointClient

F = TypeVar("F", bound=Callable[..., Any])
OnBusy = Literal["wait", "raise"]
OnError = Literal["abandon", "fail"]
log = logging.getLogger("mooncat_checkpoint")

_STEP_OPTIONS = frozenset({"owner_run_id", "lease_ms", "on_busy", "wait_timeout", "on_error", "heartbeat"})
_FIRST_POLL_S = 0.05
_MAX_POLL_S = 2.0


def check_step_options(
    on_busy: str, on_error: str, wait_timeout: float | None, lease_ms: int | None, heartbeat: bool
) -> int:
    if on_busy not in ("wait", "raise"):
        raise InvalidArgumentError(f"on_busy must be 'wait' or 'raise', got {on_busy!r}")
    if on_error not in ("abandon", "fail"):
        raise InvalidArgumentError(f"on_error must be 'abandon' or 'fail', got {on_error!r}")
    if wait_timeout is not None and (
        isinstance(wait_timeout, bool) or not isinstance(wait_timeout, (int, float)) or not wait_timeout >= 0
    ):
        raise InvalidArgumentError(f"wait_timeout must be None or a number of seconds >= 0, got {wait_timeout!r}")
    if not isinstance(heartbeat, bool):  # a string such as "no" would be true and silently keep beating
        raise InvalidArgumentError(f"heartbeat must be True or False, got {heartbeat!r}")
    if lease_ms is None:
        return DEFAULT_LEASE_MS
    if isinstance(lease_ms, bool) or not isinstance(lease_ms, int) or lease_ms <= 0 or lease_ms > 2**53:
        raise InvalidArgumentError(f"lease_ms must be a positive integer of milliseconds, got {lease_ms!r}")
    return lease_ms


class _Poll:
    """Backoff for waiting on a busy key: short at first, never past the holder's lease end."""

    def __init__(self, wait_timeout: float | None) -> None:
        self.started = time.monotonic()
        self.deadline = None if wait_timeout is None else self.started + wait_timeout
        self.delay = _FIRST_POLL_S

    def next_sleep(self, busy: Checkpoint) -> float | None:
        """Seconds to sleep before asking again, or None when the wait is over."""
        now = time.monotonic()
        if self.deadline is not None and now >= self.deadline:
            return None
        sleep = self.delay
        self.delay = min(self.delay * 1.6, _MAX_POLL_S)
        if busy.lease_until is not None:
            until_expiry = busy.lease_until / 1000 - time.time()
            sleep = min(sleep, max(until_expiry, 0.0) + 0.005)
        if self.deadline is not None:
            sleep = min(sleep, self.deadline - now)
        return max(sleep, 0.0)

    @property
    def waited(self) -> float:
        return time.monotonic() - self.started


class _StepState:
    """What a step knows, shared by the blocking and the async flavour."""

    def __init__(
        self, ns: str, key: str, *, owner_run_id: str | None = None, lease_ms: int | None = None,
        on_busy: OnBusy = "wait", wait_timeout: float | None = None, on_error: OnError = "abandon",
        heartbeat: bool = True,
    ) -> None:
        self.namespace = ns
        self.key = key
        self.owner_run_id = owner_run_id
        self.lease_ms = check_step_options(on_busy, on_error, wait_timeout, lease_ms, heartbeat)
        self.on_busy = on_busy
        self.wait_timeout = wait_timeout
        self.on_error = on_error
        self.use_heartbeat = heartbeat
        self.checkpoint: Checkpoint | None = None
        self.lease_token: str | None = None
        self.skipped = False
        self.finished = False
        self.lease_lost = False
        self.value: Any = None
        self.result_ref: str | None = None

    @property
    def result(self) -> Any:
        """The stored result of a finished key (after a skip), else the value set by the body."""
        if self.skipped and self.checkpoint is not None:
            return self.checkpoint.result
        return self.value

    def store_url(self) -> str | None:
        """The store's URL for a command hint (see StepFailedError)."""
        return None

    def settle(self, outcome: ClaimResult, poll: _Poll) -> str | float:
        """'claimed' or 'done' when decided, else seconds to sleep before claiming again."""
        self.checkpoint = outcome.checkpoint
        if outcome.kind == "claimed":
            self.lease_token = outcome.lease_token
            return "claimed"
        if outcome.kind == "done":
            self.skipped = True
            return "done"
        if outcome.kind == "failed":
            raise StepFailedError(outcome.checkpoint, self.store_url())
        if self.on_busy == "raise":
            raise StepBusyError(outcome.checkpoint)
        sleep = poll.next_sleep(outcome.checkpoint)
        if sleep is None:
            raise StepBusyError(outcome.checkpoint, poll.waited)
        return sleep

    def held_token(self) -> str:
        if self.lease_token is None or self.finished:
            raise InvalidArgumentError(f"step {self.namespace}/{self.key} holds no lease")
        return self.lease_token

    def __repr__(self) -> str:
        state = "done" if self.skipped else "finished" if self.finished else "claimed" if self.lease_token else "new"
        return f"<{type(self).__name__} {self.namespace}/{self.key} {state}>"


class Step(_StepState):
    def __init__(self, client: CheckpointClient, ns: str, key: str, **options: Any) -> None:
        super().__init__(ns, key, **options)
        self.client = client

    def store_url(self) -> str | None:
        return self.client.location.command_url

    def acquire(self) -> Literal["claimed", "done"]:
        poll = _Poll(self.wait_timeout)
        while True:
            outcome = self.client.claim(self.namespace, self.key, self.owner_run_id, self.lease_ms)
            decided = self.settle(outcome, poll)
            if decided == "claimed":
                if self.use_heartbeat:
                    self.client.heartbeat().add(self)
                return "claimed"
            if decided == "done":
                return "done"
            time.sleep(float(decided))

    def _stop(self) -> str:
        token = self.held_token()
        self.finished = True
        if self.use_heartbeat:
            self.client.heartbeat().remove(self)
        return token

    def complete(self, result: Any = None, result_ref: str | None = None) -> Checkpoint:
        token = self.held_token()
        # Encode before stopping the heartbeat: a bad result leaves the claim held and renewable.
        from .serialize import encode_result

        encode_result(result)
        self._stop()
        try:
            self.checkpoint = self.client.done(self.namespace, self.key, token, result, result_ref)
        except BaseException as exc:
            self._give_back(token, exc)
            raise
        self.value = result
        return self.checkpoint

    def _give_back(self, token: str, exc: BaseException) -> None:
        """`done` or `fail` cut off midway (Ctrl-C, a store error): free the key now instead of at the end
        of its lease. Fenced by the token, so a write that did land stays as it is."""
        if isinstance(exc, LeaseLostError):
            return
        try:
            self.client.abandon(self.namespace, self.key, token)
        except Exception:
            log.warning("could not release %s/%s", self.namespace, self.key, exc_info=True)

    def release(self) -> bool:
        token = self._stop()
        return self.client.abandon(self.namespace, self.key, token)

    def record_failure(self, error: str) -> Checkpoint:
        token = self._stop()
        try:
            self.checkpoint = self.client.fail(self.namespace, self.key, error, token)
        except BaseException as exc:
            self._give_back(token, exc)
            raise
        return self.checkpoint

    def __enter__(self) -> Step:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if self.skipped or self.finished:
            return
        if exc is None:
            try:
                self.complete(self.value, self.result_ref)
            except BaseException as error:
                # A value that cannot be stored must not leave the claim held (and heartbeating) forever.
                if not self.finished:
                    self.__exit__(type(error), error, None)
                raise
        elif isinstance(exc, Exception) and self.on_error == "fail" and not isinstance(exc, LeaseLostError):
            self.record_failure(f"{type(exc).__name__}: {exc}")
        else:
            self._release_quietly()

    def _release_quietly(self) -> None:
        try:
            self.release()
        except Exception:  # the body's own error is the one to surface
            log.warning("could not release %s/%s", self.namespace, self.key, exc_info=True)


class AsyncStep(_StepState):
    def __init__(self, client: AsyncCheckpointClient, ns: str, key: str, **options: Any) -> None:
        super().__init__(ns, key, **options)
        self.client = client
        self._beat: asyncio.Task[None] | None = None

    def store_url(self) -> str | None:
        return self.client.location.command_url

    async def acquire(self) -> Literal["claimed", "done"]:
        poll = _Poll(self.wait_timeout)
        while True:
            outcome = await self.client.claim(self.namespace, self.key, self.owner_run_id, self.lease_ms)
            decided = self.settle(outcome, poll)
            if decided == "claimed":
                if self.use_heartbeat:
                    self._beat = asyncio.get_running_loop().create_task(self._heartbeat())
                return "claimed"
            if decided == "done":
                return "done"
            await asyncio.sleep(float(decided))

    async def _heartbeat(self) -> None:
        interval = self.lease_ms / 3000
        while True:
            await asyncio.sleep(interval)
            try:
                renewed = await self.client.touch(self.namespace, self.key, self.held_token(), self.lease_ms)
            except Exception:
                log.warning("heartbeat of %s/%s failed; retrying", self.namespace, self.key, exc_info=True)
                continue
            if renewed is None:
                self.lease_lost = True
                log.warning("lease of %s/%s was lost while the step ran", self.namespace, self.key)
                return

    async def _stop(self) -> str:
        token = self.held_token()
        self.finished = True
        if self._beat is not None:
            self._beat.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._beat
            self._beat = None
        return token

    async def complete(self, result: Any = None, result_ref: str | None = None) -> Checkpoint:
        from .serialize import encode_result

        self.held_token()
        encode_result(result)
        token = await self._stop()
        try:
            self.checkpoint = await self.client.done(self.namespace, self.key, token, result, result_ref)
        except BaseException as exc:
            await self._give_back(token, exc)
            raise
        self.value = result
        return self.checkpoint

    async def _give_back(self, token: str, exc: BaseException) -> None:
        """As in Step: a `done` or `fail` cut off midway (cancelled, a store error) frees the key now."""
        if isinstance(exc, LeaseLostError):
            return
        try:
            await asyncio.shield(self.client.abandon(self.namespace, self.key, token))
        except Exception:
            log.warning("could not release %s/%s", self.namespace, self.key, exc_info=True)

    async def release(self) -> bool:
        token = await self._stop()
        return await self.client.abandon(self.namespace, self.key, token)

    async def record_failure(self, error: str) -> Checkpoint:
        token = await self._stop()
        try:
            self.checkpoint = await self.client.fail(self.namespace, self.key, error, token)
        except BaseException as exc:
            await self._give_back(token, exc)
            raise
        return self.checkpoint

    async def __aenter__(self) -> AsyncStep:
        await self.acquire()
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if self.skipped or self.finished:
            return
        if exc is None:
            try:
                await self.complete(self.value, self.result_ref)
            except BaseException as error:
                if not self.finished:  # as in Step: never leave an unstorable value's claim held
                    await self.__aexit__(type(error), error, None)
                raise
        elif isinstance(exc, Exception) and self.on_error == "fail" and not isinstance(exc, LeaseLostError):
            await self.record_failure(f"{type(exc).__name__}: {exc}")
        else:
            try:
                await asyncio.shield(self.release())
            except Exception:
                log.warning("could not release %s/%s", self.namespace, self.key, exc_info=True)


class Heartbeat:
    """One daemon thread per client renews every held lease at a third of its length."""

    def __init__(self, client: CheckpointClient) -> None:
        self.client = client
        self._due: list[tuple[float, int, Step]] = []
        self._live: set[int] = set()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def add(self, step: Step) -> None:
        with self._wake:
            self._live.add(id(step))
            heapq.heappush(self._due, (time.monotonic() + step.lease_ms / 3000, id(step), step))
            if self._thread is None or not self._thread.is_alive():
                self._stopped = False
                self._thread = threading.Thread(target=self._loop, name="mooncat-heartbeat", daemon=True)
                self._thread.start()
            self._wake.notify()

    def remove(self, step: Step) -> None:
        with self._wake:
            self._live.discard(id(step))

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._live.clear()
            self._wake.notify()

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._stopped and (not self._due or self._due[0][0] > time.monotonic()):
                    timeout = None if not self._due else self._due[0][0] - time.monotonic()
                    self._wake.wait(timeout)
                if self._stopped:
                    return
                _, ident, step = heapq.heappop(self._due)
                if ident not in self._live:
                    continue
            self._beat(step)

    def _beat(self, step: Step) -> None:
        token = step.lease_token
        if token is None or step.finished:
            return
        try:
            renewed = self.client.touch(step.namespace, step.key, token, step.lease_ms)
        except Exception:
            log.warning("heartbeat of %s/%s failed; retrying", step.namespace, step.key, exc_info=True)
            renewed = step.checkpoint  # keep beating: a passing store error must not drop the lease
        if renewed is None:
            step.lease_lost = True
            log.warning("lease of %s/%s was lost while the step ran", step.namespace, step.key)
            self.remove(step)
            return
        with self._wake:
            if id(step) in self._live:
                heapq.heappush(self._due, (time.monotonic() + step.lease_ms / 3000, id(step), step))


def checkpointed(client: CheckpointClient, ns: str, key: KeySpec, **options: Any) -> Callable[[F], F]:
    """Decorate a plain function: a finished key returns its stored result without calling the function."""
    # Everything a call would refuse is refused here, when the function is decorated.
    check_namespace(ns)
    check_key_spec(key)
    unknown = sorted(set(options) - _STEP_OPTIONS)
    if unknown:
        raise InvalidArgumentError(f"unknown step option {unknown[0]!r}; the options are {sorted(_STEP_OPTIONS)}")
    check_optional_str(options.get("owner_run_id"), "owner_run_id")
    check_step_options(
        options.get("on_busy", "wait"), options.get("on_error", "abandon"), options.get("wait_timeout"),
        options.get("lease_ms"), options.get("heartbeat", True),
    )

    def decorate(func: F) -> F:
        if inspect.iscoroutinefunction(func):
            raise InvalidArgumentError(
                "use an AsyncCheckpointClient step for coroutine functions (async with client.step(...))"
            )
        check_key_spec(key, func)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            step = client.step(ns, render_key(key, func, args, kwargs), **options)
            with step:
                if step.skipped:
                    return step.result
                step.value = func(*args, **kwargs)
            return step.value

        return wrapper  # type: ignore[return-value]

    return decorate
