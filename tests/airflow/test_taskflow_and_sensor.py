"""``@task.mooncat`` with mapping, and CheckpointSensor in its three waiting modes."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import mc_sensor
import mc_taskflow
from support import calls, reschedules, run_dag, ti_states, wait_for_reschedule, xcom


def test_mapped_task_with_reversed_input_keeps_each_result_with_its_input(
    namespace: str, marker: Path, client: Any
) -> None:
    names = ["ada", "bob", "cy"]
    dag = mc_taskflow.mc_mapped()
    first = run_dag(dag, {"ns": namespace, "marker": str(marker), "names": names})
    assert str(first.state) == "success"
    assert [xcom(first, "shout", i) for i in range(3)] == ["ADA!", "BOB!", "CY!"]

    reversed_names = list(reversed(names))
    second = run_dag(dag, {"ns": namespace, "marker": str(marker), "names": reversed_names})
    assert str(second.state) == "success"
    # Map index 0 is now "cy": its result must be cy's, not the one stored by index 0 last time.
    assert [xcom(second, "shout", i) for i in range(3)] == ["CY!", "BOB!", "ADA!"]
    assert sorted(calls(marker)) == sorted(names)  # nothing ran twice
    assert {r.key for r in client.list(namespace)} == {"item/ada", "item/bob", "item/cy"}


def test_decorator_is_registered_through_provider_info() -> None:
    from airflow.sdk import task
    from mooncat_airflow.decorators.checkpoint import mooncat_task

    assert task.mooncat is mooncat_task


def _sensor_conf(namespace: str, key: str) -> dict[str, Any]:
    return {"ns": namespace, "key": key}


def test_sensor_pokes_until_the_key_is_done(namespace: str, client: Any) -> None:
    held = client.claim(namespace, "late", owner_run_id="writer")

    def finish() -> None:
        time.sleep(1.0)
        client.done(namespace, "late", held.lease_token, {"rows": 3})

    thread = threading.Thread(target=finish)
    thread.start()
    try:
        run = run_dag(mc_sensor.mc_sensor, _sensor_conf(namespace, "late"))
    finally:
        thread.join()
    assert str(run.state) == "success"
    assert xcom(run, "wait") == {"rows": 3}


def test_deferrable_sensor_returns_the_result_found_by_the_trigger(namespace: str, client: Any) -> None:
    def finish() -> None:
        time.sleep(1.0)
        claim = client.claim(namespace, "later", owner_run_id="writer")
        client.done(namespace, "later", claim.lease_token, ["a", "b"])

    thread = threading.Thread(target=finish)
    thread.start()
    try:
        run = run_dag(mc_sensor.mc_sensor_deferrable, _sensor_conf(namespace, "later"))
    finally:
        thread.join()
    assert str(run.state) == "success"
    assert xcom(run, "wait") == ["a", "b"]


def test_failed_record_fails_the_sensor_and_soft_fail_skips(namespace: str, client: Any) -> None:
    claim = client.claim(namespace, "bad", owner_run_id="writer")
    client.fail(namespace, "bad", "it broke", claim.lease_token)

    failed = run_dag(mc_sensor.mc_sensor, _sensor_conf(namespace, "bad"))
    assert ti_states(failed)[("wait", -1)] == "failed"
    soft = run_dag(mc_sensor.mc_sensor_soft, _sensor_conf(namespace, "bad"))
    assert ti_states(soft)[("wait", -1)] == "skipped"


def test_trigger_serializes_to_json_only_kwargs() -> None:
    import json

    from mooncat_airflow import CheckpointTrigger

    trigger = CheckpointTrigger(namespace="ns", key="k", mooncat_conn_id=None, poll_interval=2, stop_when_free=True)
    classpath, kwargs = trigger.serialize()
    assert classpath == "mooncat_airflow.triggers.checkpoint.CheckpointTrigger"
    assert json.loads(json.dumps(kwargs)) == kwargs
    again = CheckpointTrigger(**kwargs)
    assert again.serialize() == (classpath, kwargs)


def test_key_built_from_the_map_index_warns(namespace: str, capfd: Any, caplog: Any) -> None:
    run = run_dag(mc_taskflow.mc_by_position(), {"ns": namespace})
    assert str(run.state) == "success"
    out, err = capfd.readouterr()
    logged = out + err + caplog.text
    assert "built from the map index" in logged


def test_sensor_in_reschedule_mode_frees_the_worker_until_the_key_is_done(namespace: str, client: Any) -> None:
    held = client.claim(namespace, "slow", owner_run_id="writer")
    stop = threading.Event()
    saw_reschedule: list[bool] = []

    def finish() -> None:
        # Only once Airflow has recorded a reschedule: finishing on a timer could beat the first poke,
        # and the sensor would then succeed without ever being rescheduled.
        saw_reschedule.append(wait_for_reschedule("mc_sensor_reschedule", "wait", stop))
        client.done(namespace, "slow", held.lease_token, {"rows": 5})

    thread = threading.Thread(target=finish)
    thread.start()
    try:
        run = run_dag(mc_sensor.mc_sensor_reschedule, _sensor_conf(namespace, "slow"))
    finally:
        stop.set()
        thread.join()
    assert saw_reschedule == [True]
    assert str(run.state) == "success"
    assert xcom(run, "wait") == {"rows": 5}
    recorded = reschedules("mc_sensor_reschedule", "wait")
    assert recorded, "no reschedule was recorded"
    assert all(when > start for start, when in recorded)
    # Rescheduled pokes are one try: the worker slot was given back, no retry was used up.
    assert _try_number(run, "wait") == 1


def _try_number(dag_run: Any, task_id: str) -> int:
    from airflow.utils.session import create_session

    with create_session() as session:
        (ti,) = [ti for ti in dag_run.get_task_instances(session=session) if ti.task_id == task_id]
        return int(ti.try_number)


# Audit events of file-system and database work: any of them on the event loop's thread would block the
# triggerer for every other trigger it runs.
_BLOCKING_EVENTS = {"open", "os.listdir", "os.scandir", "os.walk", "sqlite3.connect", "os.remove", "os.rename"}
_audit: dict[str, Any] = {"loop_thread": None, "seen": []}
_hook_installed: list[bool] = []


def _audit_hook(event: str, args: tuple[Any, ...]) -> None:
    if _audit["loop_thread"] is not None and event in _BLOCKING_EVENTS:
        _audit["seen"].append((event, threading.get_ident() == _audit["loop_thread"], str(args[:1])))


def test_trigger_does_its_store_io_off_the_event_loop(monkeypatch: Any, tmp_path: Path) -> None:
    import asyncio
    import json
    import sys

    from mooncat_airflow import CheckpointTrigger
    from mooncat_checkpoint import CheckpointClient

    if not _hook_installed:  # audit hooks cannot be removed; this one records only while the loop runs
        sys.addaudithook(_audit_hook)
        _hook_installed.append(True)

    # A file store opens a file for every read, and no URL in the connection makes the library search
    # for a config file: both are visible to the audit hook.
    store = tmp_path / "store"
    monkeypatch.setenv("MOONCAT_CHECKPOINT_URL", f"file://{store}")
    monkeypatch.setenv("AIRFLOW_CONN_MOONCAT_AUDIT", json.dumps({"conn_type": "mooncat", "extra": {}}))
    with CheckpointClient(f"file://{store}") as writer:
        held = writer.claim("audit", "k", owner_run_id="writer")

        async def main() -> dict[str, Any]:
            _audit["loop_thread"] = threading.get_ident()
            _audit["seen"].clear()
            trigger = CheckpointTrigger(namespace="audit", key="k", mooncat_conn_id="mooncat_audit", poll_interval=0.1)

            async def finish() -> None:
                await asyncio.sleep(0.5)
                await asyncio.to_thread(writer.done, "audit", "k", held.lease_token, {"ok": True})

            finisher = asyncio.create_task(finish())
            try:
                async for event in trigger.run():
                    return dict(event.payload)
            finally:
                await finisher
                _audit["loop_thread"] = None
            raise AssertionError("the trigger ended without an event")

        payload = asyncio.run(main())
    assert payload["status"] == "done" and payload["result"] == {"ok": True}
    reads = [entry for entry in _audit["seen"] if str(store) in entry[2]]
    assert reads, "the audit hook saw no store access; the test proves nothing"
    on_loop = [entry for entry in _audit["seen"] if entry[1]]
    assert on_loop == [], on_loop


def test_provider_modules_use_no_deprecated_airflow_imports() -> None:
    import subprocess
    import sys

    modules = [
        "mooncat_airflow",
        "mooncat_airflow.get_provider_info",
        "mooncat_airflow.hooks.checkpoint",
        "mooncat_airflow.operators.checkpoint",
        "mooncat_airflow.decorators.checkpoint",
        "mooncat_airflow.sensors.checkpoint",
        "mooncat_airflow.triggers.checkpoint",
        "mooncat_airflow.links.checkpoint",
        "mooncat_airflow.plugins.ui",
        "mooncat_airflow.plugins.app",
    ]
    # A fresh interpreter, so the imports really happen; a warning whose caller is our code is ours.
    script = (
        "import warnings, importlib\n"
        "warnings.simplefilter('always')\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        f"    for name in {modules!r}:\n"
        "        importlib.import_module(name)\n"
        "for w in caught:\n"
        "    if 'mooncat_airflow' in w.filename:\n"
        "        print(f'OURS {w.filename}:{w.lineno}: {w.message}')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert [line for line in done.stdout.splitlines() if line.startswith("OURS ")] == []
