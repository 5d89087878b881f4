"""Prefect tasks whose runs claim, skip and record keys in a mooncat-checkpoint store.

``checkpoint_task`` builds a ``CheckpointTask``: a real ``prefect.Task`` whose function is wrapped so that every
task run first claims its key. A key that is already done (by any earlier flow run, an Airflow task, a
TypeScript job) is not run again: the task run ends ``Completed`` with the state name ``Cached``, as Prefect's own
cache hits do, and returns the stored value. The checkpoint store, not Prefect's cache, is the source of truth.

Because the behaviour lives in the wrapped function and in ``CheckpointTask.with_options``, every Prefect task
option keeps working: retries, timeouts, tags, ``task_run_name``, ``.submit``, ``.map``, any task runner.
"""

from __future__ import annotations

import enum
import functools
import inspect
import json
import re
import threading
import weakref
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, replace
from typing import Any, Generic, Literal, ParamSpec, TypeVar, cast, overload
from uuid import UUID

from mooncat_checkpoint import (
    AsyncCheckpointClient,
    AsyncStep,
    Checkpoint,
    CheckpointClient,
    InvalidArgumentError,
    LeaseLostError,
    Step,
    StepFailedError,
    render_key,
)
from mooncat_checkpoint.keys import template_fields
from mooncat_checkpoint.step import check_step_options
from prefect.cache_policies import NO_CACHE, CachePolicy
from prefect.context import FlowRunContext, TaskRunContext
from prefect.logging import get_logger
from prefect.results import ResultRecord, ResultRecordMetadata
from prefect.settings import PREFECT_TASKS_REFRESH_CACHE
from prefect.states import Completed, Failed, State, is_state_iterable
from prefect.tasks import Task
from prefect.utilities.asyncutils import run_coro_as_sync

from . import artifacts, results
from .artifacts import Outcome

P = ParamSpec("P")
R = TypeVar("R")

OnBusy = Literal["wait", "raise"]
OnFailure = Literal["abandon", "fail"]
KeySpec = str | Callable[[dict[str, Any]], str] | CachePolicy

logger = get_logger("mooncat_prefect")

# Set on an exception raised because of the checkpoint itself (a failed record, a bad key, a result that
# cannot be restored): running the task again cannot change the outcome, so Prefect must not retry it.
_NO_RETRY_ATTR = "__mooncat_no_retry__"
# The wrapped function carries its options, so a Task rebuilt around it (with_options) finds them again.
_OPTIONS_ATTR = "__mooncat_checkpoint__"
_NAMESPACE = re.compile(r"[A-Za-z0-9_-]+")
# How often a result whose artifact vanished is recomputed before giving up.
_MISSING_RESULT_ATTEMPTS = 3


def _no_retry(exc: BaseException) -> BaseException:
    setattr(exc, _NO_RETRY_ATTR, True)
    return exc


def is_retryable(exc: BaseException | None) -> bool:
    return not getattr(exc, _NO_RETRY_ATTR, False)


