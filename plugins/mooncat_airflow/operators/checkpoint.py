"""Run a task under a checkpoint: claim its key, skip it when done, record done or fail afterwards."""

from __future__ import annotations

import datetime as dt
import inspect
import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NoReturn, TypeVar, cast, get_args

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import BaseOperator, BaseOperatorLink, conf
from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowRescheduleException,
    AirflowSkipException,
    AirflowTaskTimeout,
    TaskDeferred,
)
from mooncat_checkpoint.errors import reset_command

from mooncat_airflow.hooks.checkpoint import CheckpointHook
from mooncat_airflow.links.checkpoint import CheckpointLink
from mooncat_airflow.triggers.checkpoint import (
    STATUS_DONE,
    STATUS_FAILED,
    STATUS_FREE,
    CheckpointTrigger,
)
from mooncat_airflow.utils.context import is_last_try, key_uses_map_index, map_index_of, owner_run_id

if TYPE_CHECKING:
    import jinja2
    from airflow.sdk import Context
    from mooncat_checkpoint import Checkpoint, CheckpointClient, Step, StepFailedError

OnDone = Literal["return", "skip"]
OnBusy = Literal["wait", "fail"]
BusyMode = Literal["poke", "reschedule"]
OnError = Literal["fail", "release"]
OnFailedRecord = Literal["raise", "reset"]
KeySpec = str | Callable[[dict[str, Any]], str]

OperatorT = TypeVar("OperatorT", bound=BaseOperator)


def _check_choice(name: str, value: str, allowed: Any) -> None:
    choices = get_args(allowed)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, not {value!r}")


def _is_seconds(value: object) -> bool:
    # bool is an int, but True seconds is a mistake, not an interval.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def failed_record_message(namespace: str, key: str, error: str | None, store: CheckpointClient | None = None) -> str:
    """Explain a terminal ``failed`` record and the ways out of it. The reset command names the store the
    task used, shell-quoted, so it works from any folder of any machine that reaches the store."""
    command = reset_command(namespace, key, store.location.command_url if store is not None else None)
    return (
        f"Checkpoint {namespace}/{key} is recorded as failed"
        f"{f' ({error})' if error else ''}; it stays failed until it is reset. Reset it with "
        f"`{command}` (or the reset button on the Mooncat Checkpoints "
        f"page), or set on_failed_record='reset' to reset and rerun automatically."
    )


