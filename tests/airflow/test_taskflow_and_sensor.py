"""``@task.mooncat`` with mapping, and CheckpointSensor in its three waiting modes."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import mc_sensor
import mc_taskflow
from support import calls, run_dag, ti_states, xcom


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
