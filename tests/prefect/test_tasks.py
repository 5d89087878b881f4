"""checkpoint_task against a real Prefect test server and a real SQLite checkpoint store."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from mooncat_checkpoint import (
    AsyncCheckpointClient,
    CheckpointClient,
    InvalidArgumentError,
    StepBusyError,
    StepFailedError,
)
from mooncat_prefect import ARTIFACT_KEY, RESULT_REF_PREFIX, CheckpointTask, checkpoint_task
from prefect import flow, task
from prefect.artifacts import Artifact
from prefect.settings import PREFECT_TASKS_REFRESH_CACHE, temporary_settings
from prefect.states import State

NS = "prefect-tests"


class Calls:
    """Thread-safe record of which arguments the wrapped function really ran with."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: Counter[Any] = Counter()

    def add(self, value: Any) -> None:
        with self.lock:
            self.seen[value] += 1

    @property
    def total(self) -> int:
        return sum(self.seen.values())


def test_second_run_is_cached_by_call_submit_and_map(store_url: str, client: CheckpointClient) -> None:
    calls = Calls()

    @checkpoint_task(namespace=NS, key="square/{n}", url=store_url)
    def square(n: int) -> dict[str, int]:
        calls.add(n)
        return {"n": n, "square": n * n}

    assert isinstance(square, CheckpointTask)

    @flow
    def pipeline() -> tuple[Any, State[Any], Any, list[Any]]:
        direct = square(2)
        state = square(3, return_state=True)
        submitted = square.submit(4).result()
        mapped = [f.result() for f in square.map([2, 3, 4, 5])]
        return direct, state, submitted, mapped

    first = pipeline()
    assert first[0] == {"n": 2, "square": 4}
    assert first[1].name == "Completed"
    assert first[3] == [{"n": n, "square": n * n} for n in (2, 3, 4, 5)]
    assert calls.seen == Counter({2: 1, 3: 1, 4: 1, 5: 1})

    direct, state, submitted, mapped = pipeline()
    assert calls.total == 4, "a second flow run must not call the function again"
    assert direct == {"n": 2, "square": 4}
    assert submitted == {"n": 4, "square": 16}
    assert mapped == first[3]
    assert state.is_completed() and state.name == "Cached"
    assert f"{NS}/square/3" in (state.message or "")
    owner = client.get(NS, "square/3").owner_run_id
    assert owner and owner.startswith("prefect:") and owner in (state.message or "")
    assert state.result() == {"n": 3, "square": 9}


def test_key_finished_by_the_core_library_is_skipped(store_url: str, client: CheckpointClient) -> None:
    claimed = client.claim(NS, "orders/2024-05-01", owner_run_id="cron-job-7")
    client.done(NS, "orders/2024-05-01", claimed.lease_token, result={"rows": 12})
    calls = Calls()

    @checkpoint_task(namespace=NS, key="orders/{day}", url=store_url)
    def load(day: str) -> dict[str, int]:
        calls.add(day)
        return {"rows": -1}

    @flow
    def pipeline() -> State[Any]:
        return load("2024-05-01", return_state=True)

    state = pipeline()
    assert calls.total == 0
    assert state.name == "Cached"
    assert "cron-job-7" in (state.message or "")
    assert state.result() == {"rows": 12}


def test_retries_then_success_records_one_done(store_url: str, client: CheckpointClient) -> None:
    calls = Calls()

    @checkpoint_task(namespace=NS, key="flaky/{n}", url=store_url, retries=3, retry_delay_seconds=0)
    def flaky(n: int) -> int:
        calls.add(n)
        if calls.seen[n] < 3:
            raise ConnectionError("transient")
        return n * 10

    @flow
    def pipeline() -> int:
        return flaky(7)

    assert pipeline() == 70
    assert calls.seen[7] == 3
    record = client.get(NS, "flaky/7")
    assert record is not None and record.status == "done" and record.result == 70
    # One claim for the whole task run: the retries reused its lease.
    assert record.attempts == 1


