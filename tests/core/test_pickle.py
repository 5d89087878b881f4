"""A client travels to another process by pickle (as executors send it) and works there."""

from __future__ import annotations

import asyncio
import multiprocessing
import pickle
from typing import Any

import pytest
from mooncat_checkpoint import (
    AsyncCheckpointClient,
    Checkpoint,
    CheckpointClient,
    CorruptRecordError,
    KeyConflictError,
    LeaseLostError,
    Status,
    StepBusyError,
    StepFailedError,
)


def _finish_in_child(cp: CheckpointClient, key: str, out: Any) -> None:
    try:
        held = cp.claim("ns", key, owner_run_id="child")
        assert held.lease_token is not None
        cp.done("ns", key, held.lease_token, result={"from": "child"})
        out.put(("ok", cp.claim("ns", "parent").kind))
    except BaseException as exc:
        out.put(("error", f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        cp.close()


def test_a_pickled_client_works_in_a_spawned_process(shared_store_url: str) -> None:
    cp = CheckpointClient(shared_store_url)
    held = cp.claim("ns", "parent", lease_ms=600_000)  # the store is open before pickling
    assert held.kind == "claimed"
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    child = context.Process(target=_finish_in_child, args=(cp, "from-child", out))
    child.start()
    status, value = out.get(timeout=60)
    child.join(30)
    assert (status, value) == ("ok", "busy")
    assert child.exitcode == 0
    record = cp.get("ns", "from-child")
    assert record is not None and record.status is Status.DONE and record.result == {"from": "child"}
    cp.close()


def test_pickling_keeps_the_store_and_drops_the_connection(shared_store_url: str) -> None:
    cp = CheckpointClient(shared_store_url)
    cp.claim("ns", "k")
    copy = pickle.loads(pickle.dumps(cp))
    assert copy.url == cp.url and copy.location == cp.location
    assert copy.claim("ns", "k").kind == "busy"
    copy.close()
    cp.close()


def test_an_async_client_pickles_too(shared_store_url: str) -> None:
    async def body() -> str:
        cp = AsyncCheckpointClient(shared_store_url)
        await cp.claim("ns", "k")
        copy = pickle.loads(pickle.dumps(cp))
        kind = (await copy.claim("ns", "k")).kind
        await copy.aclose()
        await cp.aclose()
        return kind

    assert asyncio.run(body()) == "busy"


def test_an_unpickled_memory_client_sees_the_same_store_in_its_process() -> None:
    cp = CheckpointClient("memory://")
    held = cp.claim("ns", "k")
    assert held.lease_token is not None
    copy = pickle.loads(pickle.dumps(cp))
    assert copy.claim("ns", "k").kind == "busy"
    copy.done("ns", "k", held.lease_token, result=1)  # the copy writes to the original's store
    record = cp.get("ns", "k")
    assert record is not None and record.result == 1
    # Two clients made from the URL are two stores, as in TypeScript; only copies share one.
    assert CheckpointClient("memory://").get("ns", "k") is None
    cp.close()
    copy.close()


def test_an_unpickled_async_memory_client_sees_the_same_store() -> None:
    async def body() -> tuple[str, str]:
        cp = AsyncCheckpointClient("memory://")
        await cp.claim("ns", "k")
        copy = pickle.loads(pickle.dumps(cp))
        kinds = (await copy.claim("ns", "k")).kind, (await AsyncCheckpointClient("memory://").claim("ns", "k")).kind
        await copy.aclose()
        await cp.aclose()
        return kinds

    assert asyncio.run(body()) == ("busy", "claimed")


def _claim_in_child(pickled: bytes, out: Any) -> None:
    out.put(pickle.loads(pickled).claim("ns", "k").kind)


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_a_memory_client_in_another_process_starts_empty(method: str) -> None:
    """A memory store cannot cross a process: a client unpickled in another one, forked or spawned, starts
    empty rather than writing to a frozen copy of the parent's records."""
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method} on this platform")
    cp = CheckpointClient("memory://")
    cp.claim("ns", "k", lease_ms=600_000)
    context = multiprocessing.get_context(method)
    out = context.Queue()
    child = context.Process(target=_claim_in_child, args=(pickle.dumps(cp), out))
    child.start()
    assert out.get(timeout=60) == "claimed"
    child.join(30)
    assert child.exitcode == 0
    cp.close()


def test_the_library_errors_survive_a_trip_to_another_process() -> None:
    record = Checkpoint(namespace="ns", key="k", status=Status.FAILED, owner_run_id="run", lease_token=None,
                        lease_until=None, result=None, result_ref=None, error="boom", attempts=1, created_at=1,
                        updated_at=2)
    errors: list[Exception] = [
        StepFailedError(record, "sqlite:///x.db"), StepBusyError(record, 1.5), LeaseLostError("ns", "k", "gone"),
        KeyConflictError("ns", "k", "other", "NS"), CorruptRecordError("/x/k.json", "not JSON", "file:///x"),
    ]
    for error in errors:
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error)
        assert vars(copy) == vars(error)
