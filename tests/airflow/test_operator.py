"""CheckpointOperator under real ``dag.test()`` runs."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import mc_basic
from support import calls, reschedules, run_dag, ti_states, xcom


def conf(namespace: str, marker: Path, **extra: Any) -> dict[str, Any]:
    return {"ns": namespace, "marker": str(marker), **extra}


def test_second_run_skips_and_returns_the_stored_result(namespace: str, marker: Path, client: Any) -> None:
    first = run_dag(mc_basic.mc_basic, conf(namespace, marker))
    assert str(first.state) == "success"
    assert xcom(first, "work") == {"label": "basic", "value": 5}

    second = run_dag(mc_basic.mc_basic, conf(namespace, marker))
    assert str(second.state) == "success"
    assert ti_states(second)[("work", -1)] == "success"
    assert xcom(second, "work") == {"label": "basic", "value": 5}
    assert calls(marker) == ["basic"]

    record = client.get(namespace, "basic/one")
    assert record.status == "done"
    assert record.result == {"label": "basic", "value": 5}
    assert record.owner_run_id.startswith(f"airflow:mc_basic/{first.run_id}/work/-1/1")


def test_on_done_skip_leaves_the_task_skipped(namespace: str, marker: Path) -> None:
    first = run_dag(mc_basic.mc_skip, conf(namespace, marker))
    assert ti_states(first)[("work", -1)] == "success"
    second = run_dag(mc_basic.mc_skip, conf(namespace, marker))
    assert ti_states(second)[("work", -1)] == "skipped"
    assert calls(marker) == ["skip"]


def test_key_finished_by_the_core_library_is_skipped(namespace: str, marker: Path, client: Any) -> None:
    claim = client.claim(namespace, "basic/one", owner_run_id="script")
    client.done(namespace, "basic/one", claim.lease_token, {"label": "from-script", "value": 42})

    run = run_dag(mc_basic.mc_basic, conf(namespace, marker))
    assert str(run.state) == "success"
    assert xcom(run, "work") == {"label": "from-script", "value": 42}
    assert calls(marker) == []


def test_retry_then_success_releases_the_claim_between_tries(namespace: str, marker: Path, client: Any) -> None:
    run = run_dag(mc_basic.mc_retry, conf(namespace, marker))
    assert str(run.state) == "success"
    assert calls(marker) == ["retry:1", "retry:2"]
    record = client.get(namespace, "retry/one")
    assert record.status == "done"
    assert record.result == {"label": "retry", "try": 2}
    # The first try released (deleted) its claim instead of recording a failure, so the second
    # try's claim is a fresh record.
    assert record.attempts == 1
    assert record.owner_run_id.endswith("/work/-1/2")


def test_last_try_failure_records_fail_and_a_rerun_refuses(
    namespace: str, marker: Path, client: Any, capfd: Any, caplog: Any
) -> None:
    first = run_dag(mc_basic.mc_fail, conf(namespace, marker))
    assert str(first.state) == "failed"
    record = client.get(namespace, "fail/one")
    assert record.status == "failed"
    assert "ValueError: the work is broken" in record.error

    # Terminal until reset: the rerun fails without running the work again.
    capfd.readouterr()
    second = run_dag(mc_basic.mc_fail, conf(namespace, marker))
    assert str(second.state) == "failed"
    assert calls(marker) == ["fail"]
    out, err = capfd.readouterr()
    # The hint names the store the task used, so it works as printed from any folder.
    hint = re.search(r"`(mooncat-checkpoint reset [^`]*)`", out + err + caplog.text)
    assert hint is not None, out + err
    command = hint.group(1)
    assert command.startswith("mooncat-checkpoint reset --url ") and command.endswith(f" {namespace} fail/one")
    reset = subprocess.run(
        command, shell=True, cwd=marker.parent, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    assert reset.returncode == 0, reset.stderr
    assert client.get(namespace, "fail/one") is None
    third = run_dag(mc_basic.mc_fail, conf(namespace, marker))
    assert calls(marker) == ["fail", "fail"]
    assert str(third.state) == "failed"


def test_busy_key_defers_until_another_owner_finishes_it(namespace: str, marker: Path, client: Any) -> None:
    held = client.claim(namespace, "busy/one", owner_run_id="elsewhere", lease_ms=120_000)
    assert held.kind == "claimed"

    def finish_later() -> None:
        time.sleep(2.0)
        client.done(namespace, "busy/one", held.lease_token, {"label": "elsewhere", "value": 7})

    finisher = threading.Thread(target=finish_later)
    finisher.start()
    try:
        started = time.monotonic()
        run = run_dag(mc_basic.mc_deferrable, conf(namespace, marker))
        waited = time.monotonic() - started
    finally:
        finisher.join()
    assert str(run.state) == "success"
    assert xcom(run, "work") == {"label": "elsewhere", "value": 7}
    assert calls(marker) == []
    assert waited >= 1.5  # it really waited for the other owner


def test_busy_key_whose_lease_expires_is_claimed_after_deferral(namespace: str, marker: Path, client: Any) -> None:
    held = client.claim(namespace, "busy/one", owner_run_id="crashed-worker", lease_ms=1_500)
    assert held.kind == "claimed"
    run = run_dag(mc_basic.mc_deferrable, conf(namespace, marker))
    assert str(run.state) == "success"
    assert calls(marker) == ["deferred"]
    record = client.get(namespace, "busy/one")
    assert record.status == "done"
    assert record.attempts == 2


def test_connection_from_the_environment(monkeypatch: Any, tmp_path: Path, marker: Path) -> None:
    from mooncat_airflow import CheckpointHook
    from mooncat_checkpoint import CheckpointClient

    url = f"sqlite://{tmp_path / 'env-store.db'}"
    monkeypatch.setenv(
        "AIRFLOW_CONN_MOONCAT_ENVTEST",
        json.dumps({"conn_type": "mooncat", "extra": {"url": url, "namespace": "env-ns"}}),
    )
    hook = CheckpointHook(mooncat_conn_id="mooncat_envtest")
    assert hook.url == url
    assert hook.default_namespace == "env-ns"
    ok, message = hook.test_connection()
    assert ok, message
    assert url in message

    run = run_dag(mc_basic.mc_env_conn, {"marker": str(marker)})
    assert str(run.state) == "success"
    with CheckpointClient(url) as other:
        record = other.get("env-ns", "env/one")
    assert record is not None and record.status == "done"
    assert record.result == {"label": "env", "value": 3}


def test_missing_connection_falls_back_to_the_library_resolution(monkeypatch: Any, tmp_path: Path) -> None:
    from mooncat_airflow import CheckpointHook

    url = f"sqlite://{tmp_path / 'resolved.db'}"
    monkeypatch.setenv("MOONCAT_CHECKPOINT_URL", url)
    hook = CheckpointHook(mooncat_conn_id="mooncat_not_defined")
    assert hook.url is None
    assert hook.get_conn().url == url
    ok, message = hook.test_connection()
    assert ok and "MOONCAT_CHECKPOINT_URL" in message, message


def test_broken_store_url_fails_test_connection(monkeypatch: Any) -> None:
    from mooncat_airflow import CheckpointHook

    monkeypatch.setenv(
        "AIRFLOW_CONN_MOONCAT_BROKEN", json.dumps({"conn_type": "mooncat", "extra": {"url": "nope://x"}})
    )
    ok, message = CheckpointHook(mooncat_conn_id="mooncat_broken").test_connection()
    assert not ok
    assert message


def test_busy_key_with_on_busy_fail_fails_without_running(namespace: str, marker: Path, client: Any) -> None:
    client.claim(namespace, "busy/one", owner_run_id="elsewhere", lease_ms=120_000)
    run = run_dag(mc_basic.mc_busy_fail, conf(namespace, marker))
    assert ti_states(run)[("work", -1)] == "failed"
    assert calls(marker) == []
    assert client.get(namespace, "busy/one").owner_run_id == "elsewhere"  # the live lease was left alone


def test_busy_key_in_reschedule_mode_runs_once_the_lease_expires(namespace: str, marker: Path, client: Any) -> None:
    held = client.claim(namespace, "busy/one", owner_run_id="crashed-worker", lease_ms=1_500)
    stop = threading.Event()
    saw_reschedule: list[bool] = []

    def crash_after_the_first_reschedule() -> None:
        # The holder keeps its lease alive until Airflow has recorded a reschedule of the task, then
        # stops renewing as a crashed worker would; a lease left to expire on a timer could run out
        # before the task's first look, and the task would then claim without being rescheduled.
        while not stop.is_set():
            if reschedules("mc_reschedule", "work"):
                saw_reschedule.append(True)
                return
            client.touch(namespace, "busy/one", held.lease_token, 1_500)
            stop.wait(0.1)

    keeper = threading.Thread(target=crash_after_the_first_reschedule)
    keeper.start()
    try:
        run = run_dag(mc_basic.mc_reschedule, conf(namespace, marker))
    finally:
        stop.set()
        keeper.join()
    assert saw_reschedule == [True]
    assert str(run.state) == "success"
    assert calls(marker) == ["rescheduled"]
    assert client.get(namespace, "busy/one").status == "done"
    recorded = reschedules("mc_reschedule", "work")
    assert recorded and all(when > start for start, when in recorded)


def test_failed_record_is_reset_and_rerun_when_configured(namespace: str, marker: Path, client: Any) -> None:
    claim = client.claim(namespace, "fail/one", owner_run_id="earlier")
    client.fail(namespace, "fail/one", "old failure", claim.lease_token)
    run = run_dag(mc_basic.mc_reset, conf(namespace, marker))
    assert str(run.state) == "success"
    assert calls(marker) == ["after-reset"]
    assert client.get(namespace, "fail/one").status == "done"


def test_wrapped_operator_templates_its_own_fields_and_the_checkpoint_ones() -> None:
    from airflow.providers.standard.operators.bash import BashOperator
    from mooncat_airflow import CheckpointMixin, checkpointed

    wrapped = checkpointed(BashOperator)
    assert issubclass(wrapped, CheckpointMixin) and issubclass(wrapped, BashOperator)
    assert checkpointed(BashOperator) is wrapped
    assert {"bash_command", "checkpoint_namespace", "checkpoint_key"} <= set(wrapped.template_fields)
    assert [link.name for link in wrapped.operator_extra_links] == ["Checkpoint"]


def test_heartbeat_keeps_a_long_task_s_lease(namespace: str, marker: Path, client: Any) -> None:
    seen: list[str] = []

    def intruder() -> None:
        # Well past the 600 ms lease, while the task is still working.
        time.sleep(1.8)
        seen.append(client.claim(namespace, "slow/one", owner_run_id="intruder").kind)

    thread = threading.Thread(target=intruder)
    thread.start()
    try:
        run = run_dag(mc_basic.mc_heartbeat, conf(namespace, marker))
    finally:
        thread.join()
    assert seen == ["busy"]
    assert str(run.state) == "success"
    record = client.get(namespace, "slow/one")
    assert record.status == "done" and record.attempts == 1


def test_on_kill_releases_the_claim_at_once(namespace: str, client: Any) -> None:
    from mooncat_airflow import CheckpointOperator

    operator = CheckpointOperator(task_id="killed", python_callable=lambda: None, namespace=namespace, key="k")
    step = client.step(namespace, "k", owner_run_id="killed-task", heartbeat=False)
    assert step.acquire() == "claimed"
    operator._checkpoint_step = step  # what execute() holds while the callable runs
    operator.on_kill()
    assert client.get(namespace, "k") is None


def test_wrapped_operator_that_defers_itself_is_recorded_once_it_resumes(
    namespace: str, marker: Path, client: Any
) -> None:
    import mc_wrapped

    first = run_dag(mc_wrapped.mc_wrapped_deferring, conf(namespace, marker))
    assert str(first.state) == "success"
    assert calls(marker) == ["submitted", "collected"]
    record = client.get(namespace, "job/2024-01-02")
    assert record.status == "done" and record.result == {"job": "finished"}

    second = run_dag(mc_wrapped.mc_wrapped_deferring, conf(namespace, marker))
    assert str(second.state) == "success"
    assert xcom(second, "job") == {"job": "finished"}
    assert calls(marker) == ["submitted", "collected"]


def test_busy_key_in_poke_mode_waits_in_the_worker_for_the_stored_result(
    namespace: str, marker: Path, client: Any
) -> None:
    held = client.claim(namespace, "busy/one", owner_run_id="elsewhere", lease_ms=120_000)

    def finish_later() -> None:
        time.sleep(1.5)
        client.done(namespace, "busy/one", held.lease_token, {"label": "elsewhere", "value": 8})

    finisher = threading.Thread(target=finish_later)
    finisher.start()
    try:
        run = run_dag(mc_basic.mc_poke, conf(namespace, marker))
    finally:
        finisher.join()
    assert str(run.state) == "success"
    assert xcom(run, "work") == {"label": "elsewhere", "value": 8}
    assert calls(marker) == []


def test_poke_wait_that_times_out_fails_and_leaves_the_live_lease_alone(
    namespace: str, marker: Path, client: Any
) -> None:
    held = client.claim(namespace, "busy/one", owner_run_id="elsewhere", lease_ms=120_000)
    run = run_dag(mc_basic.mc_poke_timeout, conf(namespace, marker))
    assert ti_states(run)[("work", -1)] == "failed"
    assert calls(marker) == []
    record = client.get(namespace, "busy/one")
    assert record.status == "claimed" and record.owner_run_id == "elsewhere"
    assert record.lease_token == held.lease_token


def test_airflow_fail_exception_records_failed_although_retries_are_left(
    namespace: str, marker: Path, client: Any
) -> None:
    run = run_dag(mc_basic.mc_fail_fast, conf(namespace, marker))
    assert ti_states(run)[("work", -1)] == "failed"
    assert calls(marker) == ["fail-fast"]  # no retry ran
    record = client.get(namespace, "fail/fast")
    assert record.status == "failed"
    assert "no point in retrying" in record.error
    assert record.owner_run_id.endswith("/work/-1/1")


def test_on_error_release_leaves_the_key_free_after_the_last_try(namespace: str, marker: Path, client: Any) -> None:
    first = run_dag(mc_basic.mc_release, conf(namespace, marker))
    assert ti_states(first)[("work", -1)] == "failed"
    assert client.get(namespace, "fail/released") is None
    # Nothing terminal was recorded, so the next run tries the work again.
    run_dag(mc_basic.mc_release, conf(namespace, marker))
    assert calls(marker) == ["release", "release"]


def test_rendered_fields_hold_the_resolved_namespace_and_key(namespace: str, marker: Path) -> None:
    """The UI's rendered-template view (and the link) see the key the task claimed, not the template."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.taskinstancekey import TaskInstanceKey

    run = run_dag(mc_basic.mc_env_conn_default_ns, conf(namespace, marker))
    assert str(run.state) == "success"
    fields = RenderedTaskInstanceFields.get_templated_fields(
        TaskInstanceKey(dag_id="mc_env_conn_default_ns", task_id="work", run_id=run.run_id, map_index=-1)
    )
    assert fields["checkpoint_key"] == f"label/{namespace}"
    assert fields["checkpoint_namespace"] == "default-ns"