@pytest.mark.parametrize("mode", ["abandon", "fail"])
def test_retries_exhausted(mode: str, store_url: str, client: CheckpointClient) -> None:
    calls = Calls()
    running = Calls()

    @checkpoint_task(namespace=NS, key="broken/{n}", url=store_url, on_failure=mode, retries=1,
                     retry_delay_seconds=0, on_running=[lambda task, run, state: running.add(run.id)])
    def broken(n: int) -> int:
        calls.add(n)
        raise ValueError(f"bad input {n}")

    @flow
    def pipeline() -> dict[str, State[Any]]:
        # Wrapped in a dict: a flow returning a failed state would fail itself and raise here.
        return {"state": broken(1, return_state=True)}

    state = pipeline()["state"]
    assert state.is_failed()
    assert calls.seen[1] == 2  # the first attempt and its one retry
    record = client.get(NS, "broken/1")
    if mode == "abandon":
        assert record is None, "an abandoned key is free for the next flow run"
        again = pipeline()["state"]
        assert again.is_failed() and calls.seen[1] == 4
    else:
        assert record is not None and record.status == "failed"
        assert "ValueError: bad input 1" in (record.error or "")
        running.seen.clear()
        again = pipeline()["state"]
        assert again.is_failed()
        assert calls.seen[1] == 2, "a failed key is not run again"
        assert running.total == 1, "a failed key must not be retried by Prefect"
        with pytest.raises(StepFailedError, match="mooncat-checkpoint reset"):
            again.result()


def test_busy_key_waits_for_the_other_holder(store_url: str, client: CheckpointClient) -> None:
    claimed = client.claim(NS, "busy/1", owner_run_id="other-runner", lease_ms=30_000)
    finisher = threading.Timer(
        0.8, lambda: client.done(NS, "busy/1", claimed.lease_token, result="theirs")
    )
    calls = Calls()

    @checkpoint_task(namespace=NS, key="busy/{n}", url=store_url)
    def work(n: int) -> str:
        calls.add(n)
        return "ours"

    @flow
    def pipeline(n: int) -> State[Any]:
        return work(n, return_state=True)

    finisher.start()
    state = pipeline(1)
    finisher.join()
    assert calls.total == 0
    assert state.name == "Cached" and state.result() == "theirs"

    # A holder that vanished: once its lease expires, the key is claimed and run.
    client.claim(NS, "busy/2", owner_run_id="crashed-runner", lease_ms=600)
    state = pipeline(2)
    assert state.name == "Completed" and state.result() == "ours"
    record = client.get(NS, "busy/2")
    assert record is not None and record.status == "done" and record.attempts == 2

    # on_busy="raise" does not wait.
    client.claim(NS, "busy/3", owner_run_id="other-runner", lease_ms=30_000)

    @flow
    def impatient() -> dict[str, State[Any]]:
        return {"state": work.with_options(on_busy="raise")(3, return_state=True)}

    state = impatient()["state"]
    assert state.is_failed()
    with pytest.raises(StepBusyError):
        state.result()


def test_duplicate_keys_in_one_map_run_once(store_url: str) -> None:
    calls = Calls()

    @checkpoint_task(namespace=NS, key="dup/{n}", url=store_url)
    def slow(n: int) -> int:
        calls.add(n)
        time.sleep(0.3)
        return n + 100

    @flow
    def pipeline() -> list[State[Any]]:
        futures = slow.map([1, 1, 1, 2, 2])
        for future in futures:
            future.wait()
        return [future.state for future in futures]

    states = pipeline()
    assert calls.seen == Counter({1: 1, 2: 1})
    assert [s.result() for s in states] == [101, 101, 101, 102, 102]
    names = Counter(s.name for s in states)
    assert names == Counter({"Completed": 2, "Cached": 3})


def test_duplicate_keys_in_asyncio_gather_and_async_tasks(store_url: str, client: CheckpointClient) -> None:
    calls = Calls()

    @checkpoint_task(namespace=NS, key="async/{n}", url=store_url)
    async def fetch(n: int) -> list[int]:
        calls.add(n)
        await asyncio.sleep(0.2)
        return [n, n]

    @flow
    async def pipeline() -> list[Any]:
        return list(await asyncio.gather(fetch(1), fetch(1), fetch(2), fetch(1)))

    assert asyncio.run(pipeline()) == [[1, 1], [1, 1], [2, 2], [1, 1]]
    assert calls.seen == Counter({1: 1, 2: 1})

    @flow
    async def rerun() -> State[Any]:
        return await fetch(2, return_state=True)

    state = asyncio.run(rerun())
    assert state.name == "Cached" and state.result() == [2, 2]
    assert calls.total == 2
    assert client.get(NS, "async/1").status == "done"


