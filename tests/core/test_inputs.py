"""Every argument is checked before the store is touched, with an error that names it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mooncat_checkpoint import CheckpointClient, InvalidArgumentError, Status
from mooncat_checkpoint.config import parse_url

BAD_MS = [0, -1, 1.5, True, False, "10", None.__class__, 2**60]


def _untouched(url: str) -> None:
    location = parse_url(url)
    if location.scheme in ("file", "sqlite"):
        assert not Path(location.path).exists()


@pytest.mark.parametrize("value", BAD_MS)
def test_lease_and_extend_must_be_positive_integers(store_url: str, value: Any) -> None:
    cp = CheckpointClient(store_url)
    calls: list[tuple[str, Callable[[], Any]]] = [
        ("lease_ms", lambda: cp.claim("ns", "k", lease_ms=value)),
        ("lease_ms", lambda: cp.claim_many("ns", ["k"], lease_ms=value)),
        ("extend_ms", lambda: cp.touch("ns", "k", "0" * 32, extend_ms=value)),
        ("lease_ms", lambda: cp.step("ns", "k", lease_ms=value)),
    ]
    for name, call in calls:
        with pytest.raises(InvalidArgumentError, match=name):
            call()
    _untouched(store_url)


@pytest.mark.parametrize("value", [-1, 1.5, True, "0", None])
def test_gc_older_than_must_be_an_integer_of_zero_or_more(store_url: str, value: Any) -> None:
    cp = CheckpointClient(store_url)
    with pytest.raises(InvalidArgumentError, match="older_than"):
        cp.gc(older_than=value)
    _untouched(store_url)


@pytest.mark.parametrize("token", ["", None, 5, b"abc"])
def test_lease_tokens_must_be_non_empty_strings(store_url: str, token: Any) -> None:
    cp = CheckpointClient(store_url)
    for call in (
        lambda: cp.touch("ns", "k", token),
        lambda: cp.done("ns", "k", token),
        lambda: cp.fail("ns", "k", "boom", token),
        lambda: cp.abandon("ns", "k", token),
    ):
        with pytest.raises(InvalidArgumentError, match="lease_token"):
            call()
    _untouched(store_url)


@pytest.mark.parametrize("owner", [1, b"run", ["run"]])
def test_owner_run_id_must_be_a_string(store_url: str, owner: Any) -> None:
    cp = CheckpointClient(store_url)
    with pytest.raises(InvalidArgumentError, match="owner_run_id"):
        cp.claim("ns", "k", owner_run_id=owner)
    with pytest.raises(InvalidArgumentError, match="owner_run_id"):
        cp.abandon_owned(owner)
    _untouched(store_url)


@pytest.mark.parametrize("status", ["bogus", "DONE", "", 3])
def test_invalid_status_is_refused(store_url: str, status: Any) -> None:
    cp = CheckpointClient(store_url)
    with pytest.raises(InvalidArgumentError, match="status"):
        cp.list("ns", status=status)
    with pytest.raises(InvalidArgumentError, match="status"):
        list(cp.scan("ns", status=status))
    _untouched(store_url)


def test_status_enum_and_string_are_both_accepted(client: CheckpointClient) -> None:
    claimed = client.claim("ns", "a")
    finished = client.claim("ns", "b")
    assert finished.lease_token is not None
    client.done("ns", "b", finished.lease_token)
    assert claimed.kind == "claimed"
    for status, keys in ((Status.DONE, ["b"]), ("done", ["b"]), (Status.CLAIMED, ["a"]), ("claimed", ["a"])):
        assert [r.key for r in client.list("ns", status=status)] == keys
        assert [r.key for r in client.scan("ns", status=status) if hasattr(r, "key")] == keys
    assert client.list("ns", status="failed") == []


def test_clients_are_context_managers(store_url: str) -> None:
    with CheckpointClient(store_url) as cp:
        held = cp.claim("ns", "k")
        assert held.kind == "claimed"
    # A closed client reopens its store on the next call.
    again = cp.get("ns", "k")
    if store_url != "memory://":
        assert again is not None and again.lease_token == held.lease_token
    cp.close()


def test_a_namespace_too_long_for_a_folder_name_is_refused_by_the_file_store_only(tmp_path: Path) -> None:
    from mooncat_checkpoint import CheckpointClient

    long_ns = "n" * 256
    with CheckpointClient(f"file://{tmp_path / 'files'}") as files:
        for call in (lambda: files.claim(long_ns, "k"), lambda: files.get(long_ns, "k")):
            with pytest.raises(InvalidArgumentError, match="at most 255"):
                call()
        assert files.claim("n" * 255, "k").kind == "claimed"
    with CheckpointClient(f"sqlite://{tmp_path / 'cp.db'}") as db:  # as in TypeScript: any length
        assert db.claim(long_ns, "k").kind == "claimed"