@dataclass(frozen=True)
class CheckpointOptions:
    """What ``checkpoint_task`` was given, besides the Prefect task options."""

    namespace: str
    key: KeySpec | None = None
    url: str | None = None
    client: CheckpointClient | AsyncCheckpointClient | None = None
    lease_ms: int | None = None
    on_busy: OnBusy = "wait"
    wait_timeout: float | None = None
    on_failure: OnFailure = "abandon"
    refresh: bool = False

    def __post_init__(self) -> None:
        # Checked here, at decoration time, so a typo fails on import rather than in the middle of a run.
        if not isinstance(self.namespace, str) or not _NAMESPACE.fullmatch(self.namespace):
            raise InvalidArgumentError(
                f"namespace {self.namespace!r} may contain only letters, digits, '_' and '-'"
            )
        if self.on_busy not in ("wait", "raise"):
            raise InvalidArgumentError(f"on_busy must be 'wait' or 'raise', got {self.on_busy!r}")
        if self.on_failure not in ("abandon", "fail"):
            raise InvalidArgumentError(f"on_failure must be 'abandon' or 'fail', got {self.on_failure!r}")
        if self.url is not None and self.client is not None:
            raise InvalidArgumentError("give either url= or client=, not both")
        if not isinstance(self.refresh, bool):  # "no" would be true and recompute every done key
            raise InvalidArgumentError(f"refresh must be True or False, got {self.refresh!r}")
        # The step's own checks, so a bad lease or wait fails where it is written, not inside a task run.
        check_step_options(self.on_busy, "abandon", self.wait_timeout, self.lease_ms, True)
        if self.key is not None and not isinstance(self.key, (str, CachePolicy)) and not callable(self.key):
            raise InvalidArgumentError(
                f"key must be a template string, a callable or a Prefect CachePolicy, got {self.key!r}"
            )

    def sync_client(self) -> CheckpointClient:
        if isinstance(self.client, CheckpointClient):
            return self.client
        url = self.client.shareable_url if isinstance(self.client, AsyncCheckpointClient) else self.url
        return _shared_sync_client(url)

    def async_client(self) -> AsyncCheckpointClient:
        if isinstance(self.client, AsyncCheckpointClient):
            return self.client
        url = self.client.shareable_url if isinstance(self.client, CheckpointClient) else self.url
        return _shared_async_client(url)


# One client per URL and process: clients connect lazily, so a task pickled into another process (process
# pool, remote worker) gets its own connection there. Async clients also per event loop, since their
# backends may hold loop-bound resources.
_clients_lock = threading.Lock()
_sync_clients: dict[str | None, CheckpointClient] = {}
_async_clients: weakref.WeakKeyDictionary[Any, dict[str | None, AsyncCheckpointClient]] = (
    weakref.WeakKeyDictionary()
)


def _shared_sync_client(url: str | None) -> CheckpointClient:
    with _clients_lock:
        client = _sync_clients.get(url)
        if client is None:
            client = _sync_clients[url] = CheckpointClient(url)
        return client


def _shared_async_client(url: str | None) -> AsyncCheckpointClient:
    import asyncio

    loop = asyncio.get_running_loop()
    with _clients_lock:
        per_loop = _async_clients.setdefault(loop, {})
        client = per_loop.get(url)
        if client is None:
            client = per_loop[url] = AsyncCheckpointClient(url)
        return client


# ---------------------------------------------------------------------------------------------------------
# Keys