def test_refresh_reruns_a_done_key(store_url: str) -> None:
    calls = Calls()

    @checkpoint_task(namespace=NS, key="fresh/{n}", url=store_url)
    def compute(n: int) -> int:
        calls.add(n)
        return calls.seen[n]

    @flow
    def pipeline(task: Any) -> State[Any]:
        return task(1, return_state=True)

    assert pipeline(compute).result() == 1
    assert pipeline(compute).name == "Cached"
    # Our own option, Prefect's task option, and Prefect's setting all force a run.
    assert pipeline(compute.with_options(refresh=True)).result() == 2
    assert pipeline(compute.with_options(refresh_cache=True)).result() == 3
    with temporary_settings({PREFECT_TASKS_REFRESH_CACHE: True}):
        assert pipeline(compute).result() == 4
    state = pipeline(compute)
    assert state.name == "Cached" and state.result() == 4


def test_large_and_non_json_results_go_through_result_storage(store_url: str, client: CheckpointClient) -> None:
    calls = Calls()

    @checkpoint_task(namespace=NS, key="big/{kind}", url=store_url)
    def produce(kind: str) -> Any:
        calls.add(kind)
        if kind == "list":
            return list(range(30_000))  # JSON text far above the 64 KiB inline limit
        if kind == "tuple":
            return ("not", "json", 1)  # JSON would bring it back as a list
        return {"small": True}

    @flow
    def pipeline() -> list[State[Any]]:
        return [produce(kind, return_state=True) for kind in ("list", "tuple", "small")]

    pipeline()
    refs = {kind: client.get(NS, f"big/{kind}") for kind in ("list", "tuple", "small")}
    for kind in ("list", "tuple"):
        assert refs[kind].result is None
        assert refs[kind].result_ref and refs[kind].result_ref.startswith(RESULT_REF_PREFIX)
    assert refs["small"].result == {"small": True} and refs["small"].result_ref is None

    states = pipeline()
    assert [s.name for s in states] == ["Cached"] * 3
    assert states[0].result() == list(range(30_000))
    assert states[1].result() == ("not", "json", 1)
    assert calls.total == 3

    # The stored artifact vanished: the key counts as not done and is computed again, never a broken value.
    Path(refs["tuple"].result_ref[len(RESULT_REF_PREFIX):]).unlink()
    states = pipeline()
    assert states[1].name == "Completed" and states[1].result() == ("not", "json", 1)
    assert calls.seen["tuple"] == 2


def test_key_template_errors_come_before_any_claim(store_url: str, client: CheckpointClient) -> None:
    # A field that names no parameter is refused when the task is defined.
    with pytest.raises(InvalidArgumentError, match=r"\{missing\}.*not a parameter.*day"):
        @checkpoint_task(namespace=NS, key="day/{missing}", url=store_url)
        def undefined_field(day: str) -> str:
            return day

    calls = Calls()
    running = Calls()

    # With **kwargs a field can only be checked per call: missing there, it fails the task run before any
    # claim, and is not retried.
    @checkpoint_task(namespace=NS, key="day/{missing}", url=store_url, retries=2, retry_delay_seconds=0,
                     on_running=[lambda task, run, state: running.add(run.id)])
    def bad_template(day: str, **extra: Any) -> str:
        calls.add(day)
        return day

    @checkpoint_task(namespace=NS, key="obj/{value}", url=store_url)
    def not_plain(value: Any) -> Any:
        calls.add("not_plain")
        return 1

    @flow
    def pipeline() -> dict[str, State[Any]]:
        return {"missing": bad_template("mon", return_state=True),
                "unplain": not_plain({"a": 1}, return_state=True)}

    states = pipeline()
    missing, unplain = states["missing"], states["unplain"]
    with pytest.raises(InvalidArgumentError, match="missing"):
        missing.result()
    with pytest.raises(InvalidArgumentError, match="value"):
        unplain.result()
    assert calls.total == 0
    assert running.total == 1, "a key error is not retried"
    assert client.list(NS) == []

    with pytest.raises(InvalidArgumentError, match="not a parameter"):
        not_plain.with_options(key="obj/{other}")