def _count_claims(monkeypatch: Any, namespace: str, guard: threading.Lock | None = None) -> list[float]:
    """Record every claim the task makes in this namespace (the task runs in this process under dag.test)."""
    from mooncat_checkpoint import CheckpointClient

    looks: list[float] = []
    real_claim = CheckpointClient.claim

    def claim(self: Any, ns: str, *args: Any, **kwargs: Any) -> Any:
        if ns == namespace:
            with guard or contextlib.nullcontext():
                looks.append(time.monotonic())
        return real_claim(self, ns, *args, **kwargs)

    monkeypatch.setattr(CheckpointClient, "claim", claim)
    return looks


def test_poke_wait_looks_at_the_busy_key_only_every_poll_interval(
    namespace: str, marker: Path, client: Any, monkeypatch: Any
) -> None:
    held = client.claim(namespace, "busy/one", owner_run_id="elsewhere", lease_ms=120_000)
    looks = _count_claims(monkeypatch, namespace)
    run = run_dag(mc_basic.mc_poke_slow, conf(namespace, marker))
    assert ti_states(run)[("work", -1)] == "failed"
    # poll_interval=30 within busy_timeout=3: the first look, then one more when the timeout is up.
    # The library's own backoff would have looked about ten times.
    assert len(looks) == 2, looks
    record = client.get(namespace, "busy/one")
    assert record.owner_run_id == "elsewhere" and record.lease_token == held.lease_token
    assert calls(marker) == []


