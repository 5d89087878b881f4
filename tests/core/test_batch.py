"""get_many / claim_many answer exactly what per-key get / claim would, and both durability modes store
the same records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from core_support import STORE_URLS, FakeClock, install_clock
from mooncat_checkpoint import CheckpointClient, ClaimResult, InvalidArgumentError, Status

NS = "batch"
HASHED = "a key/with spaces and a slash"  # stored under a sha256 segment
LONG = "x" * 200  # too long to be its own segment
UNICODE = "ключ-🙂"


def _state(client: CheckpointClient, clock: FakeClock) -> None:
    """One key in every state: done, failed, busy (live lease), expired lease; some keys stay absent."""
    for key, result in (("done", {"v": 1}), (HASHED, [1, "two"]), (UNICODE, None)):
        claim = client.claim(NS, key, owner_run_id="first")
        client.done(NS, key, claim.lease_token or "", result=result, result_ref="ref" if result is None else None)
    failed = client.claim(NS, "failed")
    client.fail(NS, "failed", "boom", failed.lease_token or "")
    client.claim(NS, "expired", owner_run_id="crashed", lease_ms=1_000)
    client.claim(NS, LONG, owner_run_id="crashed", lease_ms=1_000)
    clock.advance(5_000)
    client.claim(NS, "busy", owner_run_id="holder", lease_ms=600_000)


KEYS = ["done", "failed", "busy", "expired", "absent", HASHED, LONG, UNICODE, "done", "absent", "other-absent"]


@pytest.fixture
def twins(store_url: str, backend_name: str, tmp_path: Path) -> Any:
    """Two stores of one backend in the same state, on one clock: one asked in batches, one key by key."""
    twin_dir = tmp_path / "twin"
    twin_dir.mkdir()
    urls = [store_url, STORE_URLS[backend_name](twin_dir)]
    clients = [CheckpointClient(url) for url in urls]
    # memory:// is one store per client, so the twin is a separate store there too.
    clock = FakeClock()
    for client in clients:
        install_clock(client, clock)
        _state(client, clock)
        clock.now -= 5_000  # replay the same times in the twin
    clock.advance(5_000)
    yield clients[0], clients[1], clock
    for client in clients:
        client.close()


def _same_claim(batch: ClaimResult, single: ClaimResult) -> None:
    assert batch.kind == single.kind
    a, b = batch.checkpoint, single.checkpoint
    # Lease tokens are random; everything else must agree.
    for name in ("namespace", "key", "status", "owner_run_id", "lease_until", "result", "result_ref", "error",
                 "attempts", "created_at", "updated_at"):
        assert getattr(a, name) == getattr(b, name), name
    if batch.kind == "claimed":
        assert batch.lease_token and a.lease_token == batch.lease_token
    else:
        assert batch.lease_token is None


def test_get_many_equals_get_per_key(twins: Any) -> None:
    batched, _, _ = twins
    found = batched.get_many(NS, KEYS)
    expected = {key: record for key in dict.fromkeys(KEYS) if (record := batched.get(NS, key)) is not None}
    assert found == expected
    assert set(found) == {"done", "failed", "busy", "expired", HASHED, LONG, UNICODE}
    assert found[HASHED].result == [1, "two"] and found[UNICODE].result_ref == "ref"
    assert found["failed"].status is Status.FAILED and found["failed"].error == "boom"


def test_claim_many_equals_claim_per_key(twins: Any) -> None:
    batched, single, _ = twins
    answers = batched.claim_many(NS, KEYS, owner_run_id="second", lease_ms=30_000)
    assert list(answers) == list(dict.fromkeys(KEYS))  # input order, each key once
    for key, answer in answers.items():
        _same_claim(answer, single.claim(NS, key, owner_run_id="second", lease_ms=30_000))
        assert answer.checkpoint == batched.get(NS, key)  # what the batch answered is what is stored
    kinds = {key: answer.kind for key, answer in answers.items()}
    assert kinds == {
        "done": "done", "failed": "failed", "busy": "busy", "expired": "claimed", "absent": "claimed",
        HASHED: "done", LONG: "claimed", UNICODE: "done", "other-absent": "claimed",
    }
    # What was claimed is stored as returned: the tokens work, and the next batch finds the keys busy.
    assert answers["expired"].checkpoint.attempts == 2 and answers["absent"].checkpoint.attempts == 1
    assert all(a.kind == "busy" for k, a in batched.claim_many(NS, KEYS).items() if kinds[k] == "claimed")
    record = batched.done(NS, LONG, answers[LONG].lease_token or "", result={"ok": True})
    assert record.key == LONG and batched.get(NS, LONG) == record


def test_duplicate_keys_are_claimed_once(client: CheckpointClient) -> None:
    answers = client.claim_many(NS, ["k", "k", "k"])
    assert list(answers) == ["k"] and answers["k"].kind == "claimed"
    assert client.get(NS, "k") == answers["k"].checkpoint


def test_empty_and_absent_batches(client: CheckpointClient) -> None:
    assert client.claim_many(NS, []) == {}
    assert client.get_many(NS, []) == {}
    assert client.get_many(NS, ["nothing", HASHED]) == {}
    assert client.list(NS) == []


def test_a_bad_key_fails_the_batch_before_anything_is_written(client: CheckpointClient) -> None:
    with pytest.raises(InvalidArgumentError, match="key"):
        client.claim_many(NS, ["fine", 5])  # type: ignore[list-item]
    with pytest.raises(InvalidArgumentError, match="iterable of keys"):
        client.claim_many(NS, "fine")
    with pytest.raises(InvalidArgumentError, match="namespace"):
        client.get_many("bad ns", ["fine"])
    with pytest.raises(InvalidArgumentError, match="lease_ms"):
        client.claim_many(NS, ["fine"], lease_ms=0)
    assert client.get(NS, "fine") is None


@pytest.mark.parametrize("keys", [None, 5, 1.5, object(), b"ab", bytearray(b"ab")], ids=repr)
def test_keys_that_are_not_an_iterable_of_keys_are_named(client: CheckpointClient, keys: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="keys must be an iterable of keys"):
        client.get_many(NS, keys)
    with pytest.raises(InvalidArgumentError, match="keys must be an iterable of keys"):
        client.claim_many(NS, keys)
    assert client.list(NS) == []


def test_import_record_and_quarantine_name_a_wrong_argument(client: CheckpointClient) -> None:
    with pytest.raises(InvalidArgumentError, match="Checkpoint"):
        client.import_record(None)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="CorruptRecord"):
        client.quarantine("ns/k.json")  # type: ignore[arg-type]


def test_claim_many_accepts_any_iterable(client: CheckpointClient) -> None:
    answers = client.claim_many(NS, (f"g{n}" for n in range(3)))
    assert sorted(answers) == ["g0", "g1", "g2"] and all(a.kind == "claimed" for a in answers.values())
    assert sorted(client.get_many(NS, iter(["g1", "g2", "nope"]))) == ["g1", "g2"]


def test_many_keys_in_one_batch(client: CheckpointClient) -> None:
    keys = [f"m{n}" for n in range(1_200)]  # more than one SQL parameter chunk
    first = client.claim_many(NS, keys)
    assert all(a.kind == "claimed" for a in first.values())
    for key in keys[::2]:
        client.done(NS, key, first[key].lease_token or "", result=key)
    second = client.claim_many(NS, keys)
    assert [second[k].kind for k in keys] == ["done", "busy"] * 600
    assert all(second[k].checkpoint.result == k for k in keys[::2])
    assert len(client.get_many(NS, keys)) == 1_200


# ---- durability modes ----


@pytest.mark.parametrize("backend", ["file", "sqlite"])
@pytest.mark.parametrize(("writer", "reader"), [("fast", "full"), ("full", "fast")])
def test_each_durability_mode_writes_what_the_other_reads(
    backend: str, writer: str, reader: str, tmp_path: Path
) -> None:
    url = STORE_URLS[backend](tmp_path)
    with CheckpointClient(url, durability=writer) as write:  # type: ignore[arg-type]
        done = write.claim(NS, "d", owner_run_id="run")
        done_record = write.done(NS, "d", done.lease_token or "", result={"n": [1, 2.5, "é"]}, result_ref="s3://x")
        failed = write.claim(NS, "f")
        failed_record = write.fail(NS, "f", "it broke", failed.lease_token or "")
        held = write.claim(NS, HASHED, lease_ms=600_000)
        batch = write.claim_many(NS, ["b1", "b2"])
    with CheckpointClient(url, durability=reader) as read:  # type: ignore[arg-type]
        assert read.get(NS, "d") == done_record
        assert read.get(NS, "f") == failed_record
        assert read.get(NS, HASHED) == held.checkpoint
        assert read.get_many(NS, ["b1", "b2"]) == {k: a.checkpoint for k, a in batch.items()}
        # The reader can go on where the writer stopped.
        assert read.claim(NS, "d").kind == "done" and read.claim(NS, "f").kind == "failed"
        read.done(NS, HASHED, held.lease_token or "", result=1)
        assert read.get(NS, HASHED).status is Status.DONE  # type: ignore[union-attr]


def test_an_unknown_durability_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="durability"):
        CheckpointClient("memory://", durability="sometimes")  # type: ignore[arg-type]


@pytest.mark.parametrize("scheme", ["file", "sqlite"])
def test_get_many_can_leave_unreadable_records_out_instead_of_failing_the_batch(tmp_path: Path, scheme: str) -> None:
    import asyncio
    import sqlite3

    from mooncat_checkpoint import AsyncCheckpointClient, CorruptRecordError

    url = f"file://{tmp_path / 'store'}" if scheme == "file" else f"sqlite://{tmp_path / 'cp.db'}"
    with CheckpointClient(url) as client:
        for key in ("fine", "broken"):
            held = client.claim(NS, key)
            client.done(NS, key, held.lease_token or "", result=key)
        if scheme == "file":
            (tmp_path / "store" / NS / "broken.json").write_text("{not json")
        else:
            with sqlite3.connect(tmp_path / "cp.db") as conn:
                conn.execute("UPDATE checkpoints SET result = '{bad' WHERE key = 'broken'")

        with pytest.raises(CorruptRecordError, match="doctor"):
            client.get_many(NS, ["fine", "broken"])
        assert {k: r.result for k, r in client.get_many(NS, ["fine", "broken", "absent"],
                                                        skip_unreadable=True).items()} == {"fine": "fine"}
        with pytest.raises(InvalidArgumentError, match="skip_unreadable"):
            client.get_many(NS, ["fine"], skip_unreadable="yes")  # type: ignore[arg-type]
        # Left out is not free: the key's own claim still refuses the unreadable record.
        with pytest.raises(CorruptRecordError):
            client.claim(NS, "broken")

    async def read_async() -> dict[str, Any]:
        async with AsyncCheckpointClient(url) as aclient:
            with pytest.raises(CorruptRecordError):
                await aclient.get_many(NS, ["fine", "broken"])
            found = await aclient.get_many(NS, ["fine", "broken"], skip_unreadable=True)
            return {k: r.result for k, r in found.items()}

    assert asyncio.run(read_async()) == {"fine": "fine"}
