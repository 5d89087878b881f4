"""AsyncCheckpointClient and AsyncStep: the same behaviour as coroutines, with the event loop free."""

from __future__ import annotations

import asyncio
import math
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from mooncat_checkpoint import (
    AsyncCheckpointClient,
    CheckpointClient,
    CheckpointResultSerializationError,
    InvalidArgumentError,
    KeyConflictError,
    LeaseLostError,
    Status,
    StepBusyError,
    StepFailedError,
    storage_segment,
)

T = TypeVar("T")
SHORT_LEASE = 300


def run(body: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(body(), 60))  # type: ignore[arg-type]


def test_the_async_client_follows_the_state_machine(store_url: str) -> None:
    async def body() -> None:
        async with AsyncCheckpointClient(store_url) as cp:
            held = await cp.claim("ns", "k", owner_run_id="run-1", lease_ms=60_000)
            assert held.kind == "claimed" and held.lease_token is not None
            assert (await cp.claim("ns", "k")).kind == "busy"
            touched = await cp.touch("ns", "k", held.lease_token, extend_ms=120_000)
            assert touched is not None and touched.lease_until is not None
            assert await cp.touch("ns", "k", "0" * 32) is None
            with pytest.raises(LeaseLostError):
                await cp.done("ns", "k", "0" * 32)
            done = await cp.done("ns", "k", held.lease_token, result={"v": [1, 2]})
            assert done.status is Status.DONE
            again = await cp.claim("ns", "k")
            assert again.kind == "done" and again.checkpoint.result == {"v": [1, 2]}

            other = await cp.claim("ns", "f")
            assert other.lease_token is not None
            failed = await cp.fail("ns", "f", "boom", other.lease_token)
            assert failed.status is Status.FAILED and (await cp.claim("ns", "f")).kind == "failed"

            gone = await cp.claim("ns", "a", owner_run_id="run-2")
            assert gone.lease_token is not None and await cp.abandon("ns", "a", gone.lease_token)
            await cp.claim_many("ns", ["b", "c"], owner_run_id="run-2")
            assert await cp.abandon_owned("run-2", namespace="ns") == 2
            await cp.claim("ns", "short", lease_ms=1)
            await asyncio.sleep(0.01)
            assert await cp.gc() == 1

            got = await cp.get("ns", "k")
            assert got is not None and got.result == {"v": [1, 2]}
            got.result["v"].append(3)
            fresh = await cp.get("ns", "k")
            assert fresh is not None and fresh.result == {"v": [1, 2]}
            assert set(await cp.get_many("ns", ["k", "f", "absent"])) == {"k", "f"}
            assert [r.key for r in await cp.list("ns", status="done")] == ["k"]
            assert [r.key for r in await cp.list("ns", status=Status.FAILED)] == ["f"]
            assert await cp.reset("ns", "f") and await cp.get("ns", "f") is None

            with pytest.raises(CheckpointResultSerializationError):
                await cp.done("ns", "k", "0" * 32, result=math.inf)
            with pytest.raises(InvalidArgumentError):
                await cp.claim("ns", "k", lease_ms=0)
            with pytest.raises(InvalidArgumentError):
                await cp.gc(older_than=-1)
            await cp.claim("ns", "needs hashing")
            with pytest.raises(KeyConflictError):
                await cp.get("ns", storage_segment("needs hashing"))

    run(body)


def test_a_blocked_store_does_not_block_the_event_loop(tmp_path: Path) -> None:
    """The claim below can only finish after a task on the same loop releases the database lock."""
    db = tmp_path / "cp.db"
    with CheckpointClient(f"sqlite://{db}") as setup:
        setup.get("ns", "k")  # create the database and its table before the lock is taken
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    ticks: list[int] = []

    async def release_after_ticks() -> None:
        for tick in range(5):
            ticks.append(tick)
            await asyncio.sleep(0.02)
        blocker.execute("COMMIT")

    async def body() -> None:
        async with AsyncCheckpointClient(f"sqlite://{db}") as cp:
            claim = asyncio.ensure_future(cp.claim("ns", "k"))
            await release_after_ticks()
            assert (await claim).kind == "claimed"

    run(body)
    assert ticks == [0, 1, 2, 3, 4]
    blocker.close()


def test_a_ticker_keeps_ticking_through_operations(store_url: str) -> None:
    async def body() -> int:
        stop = asyncio.Event()
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.ensure_future(ticker())
        async with AsyncCheckpointClient(store_url) as cp:
            for n in range(20):
                held = await cp.claim("ns", f"k{n}")
                assert held.lease_token is not None
                await cp.done("ns", f"k{n}", held.lease_token, result=n)
            assert len(await cp.list("ns")) == 20
        stop.set()
        await task
        return ticks

    assert run(body) > 0


def test_async_step_skips_finished_work(store_url: str) -> None:
    async def body() -> None:
        async with AsyncCheckpointClient(store_url) as cp:
            async with cp.step("ns", "k") as step:
                assert not step.skipped
                step.value = {"n": 1}
            async with cp.step("ns", "k") as again:
                assert again.skipped and again.result == {"n": 1}

    run(body)