class CheckpointMixin:
    """
    Put any operator under a checkpoint.

    Mix it in front of an operator class (or use :func:`checkpointed`). Before the operator runs, the
    task claims ``checkpoint_namespace``/``checkpoint_key``:

    * ``done`` (by any Airflow run, a Prefect flow or a TypeScript job): the operator does not run;
      ``checkpoint_on_done="return"`` returns the stored result as the task's XCom,
      ``"skip"`` ends the task skipped.
    * held by a live lease elsewhere: ``checkpoint_on_busy="wait"`` waits until it is done or the lease
      expires (in the worker with ``checkpoint_busy_mode`` ``"poke"`` or ``"reschedule"``, or on the
      triggerer with ``checkpoint_deferrable=True``); ``"fail"`` fails the try. A live lease is never
      taken over.
    * ``failed`` (terminal until reset): the task fails with a message saying how to reset, or resets
      and runs when ``checkpoint_on_failed_record="reset"``.

    While the operator runs, the lease is renewed in the background. Success stores the return value
    (it must be JSON). A failure releases the claim when Airflow will retry, and on the last try (or on
    ``AirflowFailException``) records ``failed``, or releases when ``checkpoint_on_error="release"``.
    Killing the task releases at once.

    The mixin's arguments all start with ``checkpoint_`` (plus ``mooncat_conn_id``) so that they never
    collide with the wrapped operator's own arguments; :class:`CheckpointOperator` documents each one
    under its short name. The "Checkpoint" task-instance link of a class made this way is stored as one
    more XCom per try (the API server cannot import such classes to build it itself);
    ``checkpoint_link=False`` leaves it out.
    """

    checkpoint_template_fields: ClassVar[tuple[str, ...]] = ("checkpoint_namespace", "checkpoint_key")
    operator_extra_links: Collection[BaseOperatorLink] = (CheckpointLink(),)

    @property
    def _checkpoint_log(self) -> logging.Logger:
        # The operator the mixin is combined with owns the task logger.
        return cast("logging.Logger", cast("BaseOperator", self).log)

    def __init__(
        self,
        *,
        checkpoint_key: KeySpec,
        checkpoint_namespace: str | None = None,
        mooncat_conn_id: str | None = CheckpointHook.default_conn_name,
        checkpoint_on_done: OnDone = "return",
        checkpoint_on_busy: OnBusy = "wait",
        checkpoint_busy_mode: BusyMode = "poke",
        checkpoint_deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        checkpoint_poll_interval: float = 5.0,
        checkpoint_busy_timeout: float | None = None,
        checkpoint_on_error: OnError = "fail",
        checkpoint_on_failed_record: OnFailedRecord = "raise",
        checkpoint_lease_ms: int | None = None,
        checkpoint_link: bool = True,
        **kwargs: Any,
    ) -> None:
        _check_choice("on_done", checkpoint_on_done, OnDone)
        _check_choice("on_busy", checkpoint_on_busy, OnBusy)
        _check_choice("busy_mode", checkpoint_busy_mode, BusyMode)
        _check_choice("on_error", checkpoint_on_error, OnError)
        _check_choice("on_failed_record", checkpoint_on_failed_record, OnFailedRecord)
        if not _is_seconds(checkpoint_poll_interval) or not checkpoint_poll_interval > 0:
            raise ValueError(f"poll_interval must be a positive number of seconds, not {checkpoint_poll_interval!r}")
        if checkpoint_busy_timeout is not None and (
            not _is_seconds(checkpoint_busy_timeout) or not checkpoint_busy_timeout >= 0
        ):
            raise ValueError(f"busy_timeout must be None or a number of seconds >= 0, not {checkpoint_busy_timeout!r}")
        if not (isinstance(checkpoint_key, str) and checkpoint_key) and not callable(checkpoint_key):
            raise ValueError("checkpoint key must be a non-empty string template or a callable")
        super().__init__(**kwargs)
        # Airflow calls callables found in template fields with the template context, so a key
        # function is kept out of the templated attribute and applied after rendering.
        self._checkpoint_key_fn: Callable[[dict[str, Any]], str] | None = (
            None if isinstance(checkpoint_key, str) else checkpoint_key
        )
        self.checkpoint_key: str | None = checkpoint_key if isinstance(checkpoint_key, str) else None
        # Template rendering overwrites checkpoint_key in place; the mapped-task check needs the
        # spelling the DAG author wrote.
        self._checkpoint_key_spec: KeySpec = checkpoint_key
        self.checkpoint_namespace = checkpoint_namespace
        self.mooncat_conn_id = mooncat_conn_id
        self.checkpoint_on_done = checkpoint_on_done
        self.checkpoint_on_busy = checkpoint_on_busy
        self.checkpoint_busy_mode = checkpoint_busy_mode
        self.checkpoint_deferrable = checkpoint_deferrable
        self.checkpoint_poll_interval = float(checkpoint_poll_interval)
        self.checkpoint_busy_timeout = checkpoint_busy_timeout
        self.checkpoint_on_error = checkpoint_on_error
        self.checkpoint_on_failed_record = checkpoint_on_failed_record
        self.checkpoint_lease_ms = checkpoint_lease_ms
        if not checkpoint_link:
            # Airflow stores every declared link as an XCom when the task ends (one more write per
            # task instance); a very short task may prefer to skip it.
            self.operator_extra_links = tuple(
                link for link in self.operator_extra_links if not isinstance(link, CheckpointLink)
            )
        #: (namespace, key) this try worked on; read by the extra link once the task has finished.
        self.checkpoint_target: tuple[str, str] | None = None
        self._checkpoint_step: Step | None = None
        self._checkpoint_hook: CheckpointHook | None = None

    # -- key -----------------------------------------------------------------------------------------

    def checkpoint_call(self) -> tuple[Callable[..., Any], Sequence[Any], Mapping[str, Any]] | None:
        """The callable and arguments a ``{name}`` key template is formatted with, if the task has one."""
        return None

    def resolve_checkpoint_key(self, context: Context) -> str:
        """Turn the (already Jinja-rendered) key spec into the key this task instance claims."""
        spec: KeySpec = self._checkpoint_key_fn or self.checkpoint_key or ""
        call = self.checkpoint_call()
        if call is not None and (callable(spec) or "{" in spec):
            from mooncat_checkpoint import render_key

            func, args, kwargs = call
            key = render_key(spec, func, tuple(args), dict(kwargs))
        elif callable(spec):
            # Without a callable of our own the key function gets the template context.
            key = spec(dict(context))
        else:
            key = spec
        if not isinstance(key, str) or not key:
            raise ValueError(f"checkpoint key resolved to {key!r}; it must be a non-empty string")
        self._warn_about_mapped_key(context)
        return key

    def _warn_about_mapped_key(self, context: Context) -> None:
        if map_index_of(context) < 0:
            return
        spec = self._checkpoint_key_spec
        if key_uses_map_index(spec):
            self._checkpoint_log.warning(
                "Checkpoint key %r is built from the map index: reordering the mapped input would hand "
                "one item's stored result to another. Build the key from the mapped value instead.",
                spec,
            )
        elif isinstance(spec, str) and "{" not in spec:
            self._checkpoint_log.warning(
                "Checkpoint key %r does not depend on the mapped value, so every mapped instance shares "
                "one checkpoint. Build the key from the mapped value.",
                spec,
            )

    # -- plumbing ------------------------------------------------------------------------------------

    @property
    def checkpoint_hook(self) -> CheckpointHook:
        if self._checkpoint_hook is None:
            self._checkpoint_hook = CheckpointHook(mooncat_conn_id=self.mooncat_conn_id)
        return self._checkpoint_hook

    def _checkpoint_resolve_target(self, context: Context) -> tuple[str, str]:
        # Resolved once per try: the key template is overwritten by its result (see below), and a
        # "{name}" template must not be formatted a second time.
        if self.checkpoint_target is None:
            namespace = self.checkpoint_hook.resolve_namespace(self.checkpoint_namespace)
            key = self.resolve_checkpoint_key(context)
            self.checkpoint_target = (namespace, key)
        return self.checkpoint_target

    def _do_render_template_fields(
        self,
        parent: Any,
        template_fields: Iterable[str],
        context: Context,
        jinja_env: jinja2.Environment,
        seen_oids: set[int],
    ) -> None:
        super()._do_render_template_fields(  # type: ignore[misc]
            parent, template_fields, context, jinja_env, seen_oids
        )
        if parent is not self:  # a nested templated object, not this operator
            return
        # Resolve the target while rendering, and store it in the templated fields: Airflow records the
        # rendered fields of every task instance anyway, so the UI shows the real namespace and key and
        # the "Checkpoint" link is built from them without one more write per task.
        namespace, key = self._checkpoint_resolve_target(context)
        self.checkpoint_namespace = namespace
        self.checkpoint_key = key

    # -- execution -----------------------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        try:
            namespace, key = self._checkpoint_resolve_target(context)
            return self._checkpoint_run(context, namespace, key)
        finally:
            self._checkpoint_close()

    def _checkpoint_close(self) -> None:
        # The store client itself is shared by the process (see CheckpointHook.get_shared_conn); only
        # the hook, with its connection lookup, is per try.
        if self._checkpoint_hook is not None:
            self._checkpoint_hook.close()
            self._checkpoint_hook = None

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        if next_method == "checkpoint_resume":
            return super().resume_execution(next_method, next_kwargs, context)  # type: ignore[misc]

        # The wrapped operator deferred itself (its claim was released then) and now resumes: its
        # remaining work runs under a fresh claim, or not at all if someone finished the key meanwhile.
        def finish_wrapped() -> Any:
            return super(CheckpointMixin, self).resume_execution(next_method, next_kwargs, context)  # type: ignore[misc]

        try:
            namespace, key = self._checkpoint_resolve_target(context)
            return self._checkpoint_run(context, namespace, key, work=finish_wrapped)
        finally:
            self._checkpoint_close()

    def _checkpoint_run(
        self,
        context: Context,
        namespace: str,
        key: str,
        *,
        after_reset: bool = False,
        work: Callable[[], Any] | None = None,
    ) -> Any:
        from mooncat_checkpoint import StepBusyError, StepFailedError

        # A resumed wrapped operator cannot start over through our own deferral, so it only waits in
        # the worker.
        wait_here = self.checkpoint_on_busy == "wait" and (
            work is not None or (self.checkpoint_busy_mode == "poke" and not self.checkpoint_deferrable)
        )
        timeout = self.checkpoint_busy_timeout
        deadline = time.monotonic() + timeout if wait_here and timeout is not None else None
        client = self.checkpoint_hook.get_shared_conn()
        while True:
            # The poke wait is ours, not the library's backoff (which looks up to every 2 s): poll_interval
            # is the user's bound on how often a waiting task reads the store, as in the reschedule and
            # deferrable modes.
            step = client.step(
                namespace,
                key,
                owner_run_id=owner_run_id(context),
                lease_ms=self.checkpoint_lease_ms,
                on_busy="raise",
                on_error="abandon",
                heartbeat=True,
            )
            try:
                outcome = step.acquire()
            except StepBusyError as exc:
                pause = self._checkpoint_next_look(exc.checkpoint, deadline) if wait_here else None
                if pause is None:
                    return self._checkpoint_busy(context, namespace, key, exc.checkpoint, timed_out=wait_here)
                holder = exc.checkpoint.owner_run_id if exc.checkpoint is not None else "another owner"
                self._checkpoint_log.info(
                    "Checkpoint %s/%s is held by %s; looking again in %.1fs", namespace, key, holder, pause
                )
                time.sleep(pause)
                continue
            except StepFailedError as exc:
                return self._checkpoint_failed_record(context, namespace, key, exc, after_reset, work)
            break
        if outcome == "done":
            done = step.checkpoint
            return self._checkpoint_finished(
                namespace, key, step.result, done.owner_run_id if done is not None else None
            )
        return self._checkpoint_claimed(context, step, work)

    def _checkpoint_failed_record(
        self,
        context: Context,
        namespace: str,
        key: str,
        exc: StepFailedError,
        after_reset: bool,
        work: Callable[[], Any] | None,
    ) -> Any:
        record = exc.checkpoint
        if self.checkpoint_on_failed_record == "reset" and not after_reset:
            self._checkpoint_log.warning(
                "Checkpoint %s/%s was failed (%s); resetting and running again",
                namespace,
                key,
                record.error if record is not None else "",
            )
            self.checkpoint_hook.get_shared_conn().reset(namespace, key)
            return self._checkpoint_run(context, namespace, key, after_reset=True, work=work)
        raise AirflowFailException(
            failed_record_message(
                namespace, key, record.error if record is not None else None, self.checkpoint_hook.get_shared_conn()
            )
        ) from exc

    def _checkpoint_next_look(self, record: Checkpoint | None, deadline: float | None) -> float | None:
        """Seconds until the next look at a busy key, or None when the wait has timed out."""
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            return None
        pause = self.checkpoint_poll_interval
        if record is not None and record.lease_until is not None:
            # Look again right after the holder's lease ends: an abandoned key is taken over promptly
            # however long the interval.
            pause = min(pause, max(record.lease_until / 1000 - time.time(), 0.0) + 0.05)
        if deadline is not None:
            pause = min(pause, deadline - now)
        return max(pause, 0.0)

    def _checkpoint_finished(self, namespace: str, key: str, result: Any, owner: str | None) -> Any:
        if self.checkpoint_on_done == "skip":
            raise AirflowSkipException(f"Checkpoint {namespace}/{key} is already done (by {owner}); skipping")
        self._checkpoint_log.info(
            "Checkpoint %s/%s is already done (by %s); returning its stored result", namespace, key, owner
        )
        return result

    def _checkpoint_busy(
        self, context: Context, namespace: str, key: str, record: Checkpoint | None, *, timed_out: bool
    ) -> Any:
        holder = record.owner_run_id if record is not None else "another owner"
        if self.checkpoint_on_busy == "fail" or timed_out:
            # A plain failure, not AirflowFailException: a retry may well find the key done or free.
            reason = "waiting timed out" if timed_out else "on_busy='fail'"
            raise AirflowException(f"Checkpoint {namespace}/{key} is held by {holder} ({reason})")
        if self.checkpoint_deferrable:
            self._checkpoint_log.info(
                "Checkpoint %s/%s is held by %s; deferring until it is done or free", namespace, key, holder
            )
            self._checkpoint_defer(namespace, key)
        self._checkpoint_log.info(
            "Checkpoint %s/%s is held by %s; rescheduling in %ss", namespace, key, holder, self.checkpoint_poll_interval
        )
        raise AirflowRescheduleException(  # type: ignore[no-untyped-call]
            dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=self.checkpoint_poll_interval)
        )

    def _checkpoint_defer(self, namespace: str, key: str) -> NoReturn:
        timeout = dt.timedelta(seconds=self.checkpoint_busy_timeout) if self.checkpoint_busy_timeout else None
        cast("BaseOperator", self).defer(
            trigger=CheckpointTrigger(
                namespace=namespace,
                key=key,
                mooncat_conn_id=self.mooncat_conn_id,
                poll_interval=self.checkpoint_poll_interval,
                stop_when_free=True,
            ),
            method_name="checkpoint_resume",
            timeout=timeout,
        )

    def checkpoint_resume(self, context: Context, event: dict[str, Any]) -> Any:
        """Continue after the trigger saw the key done, failed, or free to claim."""
        namespace, key = event["namespace"], event["key"]
        self.checkpoint_target = (namespace, key)
        status = event.get("status")
        if status == STATUS_DONE:
            return self._checkpoint_finished(namespace, key, event.get("result"), event.get("owner_run_id"))
        if status == STATUS_FAILED and self.checkpoint_on_failed_record == "raise":
            raise AirflowFailException(
                failed_record_message(namespace, key, event.get("error"), self.checkpoint_hook.get_shared_conn())
            )
        if status in (STATUS_FAILED, STATUS_FREE):
            # Claim again; a failed record is reset there when on_failed_record="reset".
            try:
                return self._checkpoint_run(context, namespace, key)
            finally:
                self._checkpoint_close()
        raise AirflowException(f"Unexpected checkpoint trigger event: {event!r}")

    def _checkpoint_claimed(self, context: Context, step: Step, work: Callable[[], Any] | None = None) -> Any:
        from mooncat_checkpoint import CheckpointResultSerializationError, LeaseLostError

        self._checkpoint_step = step
        try:
            result = work() if work is not None else super().execute(context)  # type: ignore[misc]
        except (AirflowSkipException, TaskDeferred):
            # Not finished: let the next run (or the resumed task) claim the key afresh. A deferring
            # wrapped operator holds no claim while it waits; it claims again when it resumes.
            self._checkpoint_release(step)
            raise
        except AirflowFailException as exc:
            self._checkpoint_give_up(step, exc, final=True)
            raise
        except (Exception, AirflowTaskTimeout) as exc:
            self._checkpoint_give_up(step, exc, final=is_last_try(context))
            raise
        except BaseException:
            self._checkpoint_release(step)
            raise
        finally:
            self._checkpoint_step = None

        try:
            step.complete(result)
        except CheckpointResultSerializationError as exc:
            self._checkpoint_release(step)
            # Retrying would fail the same way, so do not.
            raise AirflowFailException(
                f"The task's return value cannot be stored as a checkpoint result: {exc}"
            ) from exc
        except LeaseLostError as exc:
            raise AirflowException(
                f"Lost the lease on {step.namespace}/{step.key} before recording done; another owner took "
                "it over, so this result is not stored"
            ) from exc
        return result

    def _checkpoint_give_up(self, step: Step, exc: BaseException, *, final: bool) -> None:
        from mooncat_checkpoint import LeaseLostError

        if not final or self.checkpoint_on_error == "release":
            self._checkpoint_release(step)
            return
        try:
            step.record_failure(f"{type(exc).__name__}: {exc}"[:4000])
        except LeaseLostError:
            self._checkpoint_log.warning(
                "Lease on %s/%s was lost; could not record the failure", step.namespace, step.key
            )

    def _checkpoint_release(self, step: Step) -> None:
        if step.finished:
            # Already released (on_kill runs before the termination reaches the task) or recorded.
            return
        try:
            step.release()
        except Exception:  # releasing is best effort; the lease expires anyway
            self._checkpoint_log.warning("Could not release checkpoint %s/%s", step.namespace, step.key, exc_info=True)

    def on_kill(self) -> None:
        step = self._checkpoint_step
        if step is not None:
            # Release first: the kill may not leave time for anything after the wrapped operator's cleanup.
            self._checkpoint_release(step)
        super().on_kill()  # type: ignore[misc]