def test_key_callable_and_default_key(store_url: str, client: CheckpointClient) -> None:
    @checkpoint_task(namespace=NS, key=lambda args: f"pair/{args['a']}-{args['b']}", url=store_url)
    def pair(a: int, b: int = 2) -> int:
        return a + b

    @checkpoint_task(url=store_url)
    def plain_default(x: str, flag: bool = False) -> str:
        return x

    @flow
    def pipeline() -> None:
        pair(1)
        plain_default("hi")

    pipeline()
    assert client.get(NS, "pair/1-2").result == 3
    assert client.get("plain_default", '{"flag":false,"x":"hi"}').result == "hi"


def test_with_options_keeps_checkpointing(store_url: str, client: CheckpointClient) -> None:
    @checkpoint_task(namespace=NS, key="opt/{n}", url=store_url, tags=["etl"])
    def step(n: int) -> int:
        return n

    variant = step.with_options(name="renamed", retries=2, tags=["other"], task_run_name="run-{n}")
    assert isinstance(variant, CheckpointTask)
    assert variant.name == "renamed" and variant.retries == 2 and variant.tags == {"other"}
    assert variant.checkpoint_options == step.checkpoint_options

    @flow
    def pipeline() -> list[State[Any]]:
        return [variant(5, return_state=True), step(5, return_state=True)]

    first, second = pipeline()
    assert first.name == "Completed" and second.name == "Cached"
    assert client.get(NS, "opt/5").status == "done"


def test_summary_artifact_counts_ran_skipped_failed(store_url: str) -> None:
    @checkpoint_task(namespace=NS, key="sum/{n}", url=store_url)
    def maybe(n: int) -> int:
        if n < 0:
            raise ValueError("negative")
        return n

    @flow
    def pipeline() -> None:
        for future in maybe.map([1, 2, 3, -1]):
            future.wait()

    pipeline(return_state=True)
    pipeline(return_state=True)
    artifact = Artifact.get(ARTIFACT_KEY)
    assert artifact is not None
    rows = json.loads(artifact.data)
    assert rows == [{"task": "maybe", "ran": 0, "skipped": 3, "failed": 1}]
    assert "3 skipped" in (artifact.description or "")


class Interrupted(BaseException):
    """Stands for a crash signal: a BaseException, which Prefect treats as a crash, not a failure."""


def test_base_exception_and_timeout_release_the_claim_at_once(store_url: str, client: CheckpointClient) -> None:
    @checkpoint_task(namespace=NS, key="crash/{n}", url=store_url, lease_ms=600_000)
    def crashing(n: int) -> int:
        raise Interrupted()

    @checkpoint_task(namespace=NS, key="slow/{n}", url=store_url, lease_ms=600_000, timeout_seconds=0.5)
    def too_slow(n: int) -> int:
        time.sleep(3)
        return n

    @flow
    def crash_flow() -> None:
        crashing(1)

    @flow
    def timeout_flow() -> dict[str, State[Any]]:
        return {"state": too_slow(1, return_state=True)}

    with pytest.raises(Interrupted):
        crash_flow()
    # Released, not left to a ten-minute lease: the next run can take the key right away.
    assert client.get(NS, "crash/1") is None
    state = timeout_flow()["state"]
    assert state.is_failed() and state.name == "TimedOut"
    assert client.get(NS, "slow/1") is None


def test_returned_failed_state_is_not_recorded(store_url: str, client: CheckpointClient) -> None:
    from prefect.states import Failed

    @checkpoint_task(namespace=NS, key="soft/{n}", url=store_url)
    def soft_fail(n: int) -> Any:
        return Failed(message="upstream said no")

    @flow
    def pipeline() -> dict[str, State[Any]]:
        return {"state": soft_fail(1, return_state=True)}

    state = pipeline()["state"]
    assert state.is_failed()
    assert client.get(NS, "soft/1") is None


def test_lease_is_renewed_while_the_function_runs(store_url: str, client: CheckpointClient) -> None:
    seen: list[str] = []

    @checkpoint_task(namespace=NS, key="long/{n}", url=store_url, lease_ms=600)
    def long_running(n: int) -> int:
        time.sleep(1.5)  # well past the 0.6 s lease: only the heartbeat keeps it ours
        with CheckpointClient(store_url) as other:
            seen.append(other.claim(NS, f"long/{n}", owner_run_id="intruder").kind)
        return n

    @flow
    def pipeline() -> int:
        return long_running(1)

    assert pipeline() == 1
    assert seen == ["busy"]
    record = client.get(NS, "long/1")
    assert record is not None and record.status == "done" and record.attempts == 1


