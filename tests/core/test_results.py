"""Results must be JSON that JavaScript reads back unchanged, at most 64 KiB; refused before any write."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from core_support import store_files
from mooncat_checkpoint import (
    MAX_INLINE_RESULT_BYTES,
    Checkpoint,
    CheckpointClient,
    CheckpointResultSerializationError,
    CorruptRecordError,
    InvalidArgumentError,
    Status,
)
from mooncat_checkpoint.config import parse_url


def _cycle_list() -> list[Any]:
    items: list[Any] = [1]
    items.append(items)
    return items


def _cycle_dict() -> dict[str, Any]:
    data: dict[str, Any] = {"a": 1}
    data["self"] = {"inner": data}
    return data


BAD_RESULTS = {
    "nan": math.nan,
    "inf": math.inf,
    "-inf": -math.inf,
    "nested nan": {"a": [1, math.nan]},
    "int key": {1: "one"},
    "colliding keys": {1: "a", "1": "b"},
    "nested bool key": {"a": {True: 1}},
    "none key": {None: 1},
    "beyond 2**53": 2**53 + 1,
    "below -2**53": -(2**53) - 1,
    "nested big int": [{"n": 10**20}],
    "lone surrogate": "\ud800",
    "surrogate key": {"\udc00": 1},
    "cycle list": _cycle_list(),
    "cycle dict": _cycle_dict(),
    "set": {1, 2},
    "bytes": b"x",
    "object": object(),
}


def _record_files(url: str) -> list[str]:
    location = parse_url(url)
    if location.scheme != "file":
        return []
    return store_files(Path(location.path))


@pytest.mark.parametrize("name", list(BAD_RESULTS))
def test_unstorable_results_are_refused_before_anything_is_written(client: CheckpointClient, name: str) -> None:
    held = client.claim("ns", "k", lease_ms=600_000)
    assert held.lease_token is not None
    before = client.get("ns", "k")
    files_before = _record_files(client.url)

    with pytest.raises(CheckpointResultSerializationError):
        client.done("ns", "k", held.lease_token, result=BAD_RESULTS[name])

    assert client.get("ns", "k") == before
    assert _record_files(client.url) == files_before  # no temp file left behind
    # The claim is still ours: a good result can still be recorded.
    assert client.done("ns", "k", held.lease_token, result={"ok": 1}).status is Status.DONE


@pytest.mark.parametrize("value", [2**53, -(2**53), 0.1, -0.0, 1e308, "é\u2028", {"": [None, True]}])
def test_values_javascript_reads_back_unchanged_are_stored(client: CheckpointClient, value: Any) -> None:
    held = client.claim("ns", "k")
    assert held.lease_token is not None
    client.done("ns", "k", held.lease_token, result=value)
    record = client.get("ns", "k")
    assert record is not None and record.result == value


def _exactly(size: int) -> dict[str, str]:
    """A result whose compact JSON text is `size` UTF-8 bytes, with multi-byte characters in it."""
    head = {"a": "é" * 100}  # 200 bytes of text, 100 characters
    overhead = len(json.dumps({"a": "é" * 100 + ""}, ensure_ascii=False, separators=(",", ":")).encode()) - 200
    return {"a": head["a"] + "x" * (size - overhead - 200)}


def test_the_64_kib_limit_counts_compact_utf8_bytes(client: CheckpointClient) -> None:
    fits, too_big = _exactly(MAX_INLINE_RESULT_BYTES), _exactly(MAX_INLINE_RESULT_BYTES + 1)
    compact = json.dumps(fits, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    assert len(compact) == MAX_INLINE_RESULT_BYTES == 65_536

    held = client.claim("ns", "big")
    assert held.lease_token is not None
    with pytest.raises(CheckpointResultSerializationError, match="65537 bytes"):
        client.done("ns", "big", held.lease_token, result=too_big)
    record = client.done("ns", "big", held.lease_token, result=fits)
    assert record.status is Status.DONE
    stored = client.get("ns", "big")
    assert stored is not None and stored.result == fits


def test_result_ref_and_error_must_be_strings(client: CheckpointClient) -> None:
    held = client.claim("ns", "k")
    assert held.lease_token is not None
    for ref in (1, b"s3://x", ["a"]):
        with pytest.raises(InvalidArgumentError, match="result_ref"):
            client.done("ns", "k", held.lease_token, result_ref=ref)  # type: ignore[arg-type]
    for error in (None, 1, ValueError("x")):
        with pytest.raises(InvalidArgumentError, match="error"):
            client.fail("ns", "k", error, held.lease_token)  # type: ignore[arg-type]
    record = client.get("ns", "k")
    assert record is not None and record.status is Status.CLAIMED and record.lease_token == held.lease_token
    done = client.done("ns", "k", held.lease_token, result_ref="s3://bucket/k")
    assert done.result_ref == "s3://bucket/k" and done.result is None


def test_import_enforces_the_same_limit(client: CheckpointClient) -> None:
    # The limit belongs to the store, not only to `done`: an imported record is held to it too.
    big = {"a": "x" * MAX_INLINE_RESULT_BYTES}
    record = Checkpoint(
        namespace="ns", key="k", status=Status.DONE, owner_run_id=None, lease_token=None, lease_until=None,
        result=big, result_ref=None, error=None, attempts=1, created_at=1, updated_at=1,
        result_json=json.dumps(big, separators=(",", ":")),
    )
    with pytest.raises(CheckpointResultSerializationError):
        client.import_record(record)
    assert client.get("ns", "k") is None
    assert _record_files(client.url) == []


def test_a_result_nested_too_deep_to_read_back_is_refused_before_anything_is_written(
    client: CheckpointClient,
) -> None:
    from mooncat_checkpoint.serialize import MAX_RESULT_DEPTH

    def nested(depth: int) -> object:
        value: object = 0
        for _ in range(depth):
            value = [value]
        return value

    held = client.claim("ns", "deep")
    for depth in (MAX_RESULT_DEPTH + 1, 5000):
        with pytest.raises(CheckpointResultSerializationError, match="nested more than"):
            client.done("ns", "deep", held.lease_token, result=nested(depth))
    assert client.get("ns", "deep").status == "claimed"
    client.done("ns", "deep", held.lease_token, result=nested(MAX_RESULT_DEPTH))
    assert client.get("ns", "deep").result == nested(MAX_RESULT_DEPTH)


def test_a_stored_record_nested_too_deep_to_parse_is_reported_as_corrupt(tmp_path: Path) -> None:
    folder = tmp_path / "store" / "ns"
    folder.mkdir(parents=True)
    deep = "[" * 100_000 + "]" * 100_000
    (folder / "k.json").write_text(
        f'{{"namespace":"ns","key":"k","status":"done","result":{deep},"attempts":1,"createdAt":1,"updatedAt":1}}'
    )
    with CheckpointClient(f"file://{tmp_path / 'store'}") as cp, pytest.raises(CorruptRecordError, match="deeply"):
        cp.get("ns", "k")


def test_done_returns_the_result_as_stored_not_the_callers_object(client: CheckpointClient) -> None:
    """The returned record equals what `get` reads back, and later changes to the caller's object reach
    neither it nor the store."""
    import enum

    class Level(int, enum.Enum):
        HIGH = 3

    given: dict[str, Any] = {"pair": (1, 2), "level": Level.HIGH, "items": [1]}
    held = client.claim("ns", "k")
    assert held.lease_token is not None
    record = client.done("ns", "k", held.lease_token, result=given)
    given["items"].append(2)
    given["extra"] = True
    stored = client.get("ns", "k")
    assert stored is not None
    assert record.result == stored.result == {"pair": [1, 2], "level": 3, "items": [1]}
    assert type(record.result["level"]) is int and type(record.result["pair"]) is list