def test_poke_wait_looks_again_when_the_holder_s_lease_ends(
    namespace: str, marker: Path, client: Any, monkeypatch: Any
) -> None:
    held = client.claim(namespace, "busy/one", owner_run_id="crashed-worker", lease_ms=1_500)
    guard = threading.Lock()
    looks = _count_claims(monkeypatch, namespace, guard)
    stop = threading.Event()

    def keep_alive_until_the_task_looked() -> None:
        # The holder renews its lease until the task has found the key busy, then stops as a crashed
        # worker would, so the lease ends while the task is waiting. The guard keeps a renewal from
        # slipping in between the task's first look and its reading of the lease end.
        while not stop.wait(0.2):
            with guard:
                if looks:
                    return
                client.touch(namespace, "busy/one", held.lease_token, 1_500)

    keeper = threading.Thread(target=keep_alive_until_the_task_looked)
    keeper.start()
    try:
        run = run_dag(mc_basic.mc_poke_long_interval, conf(namespace, marker))
    finally:
        stop.set()
        keeper.join()
    assert str(run.state) == "success"
    assert calls(marker) == ["after-expiry"]
    assert len(looks) == 2, looks  # busy, then claimed right after the lease ended, not 600 s later
    record = client.get(namespace, "busy/one")
    assert record.status == "done" and record.attempts == 2