def test_cache_policy_as_key(store_url: str, client: CheckpointClient) -> None:
    from prefect.cache_policies import INPUTS

    calls = Calls()

    @checkpoint_task(namespace=NS, key=INPUTS, url=store_url)
    def hashed(n: int) -> int:
        calls.add(n)
        return n

    @flow
    def pipeline() -> State[Any]:
        return hashed(4, return_state=True)

    assert pipeline().name == "Completed"
    assert pipeline().name == "Cached"
    assert calls.total == 1
    [record] = client.list(NS)
    assert record.result == 4 and record.key  # an opaque Python-only hash


def test_foreign_result_ref_fails_loudly_without_retries(store_url: str, client: CheckpointClient) -> None:
    from mooncat_prefect import ResultUnavailableError

    claimed = client.claim(NS, "foreign/1", owner_run_id="ts-job")
    client.done(NS, "foreign/1", claimed.lease_token, result_ref="s3://bucket/blob-1")
    running = Calls()

    @checkpoint_task(namespace=NS, key="foreign/{n}", url=store_url, retries=2, retry_delay_seconds=0,
                     on_running=[lambda task, run, state: running.add(run.id)])
    def consume(n: int) -> int:
        return n

    @flow
    def pipeline() -> dict[str, State[Any]]:
        return {"state": consume(1, return_state=True)}

    state = pipeline()["state"]
    with pytest.raises(ResultUnavailableError, match="s3://bucket/blob-1"):
        state.result()
    assert running.total == 1


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_task_options_apply_to_the_runs_of_a_checkpointed_task(store_url: str) -> None:
    seen: list[tuple[str, frozenset[str], str]] = []
    prints = _Collect()
    run_logger = logging.getLogger("prefect.task_runs")
    run_logger.addHandler(prints)

    def remember(task: Any, task_run: Any, state: State[Any]) -> None:
        seen.append((task_run.name, frozenset(task_run.tags), state.name))

    @checkpoint_task(namespace=NS, key="labelled/{n}", url=store_url, tags=["etl"], task_run_name="item-{n}",
                     log_prints=True, on_completion=[remember])
    def labelled(n: int) -> int:
        print(f"working on {n}")
        return n

    @flow
    def pipeline() -> list[int]:
        return [labelled(8), labelled.with_options(task_run_name="again-{n}", tags=["late"]).submit(8).result()]

    try:
        assert pipeline() == [8, 8]
    finally:
        run_logger.removeHandler(prints)
    assert seen == [("item-8", frozenset({"etl"}), "Completed"), ("again-8", frozenset({"late"}), "Cached")]
    assert prints.messages.count("working on 8") == 1, "log_prints captures the one real run's output"


def test_client_option_sync_and_async(store_url: str, client: CheckpointClient) -> None:
    calls = Calls()

    @checkpoint_task(namespace=NS, key="via-client/{n}", client=client)
    def sync_task(n: int) -> int:
        calls.add(("sync", n))
        return n

    async_client = AsyncCheckpointClient(store_url)

    @checkpoint_task(namespace=NS, key="via-async-client/{n}", client=async_client)
    async def async_task(n: int) -> int:
        calls.add(("async", n))
        return -n

    # Each client also serves the other kind of function, through a client of its kind on the same store.
    @checkpoint_task(namespace=NS, key="via-async-client/{n}", client=async_client)
    def sync_on_async_client(n: int) -> int:
        calls.add(("sync-on-async", n))
        return 0

    @flow
    async def pipeline() -> list[Any]:
        return [sync_task(1), await async_task(2), sync_on_async_client(2)]

    assert asyncio.run(pipeline()) == [1, -2, -2]
    assert set(calls.seen) == {("sync", 1), ("async", 2)}
    assert client.get(NS, "via-client/1").result == 1
    assert client.get(NS, "via-async-client/2").result == -2
    with pytest.raises(InvalidArgumentError, match="either url= or client="):
        checkpoint_task(namespace=NS, url=store_url, client=client)