class CheckpointOperator(CheckpointMixin, PythonOperator):
    """
    Run a Python callable under a checkpoint.

    :param python_callable: the work.
    :param key: the checkpoint key (templated). Jinja works as in any templated field; after that, a
        ``"{name}"`` template is formatted with the callable's bound arguments (``op_args``/``op_kwargs``,
        defaults applied), and a callable gets those arguments as a dict.
    :param namespace: the checkpoint namespace (templated); default: the connection's namespace.
    :param op_args: positional arguments for the callable (templated).
    :param op_kwargs: keyword arguments for the callable (templated).
    :param mooncat_conn_id: connection naming the store.
    :param on_done: ``"return"`` the stored result as XCom, or ``"skip"``.
    :param on_busy: ``"wait"`` or ``"fail"`` when another owner holds a live lease.
    :param busy_mode: how to wait without deferring: ``"poke"`` (in the worker) or ``"reschedule"``.
    :param deferrable: wait on the triggerer instead.
    :param poll_interval: seconds between looks at a busy key while waiting, in every mode (poke: sleeps
        in the worker; reschedule: the reschedule delay; deferrable: the trigger's interval). A look also
        happens as soon as the holder's lease ends, so an abandoned key is taken over promptly.
    :param busy_timeout: give up waiting after this many seconds (the try then fails); in poke mode and
        deferrable mode. ``None``: wait as long as Airflow lets the task run.
    :param on_error: on the last try: ``"fail"`` records failed, ``"release"`` lets a later run retry.
    :param on_failed_record: ``"raise"`` (explain how to reset) or ``"reset"`` and run again.
    :param lease_ms: lease length; renewed in the background while the callable runs.

    The task instance's "Checkpoint" link comes from the provider's plugin, which builds it in the API
    server from the rendered ``namespace`` and ``key``, so it costs the task nothing.
    """

    template_fields: Sequence[str] = (*PythonOperator.template_fields, *CheckpointMixin.checkpoint_template_fields)
    # Declared links are written as XComs at the end of every try; the plugin supplies this one instead.
    operator_extra_links: Collection[BaseOperatorLink] = ()
    ui_color = "#e8e3f7"

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        key: KeySpec,
        namespace: str | None = None,
        op_args: Collection[Any] | None = None,
        op_kwargs: Mapping[str, Any] | None = None,
        mooncat_conn_id: str | None = CheckpointHook.default_conn_name,
        on_done: OnDone = "return",
        on_busy: OnBusy = "wait",
        busy_mode: BusyMode = "poke",
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 5.0,
        busy_timeout: float | None = None,
        on_error: OnError = "fail",
        on_failed_record: OnFailedRecord = "raise",
        lease_ms: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            python_callable=python_callable,
            op_args=op_args,
            op_kwargs=op_kwargs,
            checkpoint_key=key,
            checkpoint_namespace=namespace,
            mooncat_conn_id=mooncat_conn_id,
            checkpoint_on_done=on_done,
            checkpoint_on_busy=on_busy,
            checkpoint_busy_mode=busy_mode,
            checkpoint_deferrable=deferrable,
            checkpoint_poll_interval=poll_interval,
            checkpoint_busy_timeout=busy_timeout,
            checkpoint_on_error=on_error,
            checkpoint_on_failed_record=on_failed_record,
            checkpoint_lease_ms=lease_ms,
            **kwargs,
        )

    def checkpoint_call(self) -> tuple[Callable[..., Any], Sequence[Any], Mapping[str, Any]] | None:
        # Called before PythonOperator.execute merges the context into op_kwargs, so these are
        # exactly the arguments the DAG passed.
        return self.python_callable, tuple(self.op_args), dict(self.op_kwargs)