def test_bad_poll_interval_or_busy_timeout_is_refused_when_the_dag_is_built() -> None:
    import pytest
    from mooncat_airflow import CheckpointOperator

    for bad in ({"poll_interval": 0}, {"poll_interval": -1}, {"poll_interval": True}, {"busy_timeout": -2}):
        with pytest.raises(ValueError, match=r"poll_interval|busy_timeout"):
            CheckpointOperator(task_id="bad", python_callable=lambda: None, namespace="ns", key="k", **bad)


def test_sigterm_to_the_task_process_releases_the_claim_at_once(
    namespace: str, marker: Path, client: Any, tmp_path: Path
) -> None:
    """Airflow ends a task by sending SIGTERM to the process running it; the task runner's handler calls
    on_kill. The claim must go at once: not when the lease (two minutes here) runs out, not at exit."""
    import os
    import signal
    import subprocess
    import sys

    here = Path(__file__).resolve().parent
    script = (
        "import sys\n"
        f"sys.path[:0] = [{str(here / 'dags')!r}, {str(here)!r}]\n"
        "import mc_basic\n"
        "from support import run_dag\n"
        f"run_dag(mc_basic.mc_killable, {{'ns': {namespace!r}, 'marker': {str(marker)!r}}})\n"
    )
    log = (tmp_path / "task.log").open("w", encoding="utf-8")
    # The environment carries this session's AIRFLOW_HOME, metadata database and connections.
    task = subprocess.Popen([sys.executable, "-c", script], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while not (calls(marker) and client.get(namespace, "long/one") is not None):
            assert task.poll() is None, (tmp_path / "task.log").read_text(encoding="utf-8")[-3000:]
            assert time.monotonic() < deadline, "the task never started"
            time.sleep(0.1)
        claim = client.get(namespace, "long/one")
        assert claim.status == "claimed" and claim.owner_run_id.endswith("/work/-1/1")

        os.kill(task.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30  # far less than the lease
        while client.get(namespace, "long/one") is not None:
            assert time.monotonic() < deadline, "SIGTERM did not release the claim"
            time.sleep(0.05)
        # Released by the handler while the process still runs, not by its exit.
        assert task.poll() is None
    finally:
        if task.poll() is None:
            task.kill()  # what Airflow's supervisor does once its grace period is over
        task.wait(timeout=60)
        log.close()
    assert calls(marker) == ["started"]
