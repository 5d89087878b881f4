"""A client travels to another process by pickle (as executors send it) and works there."""

from __future__ import annotations

import asyncio
import multiprocessing
import pickle
from typing import Any

from mooncat_checkpoint import AsyncCheckpointClient, CheckpointClient, Status


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