_CHECKPOINTED: dict[type[BaseOperator], type[BaseOperator]] = {}


def checkpointed(operator_class: type[OperatorT]) -> type[OperatorT]:
    """
    Return a subclass of ``operator_class`` that runs under a checkpoint (see :class:`CheckpointMixin`).

    ``CheckpointedBash = checkpointed(BashOperator)`` then
    ``CheckpointedBash(task_id=..., bash_command=..., checkpoint_namespace="ns", checkpoint_key="k/{{ ds }}")``.
    """
    if issubclass(operator_class, CheckpointMixin):
        return operator_class
    existing = _CHECKPOINTED.get(operator_class)
    if existing is not None:
        return cast("type[OperatorT]", existing)
    name = f"Checkpointed{operator_class.__name__}"
    links = (*tuple(operator_class.operator_extra_links), CheckpointLink())

    def __init__(self: Any, **kwargs: Any) -> None:
        CheckpointMixin.__init__(self, **kwargs)

    # Airflow's operator metaclass only wraps an __init__ the class defines itself, and it needs the
    # outermost one wrapped; the mixin's signature lets default_args supply checkpoint_* arguments too.
    __init__.__signature__ = inspect.signature(CheckpointMixin.__init__)  # type: ignore[attr-defined]
    namespace: dict[str, Any] = {
        "__module__": __name__,
        "__qualname__": name,
        "__doc__": f"{operator_class.__name__} run under a mooncat checkpoint.",
        "__init__": __init__,
        "template_fields": (*operator_class.template_fields, *CheckpointMixin.checkpoint_template_fields),
        "operator_extra_links": links,
    }
    metaclass: Any = type(operator_class)
    new_class = metaclass(name, (CheckpointMixin, operator_class), namespace)
    _CHECKPOINTED[operator_class] = new_class
    return cast("type[OperatorT]", new_class)
