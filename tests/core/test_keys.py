"""Namespaces, keys and storage segments; a read never answers with another key's record."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from mooncat_checkpoint import (
    CheckpointClient,
    InvalidArgumentError,
    KeyConflictError,
    storage_segment,
)
from mooncat_checkpoint.config import parse_url


def hashed(key: str) -> str:
    return "sha256-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


@pytest.mark.parametrize(
    ("key", "segment"),
    [
        ("abc", "abc"),
        ("A-b_c.d", "A-b_c.d"),
        ("x" * 128, "x" * 128),
        ("x" * 129, hashed("x" * 129)),
        (".", hashed(".")),
        ("..", hashed("..")),
        ("...", "..."),
        ("abc\n", hashed("abc\n")),  # full-string match: a trailing newline is not a safe character
        ("", hashed("")),
        ("a b", hashed("a b")),
        ("a/b", hashed("a/b")),
        ("ключ", hashed("ключ")),
        ("ABC", "ABC"),
    ],
)
def test_storage_segment_matches_the_typescript_rule(key: str, segment: str) -> None:
    assert storage_segment(key) == segment


@pytest.mark.parametrize("namespace", ["", "ns\n", "a b", "a/b", "a.b", "ns ", "ünï", "..", None, 7])
def test_bad_namespaces_are_refused_before_any_io(store_url: str, namespace: object) -> None:
    cp = CheckpointClient(store_url)
    calls = [
        lambda: cp.claim(namespace, "k"),  # type: ignore[arg-type]
        lambda: cp.get(namespace, "k"),  # type: ignore[arg-type]
        lambda: cp.reset(namespace, "k"),  # type: ignore[arg-type]
        lambda: cp.list(namespace),  # type: ignore[arg-type]
        lambda: cp.get_many(namespace, ["k"]),  # type: ignore[arg-type]
        lambda: cp.claim_many(namespace, ["k"]),  # type: ignore[arg-type]
    ]
    if namespace is not None:  # None there means every namespace
        calls.append(lambda: cp.abandon_owned("run", namespace=namespace))  # type: ignore[arg-type]
    for call in calls:
        with pytest.raises(InvalidArgumentError, match="namespace"):
            call()
    _assert_store_untouched(store_url)


def _assert_store_untouched(url: str) -> None:
    location = parse_url(url)
    if location.scheme in ("file", "sqlite"):
        assert not Path(location.path).exists(), "a refused call must not create the store"


@pytest.mark.parametrize("key", ["\ud800", "a\udfffb", "tail\udc80"])
def test_keys_that_are_not_utf8_get_a_clear_error(store_url: str, key: str) -> None:
    cp = CheckpointClient(store_url)
    for call in (
        lambda: cp.claim("ns", key),
        lambda: cp.get("ns", key),
        lambda: cp.reset("ns", key),
        lambda: cp.touch("ns", key, "0" * 32),
        lambda: cp.done("ns", key, "0" * 32),
        lambda: cp.get_many("ns", ["ok", key]),
        lambda: cp.claim_many("ns", ["ok", key]),
    ):
        with pytest.raises(InvalidArgumentError, match="UTF-8"):
            call()
    _assert_store_untouched(store_url)


def test_a_key_must_be_a_string(client: CheckpointClient) -> None:
    for key in (1, None, b"bytes"):
        with pytest.raises(InvalidArgumentError, match="key"):
            client.claim("ns", key)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="iterable of keys"):
        client.claim_many("ns", "abc")


def test_keys_ending_in_a_newline_are_their_own_records(client: CheckpointClient) -> None:
    plain = client.claim("ns", "abc")
    newline = client.claim("ns", "abc\n")
    assert plain.kind == newline.kind == "claimed"
    assert {r.key for r in client.list("ns")} == {"abc", "abc\n"}


@pytest.mark.parametrize("first_is_hashed", [True, False])
def test_a_key_spelling_another_keys_segment_is_a_conflict(client: CheckpointClient, first_is_hashed: bool) -> None:
    original = "needs hashing"
    impostor = hashed(original)  # itself a safe key, so it is stored under the very same segment
    assert storage_segment(impostor) == storage_segment(original)
    first, second = (original, impostor) if first_is_hashed else (impostor, original)

    held = client.claim("ns", first, owner_run_id="owner")
    assert held.lease_token is not None
    client.done("ns", first, held.lease_token, result={"mine": True})
    before = client.get("ns", first)

    for call in (
        lambda: client.claim("ns", second),
        lambda: client.get("ns", second),
        lambda: client.reset("ns", second),
        lambda: client.touch("ns", second, "0" * 32),
        lambda: client.done("ns", second, "0" * 32, result=1),
        lambda: client.fail("ns", second, "boom", "0" * 32),
        lambda: client.abandon("ns", second, "0" * 32),
        lambda: client.claim_many("ns", [second]),
        lambda: client.get_many("ns", [second, first]),
    ):
        with pytest.raises(KeyConflictError) as caught:
            call()
        assert caught.value.stored_key == first and caught.value.key == second
    # A batch read refuses like a single one, rather than quietly leaving the key out.
    assert client.get_many("ns", [first]) == {first: before}
    assert client.get("ns", first) == before
    assert [r.key for r in client.list("ns")] == [first]