def _canonical_arguments(values: dict[str, Any]) -> str:
    """The key of a task given no ``key=``: its bound arguments as compact JSON with sorted names.

    Only plain values are accepted, so that the same call gives the same key in any process and any
    language (``JSON.stringify`` of an object with sorted keys yields the same text for str/int/bool/null).
    """
    plain: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, enum.Enum):
            value = value.value
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise InvalidArgumentError(
                f"argument {name!r} is a {type(value).__name__}, which has no stable key; "
                "give checkpoint_task a key= template over plain arguments or a key callable"
            )
        plain[name] = value
    return json.dumps(plain, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def compute_key(
    options: CheckpointOptions, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> str:
    spec = options.key
    try:
        if isinstance(spec, CachePolicy):
            return _cache_policy_key(spec)
        return render_key(spec if spec is not None else _canonical_arguments, fn, args, kwargs)
    except InvalidArgumentError as exc:
        raise _no_retry(exc) from None


def _cache_policy_key(policy: CachePolicy) -> str:
    # Prefect cache policies hash Python objects and source code: such keys are Python-only, and another
    # orchestrator or a TypeScript job cannot compute them.
    task_ctx = TaskRunContext.get()
    if task_ctx is None:
        raise InvalidArgumentError("a CachePolicy key= can only be computed inside a Prefect task run")
    flow_ctx = FlowRunContext.get()
    key = policy.compute_key(
        task_ctx=task_ctx,
        inputs=dict(task_ctx.parameters or {}),
        flow_parameters=dict(flow_ctx.parameters or {}) if flow_ctx else {},
    )
    if not key:
        raise InvalidArgumentError(f"cache policy {policy!r} gave no key for this task run")
    return key


# ---------------------------------------------------------------------------------------------------------
# Run-time helpers shared by the blocking and the async path


@dataclass
class _Run:
    """One task run (attempt) of a checkpointed task."""

    options: CheckpointOptions
    key: str
    ctx: TaskRunContext | None

    @property
    def namespace(self) -> str:
        return self.options.namespace

    @property
    def task_run_id(self) -> UUID | None:
        return self.ctx.task_run.id if self.ctx else None

    @property
    def flow_run_id(self) -> UUID | None:
        return self.ctx.task_run.flow_run_id if self.ctx else None

    @property
    def task_name(self) -> str:
        return self.ctx.task.name if self.ctx else "(no task run)"

    @property
    def owner_run_id(self) -> str | None:
        # Informational only (the lease token is what fences): names the flow run and the task run, so that a
        # record can be traced back to the Prefect UI, and abandon_owned can sweep one task run's claims.
        if self.ctx is None:
            return None
        flow_run = self.flow_run_id or "-"
        return f"prefect:{flow_run}:{self.task_run_id}"

    def step_options(self) -> dict[str, Any]:
        return {
            "owner_run_id": self.owner_run_id,
            "lease_ms": self.options.lease_ms,
            "on_busy": self.options.on_busy,
            "wait_timeout": self.options.wait_timeout,
        }

    def refresh_requested(self) -> bool:
        if self.options.refresh:
            return True
        if self.ctx is not None and self.ctx.task.refresh_cache is not None:
            return bool(self.ctx.task.refresh_cache)
        return bool(PREFECT_TASKS_REFRESH_CACHE.value())

    def final_attempt_state(self, failure: Exception | State[Any]) -> State[Any]:
        if isinstance(failure, State):
            return failure
        return Failed(data=failure, message=f"Task run encountered an exception: {failure!r}")

    def retries_left(self) -> bool:
        if self.ctx is None:
            return False
        # run_count counts Running states, the first attempt included: the engine retries while the retries
        # it has made (run_count - 1) are fewer than task.retries.
        return self.ctx.task_run.run_count - 1 < self.ctx.task.retries

    def in_memory(self, value: Any) -> Any:
        """``value`` as the task run's result record, when Prefect will not persist it.

        Given a bare value, Prefect builds this record itself and resolves a storage path on disk for it,
        although a value that is not persisted never goes there; that costs more than our whole claim.
        Prefect's own cache hits skip it the same way, by handing over a ready record."""
        if self.ctx is None or self.ctx.persist_result or self.ctx.task.result_storage_key is not None:
            return value
        return ResultRecord(
            result=value,
            metadata=ResultRecordMetadata(storage_key=None, serializer=self.ctx.result_store.serializer),
        )

    def returned(self, returned: Any) -> Any:
        # States, and collections of them, keep Prefect's own meaning (it aggregates them); plain values
        # become a ready record.
        if isinstance(returned, (State, ResultRecord)) or is_state_iterable(returned):
            return returned
        return self.in_memory(returned)

    def cached_state(self, checkpoint: Checkpoint, value: Any) -> State[Any]:
        owner = checkpoint.owner_run_id or "an owner that left no run id"
        return Completed(
            name="Cached",
            message=f"Skipped: checkpoint {self.namespace}/{self.key} was already done by {owner}.",
            data=self.in_memory(value),
        )

    def count(self, outcome: Outcome) -> None:
        artifacts.record(self.flow_run_id, self.task_name, outcome)

    def describe(self, failure: Exception | State[Any]) -> str:
        if isinstance(failure, State):
            return f"task returned state {failure.name}: {failure.message or ''}".strip()
        return f"{type(failure).__name__}: {failure}"


def _own_context(options: CheckpointOptions) -> TaskRunContext | None:
    # The task run context, if the running task is this checkpointed task. Calling ``.fn`` of a checkpointed
    # task from inside another task is a plain call: it must neither take the outer task's run ids and
    # retries nor hand a Prefect state back to the caller instead of a value.
    ctx = TaskRunContext.get()
    if ctx is None or getattr(ctx.task.fn, _OPTIONS_ATTR, None) is not options:
        return None
    return ctx


# Claims kept between two attempts of one task run, so a Prefect retry reuses the lease instead of racing
# other runners for the key. Keyed by task run id; the heartbeat keeps renewing the lease meanwhile.
_held_lock = threading.Lock()
_held: dict[UUID, Step | AsyncStep] = {}


def _take_held(run: _Run) -> Step | AsyncStep | None:
    if run.task_run_id is None:
        return None
    with _held_lock:
        step = _held.pop(run.task_run_id, None)
    if step is None or step.lease_lost or step.key != run.key or step.namespace != run.namespace:
        return None
    return step


def _hold(run: _Run, step: Step | AsyncStep) -> None:
    assert run.task_run_id is not None
    with _held_lock:
        _held[run.task_run_id] = step


def _will_retry_sync(run: _Run, failure: Exception | State[Any]) -> bool:
    verdict = _retry_verdict(run, failure)
    if inspect.isawaitable(verdict):
        verdict = run_coro_as_sync(_await(verdict))
    return bool(verdict)


async def _will_retry_async(run: _Run, failure: Exception | State[Any]) -> bool:
    verdict = _retry_verdict(run, failure)
    if inspect.isawaitable(verdict):
        verdict = await verdict
    return bool(verdict)


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _retry_verdict(run: _Run, failure: Exception | State[Any]) -> Any:
    # Mirrors the engine's decision (retries left, then retry_condition_fn) so that the claim is kept exactly
    # when a retry will come to take it back.
    if not run.retries_left() or run.ctx is None:
        return False
    condition = run.ctx.task.retry_condition_fn
    if condition is None:
        return True
    try:
        return condition(run.ctx.task, run.ctx.task_run, run.final_attempt_state(failure))
    except Exception:
        return False  # the engine treats a failing condition as "do not retry"


# ---------------------------------------------------------------------------------------------------------
# The blocking path


def _acquire_sync(run: _Run) -> tuple[Step, bool, Any]:
    """Claim the key, or find it done. Returns (step, skipped, stored value)."""
    client = run.options.sync_client()
    if run.refresh_requested():
        _forget_finished_sync(client, run)
    for _ in range(_MISSING_RESULT_ATTEMPTS):
        step = client.step(run.namespace, run.key, **run.step_options())
        try:
            outcome = step.acquire()
        except StepFailedError as exc:
            run.count(Outcome.FAILED)
            raise _no_retry(exc) from None
        if outcome == "claimed":
            return step, False, None
        assert step.checkpoint is not None
        try:
            return step, True, results.decode(step.checkpoint)
        except results.ResultMissingError as exc:
            # The record promises a value that no longer exists; returning anything would be a broken
            # value, so the key is treated as not done and computed again.
            logger.warning("%s; computing it again", exc)
            client.reset(run.namespace, run.key)
        except results.ResultUnavailableError as exc:
            raise _no_retry(exc) from None
    raise _no_retry(InvalidArgumentError(f"result of {run.namespace}/{run.key} keeps disappearing"))


def _forget_finished_sync(client: CheckpointClient, run: _Run) -> None:
    # Only a finished record is removed: a live claim belongs to someone running right now, and the normal
    # busy handling waits for it.
    record = client.get(run.namespace, run.key)
    if record is not None and record.status != "claimed":
        client.reset(run.namespace, run.key)


def _settle_failure_sync(run: _Run, step: Step, failure: Exception | State[Any]) -> None:
    try:
        if run.ctx is not None and _will_retry_sync(run, failure):
            _hold(run, step)
            return
        run.count(Outcome.FAILED)
        if run.options.on_failure == "fail":
            step.record_failure(run.describe(failure))
        else:
            step.release()
    except LeaseLostError:
        pass  # someone else holds the key now; nothing of ours to release
    except Exception:
        # The task's own failure is the error to surface; the lease will expire on its own.
        logger.warning("could not settle %s/%s after a failure", run.namespace, run.key, exc_info=True)


def _release_quietly_sync(step: Step) -> None:
    try:
        step.release()
    except Exception:
        logger.warning("could not release %s/%s", step.namespace, step.key, exc_info=True)


def _finish_sync(run: _Run, step: Step, value: Any) -> None:
    result, result_ref = results.encode(value, run.namespace)
    try:
        step.complete(result=result, result_ref=result_ref)
    except LeaseLostError:
        # Fencing: another runner took the key over (our lease lapsed); its record wins. Our value is still
        # the correct output of this call, so it is returned, just not recorded.
        logger.warning("lease on %s/%s was lost; this run's result is not recorded", run.namespace, run.key)
    run.count(Outcome.RAN)


def _call_sync(options: CheckpointOptions, fn: Callable[..., Any], args: tuple[Any, ...],
               kwargs: dict[str, Any]) -> Any:
    run = _Run(options, compute_key(options, fn, args, kwargs), _own_context(options))
    step = _take_held(run)
    if step is None:
        step, skipped, stored = _acquire_sync(run)
        if skipped:
            run.count(Outcome.SKIPPED)
            assert step.checkpoint is not None
            return run.cached_state(step.checkpoint, stored) if run.ctx else stored
    assert isinstance(step, Step)
    try:
        returned = fn(*args, **kwargs)
    except Exception as exc:
        _settle_failure_sync(run, step, exc)
        raise
    except BaseException:
        # Cancellation, KeyboardInterrupt, crash signals: free the key at once for whoever runs next.
        _release_quietly_sync(step)
        raise
    try:
        if isinstance(returned, State):
            if not returned.is_completed():
                _settle_failure_sync(run, step, returned)
                return returned
            value = returned.result(_sync=True)  # type: ignore[call-overload]
        else:
            value = returned
        _finish_sync(run, step, value)
    except Exception as exc:
        _settle_failure_sync(run, step, exc)
        raise
    except BaseException:
        _release_quietly_sync(step)
        raise
    return run.returned(returned)


# ---------------------------------------------------------------------------------------------------------
# The async path: the same steps, awaiting the async client so the event loop never blocks


async def _acquire_async(run: _Run) -> tuple[AsyncStep, bool, Any]:
    client = run.options.async_client()
    if run.refresh_requested():
        record = await client.get(run.namespace, run.key)
        if record is not None and record.status != "claimed":
            await client.reset(run.namespace, run.key)
    for _ in range(_MISSING_RESULT_ATTEMPTS):
        step = client.astep(run.namespace, run.key, **run.step_options())
        try:
            outcome = await step.acquire()
        except StepFailedError as exc:
            run.count(Outcome.FAILED)
            raise _no_retry(exc) from None
        if outcome == "claimed":
            return step, False, None
        assert step.checkpoint is not None
        try:
            return step, True, await results.adecode(step.checkpoint)
        except results.ResultMissingError as exc:
            logger.warning("%s; computing it again", exc)
            await client.reset(run.namespace, run.key)
        except results.ResultUnavailableError as exc:
            raise _no_retry(exc) from None
    raise _no_retry(InvalidArgumentError(f"result of {run.namespace}/{run.key} keeps disappearing"))


async def _settle_failure_async(run: _Run, step: AsyncStep, failure: Exception | State[Any]) -> None:
    try:
        if run.ctx is not None and await _will_retry_async(run, failure):
            _hold(run, step)
            return
        run.count(Outcome.FAILED)
        if run.options.on_failure == "fail":
            await step.record_failure(run.describe(failure))
        else:
            await step.release()
    except LeaseLostError:
        pass
    except Exception:
        logger.warning("could not settle %s/%s after a failure", run.namespace, run.key, exc_info=True)


async def _release_quietly_async(step: AsyncStep) -> None:
    import asyncio

    try:
        # Shielded: this runs while the task is being cancelled, and the release must still reach the store.
        await asyncio.shield(step.release())
    except BaseException:
        logger.warning("could not release %s/%s", step.namespace, step.key, exc_info=True)


async def _call_async(options: CheckpointOptions, fn: Callable[..., Coroutine[Any, Any, Any]],
                      args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    run = _Run(options, compute_key(options, fn, args, kwargs), _own_context(options))
    step = _take_held(run)
    if step is None:
        step, skipped, stored = await _acquire_async(run)
        if skipped:
            run.count(Outcome.SKIPPED)
            assert step.checkpoint is not None
            return run.cached_state(step.checkpoint, stored) if run.ctx else stored
    assert isinstance(step, AsyncStep)
    try:
        returned = await fn(*args, **kwargs)
    except Exception as exc:
        await _settle_failure_async(run, step, exc)
        raise
    except BaseException:
        await _release_quietly_async(step)
        raise
    try:
        if isinstance(returned, State):
            if not returned.is_completed():
                await _settle_failure_async(run, step, returned)
                return returned
            value = await returned.aresult()
        else:
            value = returned
        result, result_ref = await results.aencode(value, run.namespace)
        try:
            await step.complete(result=result, result_ref=result_ref)
        except LeaseLostError:
            logger.warning("lease on %s/%s was lost; this run's result is not recorded", run.namespace, run.key)
        run.count(Outcome.RAN)
    except Exception as exc:
        await _settle_failure_async(run, step, exc)
        raise
    except BaseException:
        await _release_quietly_async(step)
        raise
    return run.returned(returned)


# ---------------------------------------------------------------------------------------------------------
# The Task


def wrap(fn: Callable[..., Any], options: CheckpointOptions) -> Callable[..., Any]:
    """The function a CheckpointTask runs: ``fn`` behind claim / skip / done. Keeps fn's signature."""
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        raise InvalidArgumentError("checkpoint_task cannot wrap a generator: its value is produced piecemeal")
    if isinstance(options.key, str):
        _check_template(options.key, fn)
    wrapped: Callable[..., Any]
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            return await _call_async(options, fn, args, kwargs)

        wrapped = run_async
    else:

        @functools.wraps(fn)
        def run_sync(*args: Any, **kwargs: Any) -> Any:
            return _call_sync(options, fn, args, kwargs)

        wrapped = run_sync
    setattr(wrapped, _OPTIONS_ATTR, options)
    return wrapped


def _check_template(template: str, fn: Callable[..., Any]) -> None:
    # A field that names no parameter can never be filled: say so when the task is defined, not in the middle
    # of a flow run. Values are still checked per call (a field may be filled by **kwargs, or hold an object).
    fields = template_fields(template)
    parameters = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    unknown = [name for name in fields if name not in parameters]
    if unknown:
        raise InvalidArgumentError(
            f"key template {template!r} uses {{{unknown[0]}}}, which is not a parameter of "
            f"{getattr(fn, '__name__', fn)!r} (parameters: {', '.join(parameters) or 'none'})"
        )


class _RetryCondition:
    """Prefect's retry_condition_fn for a checkpointed task: never retry a checkpoint error, else ask the
    user's condition (if any). Kept as an object so that with_options can find the user's own condition."""

    def __init__(self, user_condition: Callable[..., Any] | None) -> None:
        self.user_condition = user_condition

    def __call__(self, task: Task[..., Any], task_run: Any, state: State[Any]) -> Any:
        data = state.data
        exc = data if isinstance(data, BaseException) else getattr(data, "result", None)
        if isinstance(exc, BaseException) and not is_retryable(exc):
            return False
        if self.user_condition is None:
            return True
        return self.user_condition(task, task_run, state)

    def __repr__(self) -> str:
        return f"checkpoint_retry_condition({self.user_condition!r})"


# Task.__init__ parameter -> the attribute it is stored in, where the two differ.
_ATTRIBUTE_OF_PARAMETER = {
    "on_completion": "on_completion_hooks",
    "on_failure": "on_failure_hooks",
    "on_running": "on_running_hooks",
    "on_rollback": "on_rollback_hooks",
    "on_commit": "on_commit_hooks",
    "persist_result": "_user_persist_result",
    "cache_policy": "_user_cache_policy",
}

_CHECKPOINT_OPTION_NAMES = {
    "namespace", "key", "url", "client", "lease_ms", "on_busy", "wait_timeout", "refresh",
}


class CheckpointTask(Task[P, R], Generic[P, R]):
    """A Prefect Task whose runs skip keys that are already done in the checkpoint store."""

    checkpoint_options: CheckpointOptions

    def __init__(self, fn: Callable[P, R], *, checkpoint_options: CheckpointOptions, **task_options: Any) -> None:
        if getattr(fn, _OPTIONS_ATTR, None) is not checkpoint_options:
            fn = cast(Callable[P, R], wrap(fn, checkpoint_options))
        condition = task_options.get("retry_condition_fn")
        if isinstance(condition, _RetryCondition):
            condition = condition.user_condition
        task_options["retry_condition_fn"] = _RetryCondition(condition)
        # Prefect's own cache must not answer before our claim does: it would skip by a Python-only hash and
        # never record the key in the store. So the default policy is NO_CACHE.
        task_options.setdefault("cache_policy", NO_CACHE)
        refresh_cache = task_options.get("refresh_cache")
        if refresh_cache is not None and not isinstance(refresh_cache, bool):  # "no" would read as true
            raise InvalidArgumentError(f"refresh_cache must be True, False or None, got {refresh_cache!r}")
        super().__init__(fn=fn, **task_options)
        self.checkpoint_options = checkpoint_options

    def with_options(self, **options: Any) -> CheckpointTask[P, R]:  # type: ignore[override]
        """Prefect's ``with_options``, plus the checkpoint options (``namespace``, ``key``, ``url``,
        ``client``, ``lease_ms``, ``on_busy``, ``wait_timeout``, ``refresh``, and ``on_failure`` given as
        "abandon" or "fail"). The result is again a CheckpointTask."""
        changes = {name: options.pop(name) for name in list(options) if name in _CHECKPOINT_OPTION_NAMES}
        if isinstance(options.get("on_failure"), str):
            changes["on_failure"] = options.pop("on_failure")
        if changes.get("url") is not None:
            changes.setdefault("client", None)
        if changes.get("client") is not None:
            changes.setdefault("url", None)
        checkpoint_options = replace(self.checkpoint_options, **changes) if changes else self.checkpoint_options
        # Let Prefect merge the task options by its own rules, then rebuild our class from the merged task.
        merged = Task.with_options(self, **options)
        init_options: dict[str, Any] = {}
        for name in inspect.signature(Task.__init__).parameters:
            if name in ("self", "fn"):
                continue
            init_options[name] = getattr(merged, _ATTRIBUTE_OF_PARAMETER.get(name, name))
        fn = getattr(self.fn, "__wrapped__", self.fn) if changes else self.fn
        return CheckpointTask(fn, checkpoint_options=checkpoint_options, **init_options)

    # A direct call returns the value, as for any task. The wrapped function returns a `Cached` state on a
    # skip (that is how the state gets its name), and Prefect hands a returned state back as is from a direct
    # call, so the call asks for the state and unwraps it here.
    @overload
    def __call__(self, *args: Any, return_state: Literal[False] = False, wait_for: Any = None,
                 **kwargs: Any) -> Any: ...

    @overload
    def __call__(self, *args: Any, return_state: Literal[True], wait_for: Any = None,
                 **kwargs: Any) -> State[Any]: ...

    def __call__(self, *args: Any, return_state: bool = False, wait_for: Any = None, **kwargs: Any) -> Any:
        outcome = super().__call__(*args, return_state=True, wait_for=wait_for, **kwargs)  # type: ignore[call-overload]
        if return_state:
            return outcome
        if self.isasync:
            return _async_result(outcome)
        if isinstance(outcome, State):
            if outcome.is_completed() and isinstance(outcome.data, ResultRecord):
                # The value is in memory: skip State.result(), whose async dispatch costs milliseconds.
                return outcome.data.result
            return outcome.result(_sync=True)  # type: ignore[call-overload]
        return outcome  # e.g. a visualisation placeholder


async def _async_result(outcome: Any) -> Any:
    state = await outcome if inspect.isawaitable(outcome) else outcome
    if isinstance(state, State):
        if state.is_completed() and isinstance(state.data, ResultRecord):
            return state.data.result
        return await state.aresult()
    return state


def _default_namespace(fn: Callable[..., Any]) -> str:
    name = getattr(fn, "__name__", "") or "task"
    cleaned = "".join(ch if ch.isalnum() or ch in "_-" else "-" for ch in name)
    return cleaned.encode("ascii", "replace").decode().replace("?", "-")


@overload
def checkpoint_task(__fn: Callable[P, R]) -> CheckpointTask[P, R]: ...


@overload
def checkpoint_task(
    __fn: None = None,
    *,
    namespace: str | None = None,
    key: KeySpec | None = None,
    url: str | None = None,
    client: CheckpointClient | AsyncCheckpointClient | None = None,
    lease_ms: int | None = None,
    on_busy: OnBusy = "wait",
    wait_timeout: float | None = None,
    on_failure: OnFailure | Iterable[Callable[..., Any]] = "abandon",
    refresh: bool = False,
    **task_options: Any,
) -> Callable[[Callable[P, R]], CheckpointTask[P, R]]: ...


def checkpoint_task(
    __fn: Callable[P, R] | None = None,
    *,
    namespace: str | None = None,
    key: KeySpec | None = None,
    url: str | None = None,
    client: CheckpointClient | AsyncCheckpointClient | None = None,
    lease_ms: int | None = None,
    on_busy: OnBusy = "wait",
    wait_timeout: float | None = None,
    on_failure: OnFailure | Iterable[Callable[..., Any]] = "abandon",
    refresh: bool = False,
    **task_options: Any,
) -> CheckpointTask[P, R] | Callable[[Callable[P, R]], CheckpointTask[P, R]]:
    """Decorate a function as a Prefect task whose runs are checkpointed by key.

    Args:
        namespace: the checkpoint namespace (``[A-Za-z0-9_-]+``); default: the function's name.
        key: a template over the bound arguments (``"orders/{day}"``), a callable receiving them as a dict and
            returning a string, or a Prefect ``CachePolicy`` (its keys are Python-only hashes that other
            languages cannot compute). Default: the bound arguments as compact JSON with sorted names.
        url / client: the checkpoint store; default: ``MOONCAT_CHECKPOINT_URL``, the nearest
            ``mooncat-checkpoint.config.json``, else ``file://./.mooncat/checkpoints``.
        lease_ms: lease length; the lease is renewed in the background while the function runs.
        on_busy: ``"wait"`` for another runner's live claim (until done, then Cached; or until its lease
            expires, then claim), or ``"raise"`` StepBusyError. ``wait_timeout`` bounds the wait.
        on_failure: after the final attempt fails, ``"abandon"`` (the next flow run tries again) or ``"fail"``
            (record a terminal failure, until ``mooncat-checkpoint reset``). A list of callables is passed to
            Prefect as its ``on_failure`` state hooks instead.
        refresh: run and record again even if the key is done. Prefect's ``refresh_cache`` option and
            ``PREFECT_TASKS_REFRESH_CACHE`` setting do the same.
        task_options: any ``prefect.task`` option (retries, retry_delay_seconds, tags, timeout_seconds, ...).
    """
    if on_failure is None or isinstance(on_failure, str):
        failure_mode = cast(OnFailure, on_failure or "abandon")
    else:
        task_options["on_failure"] = list(on_failure)
        failure_mode = "abandon"

    # Built (and so checked) before there is a function to decorate: a bad option fails where it is written.
    options = CheckpointOptions(
        namespace=namespace if namespace is not None else "task",
        key=key,
        url=url,
        client=client,
        lease_ms=lease_ms,
        on_busy=on_busy,
        wait_timeout=wait_timeout,
        on_failure=failure_mode,
        refresh=refresh,
    )

    def decorate(fn: Callable[P, R]) -> CheckpointTask[P, R]:
        fn_options = options if namespace is not None else replace(options, namespace=_default_namespace(fn))
        return CheckpointTask(fn, checkpoint_options=fn_options, **task_options)

    if __fn is not None:
        return decorate(__fn)
    return decorate
