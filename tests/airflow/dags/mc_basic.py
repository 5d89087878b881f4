"""Checkpointed tasks driven by run conf, so each test picks its own namespace and marker file."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, get_current_context
from mooncat_airflow import CheckpointOperator

NS = "{{ dag_run.conf['ns'] }}"
MARKER = "{{ dag_run.conf['marker'] }}"


def work(marker: str, label: str) -> dict[str, Any]:
    """Leave a line in the marker file per real execution, so tests can count runs."""
    with Path(marker).open("a", encoding="utf-8") as fh:
        fh.write(f"{label}\n")
    return {"label": label, "value": len(label)}


def flaky(marker: str, label: str) -> dict[str, Any]:
    """Fail on the first try, succeed on the second."""
    try_number = get_current_context()["ti"].try_number
    with Path(marker).open("a", encoding="utf-8") as fh:
        fh.write(f"{label}:{try_number}\n")
    if try_number == 1:
        raise RuntimeError("first try fails")
    return {"label": label, "try": try_number}


def broken(marker: str, label: str) -> None:
    with Path(marker).open("a", encoding="utf-8") as fh:
        fh.write(f"{label}\n")
    raise ValueError("the work is broken")


START = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)

with DAG("mc_basic", schedule=None, start_date=START, catchup=False) as mc_basic:
    CheckpointOperator(
        task_id="work",
        python_callable=work,
        op_kwargs={"marker": MARKER, "label": "basic"},
        namespace=NS,
        key="basic/{{ dag_run.conf.get('key', 'one') }}",
    )

with DAG("mc_skip", schedule=None, start_date=START, catchup=False) as mc_skip:
    CheckpointOperator(
        task_id="work",
        python_callable=work,
        op_kwargs={"marker": MARKER, "label": "skip"},
        namespace=NS,
        key="skip/one",
        on_done="skip",
    )

with DAG("mc_retry", schedule=None, start_date=START, catchup=False) as mc_retry:
    CheckpointOperator(
        task_id="work",
        python_callable=flaky,
        op_kwargs={"marker": MARKER, "label": "retry"},
        namespace=NS,
        key="retry/one",
        retries=1,
        retry_delay=dt.timedelta(seconds=0),
    )

with DAG("mc_fail", schedule=None, start_date=START, catchup=False) as mc_fail:
    CheckpointOperator(
        task_id="work",
        python_callable=broken,
        op_kwargs={"marker": MARKER, "label": "fail"},
        namespace=NS,
        key="fail/one",
        retries=0,
    )

with DAG("mc_deferrable", schedule=None, start_date=START, catchup=False) as mc_deferrable:
    CheckpointOperator(
        task_id="work",
        python_callable=work,
        op_kwargs={"marker": MARKER, "label": "deferred"},
        namespace=NS,
        key="busy/one",
        deferrable=True,
        poll_interval=0.2,
        busy_timeout=120,
    )

with DAG("mc_env_conn", schedule=None, start_date=START, catchup=False) as mc_env_conn:
    # No namespace: it comes from the connection's extra.
    CheckpointOperator(
        task_id="work",
        python_callable=work,
        op_kwargs={"marker": MARKER, "label": "env"},
        key="env/one",
        mooncat_conn_id="mooncat_envtest",
    )

with DAG("mc_busy_fail", schedule=None, start_date=START, catchup=False) as mc_busy_fail:
    CheckpointOperator(
        task_id="work",
        python_callable=work,
        op_kwargs={"marker": MARKER, "label": "busy-fail"},
        namespace=NS,
        key="busy/one",
        on_busy="fail",
    )

with DAG("mc_reschedule", schedule=None, start_date=START, catchup=False) as mc_reschedule:
    CheckpointOperator(
        task_id="work",
        python_callable=work,
        op_kwargs={"marker": MARKER, "label": "rescheduled"},
        namespace=NS,
        key="busy/one",
        busy_mode="reschedule",
        poll_interval=0.3,
    )

with DAG("mc_reset", schedule=None, start_date=START, catchup=False) as mc_reset:
    CheckpointOperator(
        task_id="work",
        python_callable=work,
        op_kwargs={"marker": MARKER, "label": "after-reset"},
        namespace=NS,
        key="fail/one",
        on_failed_record="reset",
    )


def slow(marker: str, label: str) -> str:
    import time

    time.sleep(2.5)
    with Path(marker).open("a", encoding="utf-8") as fh:
        fh.write(f"{label}\n")
    return label


with DAG("mc_heartbeat", schedule=None, start_date=START, catchup=False) as mc_heartbeat:
    # The work outlives its lease several times over; only the background renewal keeps it ours.
    CheckpointOperator(
        task_id="work",
        python_callable=slow,
        op_kwargs={"marker": MARKER, "label": "slow"},
        namespace=NS,
        key="slow/one",
        lease_ms=600,
    )


with DAG("mc_poke", schedule=None, start_date=START, catchup=False) as mc_poke:
    # The defaults: wait for a busy key inside the worker.
    CheckpointOperator(
        task_id="work",
        python_callable=work,
        op_kwargs={"marker": MARKER, "label": "poked"},
        namespace=NS,
        key="busy/one",
        busy_timeout=120,
    )

with DAG("mc_poke_timeout", schedule=None, start_date=START, catchup=False) as mc_poke_timeout:
    CheckpointOperator(
        task_id="work",
        python_callable=work,
        op_kwargs={"marker": MARKER, "label": "poke-timeout"},
        namespace=NS,
        key="busy/one",
        busy_timeout=0.5,
    )


def give_up(marker: str, label: str) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    with Path(marker).open("a", encoding="utf-8") as fh:
        fh.write(f"{label}\n")
    raise AirflowFailException("no point in retrying")


with DAG("mc_fail_fast", schedule=None, start_date=START, catchup=False) as mc_fail_fast:
    # Retries are left, but AirflowFailException says a retry cannot help.
    CheckpointOperator(
        task_id="work",
        python_callable=give_up,
        op_kwargs={"marker": MARKER, "label": "fail-fast"},
        namespace=NS,
        key="fail/fast",
        retries=3,
        retry_delay=dt.timedelta(seconds=0),
    )

with DAG("mc_release", schedule=None, start_date=START, catchup=False) as mc_release:
    CheckpointOperator(
        task_id="work",
        python_callable=broken,
        op_kwargs={"marker": MARKER, "label": "release"},
        namespace=NS,
        key="fail/released",
        retries=0,
        on_error="release",
    )

with DAG("mc_env_conn_default_ns", schedule=None, start_date=START, catchup=False) as mc_env_conn_default_ns:
    # No namespace (the connection's default applies) and a key formatted from the callable's arguments.
    CheckpointOperator(
        task_id="work",
        python_callable=work,
        op_kwargs={"marker": MARKER, "label": NS},
        key="label/{label}",
        mooncat_conn_id="mooncat_with_namespace",
    )

with DAG("mc_typo_conn", schedule=None, start_date=START, catchup=False) as mc_typo_conn:
    # Names its own namespace; everything else comes from a connection a test defines.
    CheckpointOperator(
        task_id="work",
        python_callable=work,
        op_kwargs={"marker": MARKER, "label": "typo"},
        namespace=NS,
        key="typo/one",
        mooncat_conn_id="mooncat_typo",
    )

with DAG("mc_poke_slow", schedule=None, start_date=START, catchup=False) as mc_poke_slow:
    # Looks at a busy key every 30 s at most; gives up after 3 s.
    CheckpointOperator(
        task_id="work",
        python_callable=work,
        op_kwargs={"marker": MARKER, "label": "poke-slow"},
        namespace=NS,
        key="busy/one",
        poll_interval=30,
        busy_timeout=3,
    )

with DAG("mc_poke_long_interval", schedule=None, start_date=START, catchup=False) as mc_poke_long_interval:
    # An interval far longer than the test: only the look at the holder's lease end can finish it.
    CheckpointOperator(
        task_id="work",
        python_callable=work,
        op_kwargs={"marker": MARKER, "label": "after-expiry"},
        namespace=NS,
        key="busy/one",
        poll_interval=600,
        busy_timeout=60,
    )


def linger(marker: str, label: str) -> str:
    """Say it started, then work far longer than any test waits; only a kill ends it early."""
    import time

    with Path(marker).open("a", encoding="utf-8") as fh:
        fh.write(f"{label}\n")
    for _ in range(1200):
        time.sleep(0.1)
    return label


with DAG("mc_killable", schedule=None, start_date=START, catchup=False) as mc_killable:
    CheckpointOperator(
        task_id="work",
        python_callable=linger,
        op_kwargs={"marker": MARKER, "label": "started"},
        namespace=NS,
        key="long/one",
        lease_ms=120_000,
    )