def test_owner_run_id_names_the_flow_run_and_the_task_run(store_url: str, client: CheckpointClient) -> None:
    @checkpoint_task(namespace=NS, key="owner/{n}", url=store_url)
    def owned(n: int) -> int:
        return n

    @flow
    def pipeline() -> State[Any]:
        return owned(1, return_state=True)

    state = pipeline()
    details = state.state_details
    assert client.get(NS, "owner/1").owner_run_id == f"prefect:{details.flow_run_id}:{details.task_run_id}"


def test_async_task_cancelled_or_failed_state_is_not_recorded_and_large_results_go_to_storage(
    store_url: str, client: CheckpointClient
) -> None:
    from prefect.states import Failed

    calls = Calls()

    @checkpoint_task(namespace=NS, key="aslow/{n}", url=store_url, lease_ms=600_000, timeout_seconds=0.5)
    async def too_slow(n: int) -> int:
        await asyncio.sleep(5)  # cancelled by the timeout
        return n

    @checkpoint_task(namespace=NS, key="asoft/{n}", url=store_url)
    async def soft_fail(n: int) -> Any:
        return Failed(message="upstream said no")

    @checkpoint_task(namespace=NS, key="abig/{n}", url=store_url)
    async def big(n: int) -> tuple[int, ...]:
        calls.add(n)
        return tuple(range(n))

    @flow
    async def pipeline() -> dict[str, State[Any]]:
        return {"slow": await too_slow(1, return_state=True), "soft": await soft_fail(1, return_state=True),
                "big": await big(20_000, return_state=True)}

    states = asyncio.run(pipeline())
    assert states["slow"].is_failed() and states["slow"].name == "TimedOut"
    assert client.get(NS, "aslow/1") is None, "a cancelled claim is released at once, not left to its lease"
    assert states["soft"].is_failed() and client.get(NS, "asoft/1") is None
    record = client.get(NS, "abig/20000")
    assert record is not None and record.result is None and record.result_ref.startswith(RESULT_REF_PREFIX)

    again = asyncio.run(pipeline())["big"]
    assert again.name == "Cached" and again.result() == tuple(range(20_000)) and calls.total == 1

    Path(record.result_ref[len(RESULT_REF_PREFIX):]).unlink()
    recomputed = asyncio.run(pipeline())["big"]
    assert recomputed.name == "Completed" and recomputed.result() == tuple(range(20_000)) and calls.total == 2


def test_calling_fn_inside_another_task_is_a_plain_call(store_url: str, client: CheckpointClient) -> None:
    @checkpoint_task(namespace=NS, key="inner/{n}", url=store_url)
    def inner(n: int) -> dict[str, int]:
        return {"n": n}

    @task(retries=2)
    def outer(n: int) -> Any:
        return inner.fn(n)

    @flow
    def pipeline() -> list[Any]:
        return [outer(1), outer(1)]

    # A value both times (never a Prefect state or record), and the record names no Prefect run: the outer
    # task's run ids are not this key's.
    assert pipeline() == [{"n": 1}, {"n": 1}]
    record = client.get(NS, "inner/1")
    assert record is not None and record.status == "done" and not (record.owner_run_id or "").startswith("prefect:")


@pytest.mark.parametrize("options", [{"namespace": ""}, {"namespace": "a b"}, {"on_busy": "later"},
                                     {"on_failure": "retry"}, {"key": 42}, {"refresh": "no"}, {"refresh": 1},
                                     {"lease_ms": "100"}, {"lease_ms": -1}, {"wait_timeout": "5"},
                                     {"refresh_cache": "no"}])
def test_bad_options_fail_where_they_are_written(options: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgumentError):
        checkpoint_task(**{"namespace": NS, **options})(lambda n: n)

    @checkpoint_task(namespace=NS, key="k/{n}")
    def fine(n: int) -> int:
        return n

    with pytest.raises(InvalidArgumentError):
        fine.with_options(**options)


def test_count_skipped_checks_its_arguments_and_needs_a_flow_run() -> None:
    from mooncat_prefect import count_skipped

    with pytest.raises(RuntimeError, match="inside a flow run"):
        count_skipped("some_task", 1)

    @flow
    def bad_count() -> None:
        count_skipped("some_task", -1)

    with pytest.raises(ValueError, match="whole number"):
        bad_count()