def test_async_step_heartbeat_and_lost_lease(store_url: str) -> None:
    async def body() -> None:
        async with AsyncCheckpointClient(store_url) as cp:
            async with cp.step("ns", "k", lease_ms=SHORT_LEASE) as step:
                for _ in range(4):
                    await asyncio.sleep(SHORT_LEASE / 1000)
                    assert (await cp.claim("ns", "k")).kind == "busy"
                step.value = "kept"
            record = await cp.get("ns", "k")
            assert record is not None and record.status is Status.DONE and record.result == "kept"

            with pytest.raises(LeaseLostError):
                async with cp.step("ns", "lost", lease_ms=SHORT_LEASE, heartbeat=False) as step:
                    await asyncio.sleep(SHORT_LEASE / 1000 + 0.05)
                    assert (await cp.claim("ns", "lost", owner_run_id="thief")).kind == "claimed"
            record = await cp.get("ns", "lost")
            assert record is not None and record.owner_run_id == "thief"

            with pytest.raises(LeaseLostError):
                async with cp.step("ns", "reset", lease_ms=SHORT_LEASE) as step:
                    await cp.reset("ns", "reset")
                    for _ in range(200):
                        if step.lease_lost:
                            break
                        await asyncio.sleep(0.02)
                    assert step.lease_lost

    run(body)


def test_async_step_errors_cancellation_and_busy(store_url: str) -> None:
    async def body() -> None:
        async with AsyncCheckpointClient(store_url) as cp:
            with pytest.raises(ValueError):
                async with cp.step("ns", "a"):
                    raise ValueError("boom")
            assert await cp.get("ns", "a") is None

            with pytest.raises(ValueError):
                async with cp.step("ns", "f", on_error="fail"):
                    raise ValueError("boom")
            record = await cp.get("ns", "f")
            assert record is not None and record.status is Status.FAILED and record.error == "ValueError: boom"
            with pytest.raises(StepFailedError, match="reset"):
                async with cp.step("ns", "f"):
                    raise AssertionError("must not run")

            with pytest.raises(CheckpointResultSerializationError):
                async with cp.step("ns", "nan") as step:
                    step.value = math.nan
            assert await cp.get("ns", "nan") is None

            entered = asyncio.Event()

            async def cancelled_body() -> None:
                async with cp.step("ns", "c", on_error="fail"):
                    entered.set()
                    await asyncio.sleep(60)

            task = asyncio.ensure_future(cancelled_body())
            await entered.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await cp.get("ns", "c") is None

            held = await cp.claim("ns", "busy", owner_run_id="holder", lease_ms=60_000)
            assert held.lease_token is not None
            with pytest.raises(StepBusyError, match="holder"):
                async with cp.step("ns", "busy", on_busy="raise"):
                    raise AssertionError("must not run")

            async def finish_later() -> None:
                await asyncio.sleep(0.2)
                await cp.done("ns", "busy", held.lease_token or "", result="theirs")

            finisher = asyncio.ensure_future(finish_later())
            async with cp.step("ns", "busy", wait_timeout=30) as step:
                assert step.skipped and step.result == "theirs"
            await finisher

    run(body)


def test_async_clients_share_a_store_with_blocking_ones(shared_store_url: str) -> None:
    async def body() -> Any:
        async with AsyncCheckpointClient(shared_store_url) as cp:
            held = await cp.claim("ns", "k")
            assert held.lease_token is not None
            await cp.done("ns", "k", held.lease_token, result="from async")

    run(body)
    with CheckpointClient(shared_store_url) as cp:
        outcome = cp.claim("ns", "k")
        assert outcome.kind == "done" and outcome.checkpoint.result == "from async"


def test_async_client_lists_namespaces_and_streams_records(tmp_path: Path) -> None:
    async def body() -> None:
        async with AsyncCheckpointClient(f"sqlite://{tmp_path}/a.db") as cp:
            for ns, key in (("alpha", "k1"), ("alpha", "k2"), ("beta", "k3")):
                claim = await cp.claim(ns, key)
                assert claim.lease_token is not None
                await cp.done(ns, key, claim.lease_token, result=key)
            assert await cp.namespaces() == ["alpha", "beta"]
            assert sorted([r.key async for r in cp.scan("alpha")]) == ["k1", "k2"]  # type: ignore[union-attr]
            assert [r.key async for r in cp.scan("beta", "claimed")] == []  # type: ignore[union-attr]

    run(body)


@pytest.mark.parametrize("options", [{"wait_timeout": "5"}, {"heartbeat": "no"}, {"on_busy": "never"}, {"lease_ms": 0}])
def test_async_step_options_are_checked_before_any_claim(store_url: str, options: dict[str, Any]) -> None:
    async def scenario() -> None:
        async with AsyncCheckpointClient(store_url) as cp:
            with pytest.raises(InvalidArgumentError):
                async with cp.step("ns", "k", **options):
                    raise AssertionError("must not run")
            assert await cp.get("ns", "k") is None

    asyncio.run(scenario())
