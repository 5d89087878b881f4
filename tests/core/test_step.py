"""The step helper: skip finished work, heartbeat while running, record the outcome, never overwrite."""

from __future__ import annotations

import math
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mooncat_checkpoint import (
    Checkpoint,
    CheckpointClient,
    CheckpointResultSerializationError,
    InvalidArgumentError,
    LeaseLostError,
    Status,
    StepBusyError,
    StepFailedError,
)
from mooncat_checkpoint.step import checkpointed

SHORT_LEASE = 300  # ms; the heartbeat renews at a third of it


@pytest.fixture
def other(client: CheckpointClient) -> Iterator[CheckpointClient]:
    """A second client of the same store, as another worker would have (the same one for memory://)."""
    if client.url == "memory://":
        yield client
        return
    with CheckpointClient(client.url) as second:
        yield second


def _finish(cp: CheckpointClient, key: str, result: Any) -> None:
    held = cp.claim("ns", key)
    assert held.lease_token is not None
    cp.done("ns", key, held.lease_token, result=result)


def test_a_finished_key_is_skipped_with_its_stored_result(client: CheckpointClient) -> None:
    _finish(client, "k", {"answer": 42})
    before = client.get("ns", "k")
    with client.step("ns", "k") as step:
        assert step.skipped
        assert step.result == {"answer": 42}
    assert client.get("ns", "k") == before


def test_success_records_done_with_the_value(client: CheckpointClient) -> None:
    with client.step("ns", "k", owner_run_id="run-1") as step:
        assert not step.skipped
        step.value = [1, 2]
        step.result_ref = "s3://bucket/k"
    record = client.get("ns", "k")
    assert record is not None and record.status is Status.DONE
    assert record.result == [1, 2] and record.result_ref == "s3://bucket/k" and record.owner_run_id == "run-1"


def test_the_heartbeat_keeps_a_short_lease_alive(client: CheckpointClient, other: CheckpointClient) -> None:
    with client.step("ns", "k", lease_ms=SHORT_LEASE) as step:
        first = client.get("ns", "k")
        assert first is not None and first.lease_until is not None
        for _ in range(4):  # the body outlives its lease several times over
            time.sleep(SHORT_LEASE / 1000)
            assert other.claim("ns", "k").kind == "busy"
        renewed = client.get("ns", "k")
        assert renewed is not None and renewed.lease_token == step.lease_token
        assert renewed.lease_until is not None and renewed.lease_until > first.lease_until
        assert not step.lease_lost
        step.value = "finished"
    record = client.get("ns", "k")
    assert record is not None and record.status is Status.DONE and record.result == "finished"


def test_a_lost_lease_surfaces_and_never_overwrites(client: CheckpointClient, other: CheckpointClient) -> None:
    with pytest.raises(LeaseLostError), client.step("ns", "k", lease_ms=SHORT_LEASE, heartbeat=False) as step:
        time.sleep(SHORT_LEASE / 1000 + 0.05)
        taken = other.claim("ns", "k", owner_run_id="thief")
        assert taken.kind == "claimed"
        step.value = "mine"
    record = client.get("ns", "k")
    assert record is not None and record.owner_run_id == "thief" and record.status is Status.CLAIMED


def test_the_heartbeat_notices_a_lost_lease(client: CheckpointClient, other: CheckpointClient) -> None:
    with pytest.raises(LeaseLostError), client.step("ns", "k", lease_ms=SHORT_LEASE) as step:
        other.reset("ns", "k")
        deadline = time.monotonic() + 10
        while not step.lease_lost and time.monotonic() < deadline:
            time.sleep(0.02)
        assert step.lease_lost
    assert client.get("ns", "k") is None


def test_an_exception_releases_the_claim_by_default(client: CheckpointClient) -> None:
    with pytest.raises(ValueError, match="boom"), client.step("ns", "k"):
        raise ValueError("boom")
    assert client.get("ns", "k") is None
    assert client.claim("ns", "k").kind == "claimed"


def test_an_exception_can_record_a_failure(client: CheckpointClient) -> None:
    with pytest.raises(ValueError, match="boom"), client.step("ns", "k", on_error="fail"):
        raise ValueError("boom")
    record = client.get("ns", "k")
    assert record is not None and record.status is Status.FAILED and record.error == "ValueError: boom"
    with pytest.raises(StepFailedError, match="reset"), client.step("ns", "k"):
        raise AssertionError("a failed key must not run")
    assert client.reset("ns", "k")
    with client.step("ns", "k") as step:
        step.value = "second try"
    record = client.get("ns", "k")
    assert record is not None and record.status is Status.DONE and record.attempts == 1


def test_an_interrupt_releases_the_claim_even_when_failures_are_recorded(client: CheckpointClient) -> None:
    with pytest.raises(KeyboardInterrupt), client.step("ns", "k", on_error="fail"):
        raise KeyboardInterrupt
    assert client.get("ns", "k") is None


def test_an_unstorable_value_releases_the_claim(client: CheckpointClient) -> None:
    with pytest.raises(CheckpointResultSerializationError), client.step("ns", "k") as step:
        step.value = {"score": math.nan}
    assert client.get("ns", "k") is None
    with pytest.raises(CheckpointResultSerializationError), client.step("ns", "f", on_error="fail") as step:
        step.value = {1: "int key"}
    record = client.get("ns", "f")
    assert record is not None and record.status is Status.FAILED


def test_a_busy_key_is_waited_for_until_done(client: CheckpointClient, other: CheckpointClient) -> None:
    held = other.claim("ns", "k", lease_ms=60_000)
    assert held.lease_token is not None
    started = threading.Event()

    def finish_later() -> None:
        started.wait(10)
        time.sleep(0.2)
        other.done("ns", "k", held.lease_token or "", result="theirs")

    finisher = threading.Thread(target=finish_later)
    finisher.start()
    started.set()
    with client.step("ns", "k", wait_timeout=30) as step:
        assert step.skipped and step.result == "theirs"
    finisher.join()


def test_a_busy_key_whose_holder_gives_up_is_claimed(client: CheckpointClient, other: CheckpointClient) -> None:
    held = other.claim("ns", "k", lease_ms=60_000)
    assert held.lease_token is not None
    timer = threading.Timer(0.2, lambda: other.abandon("ns", "k", held.lease_token or ""))
    timer.start()
    with client.step("ns", "k", wait_timeout=30) as step:
        assert not step.skipped
        step.value = "ours"
    timer.join()
    record = client.get("ns", "k")
    assert record is not None and record.result == "ours"


def test_busy_can_raise_at_once_or_after_a_bounded_wait(client: CheckpointClient, other: CheckpointClient) -> None:
    other.claim("ns", "k", owner_run_id="holder", lease_ms=60_000)
    with pytest.raises(StepBusyError, match="holder"), client.step("ns", "k", on_busy="raise"):
        raise AssertionError("must not run")
    with pytest.raises(StepBusyError, match="after waiting"), client.step("ns", "k", wait_timeout=0.2):
        raise AssertionError("must not run")


@pytest.mark.parametrize(
    "options",
    [{"on_busy": "never"}, {"on_error": "ignore"}, {"wait_timeout": -1}, {"lease_ms": 0}, {"wait_timeout": True},
     {"wait_timeout": "5"}, {"wait_timeout": float("nan")}, {"lease_ms": 1.5}, {"lease_ms": True},
     {"heartbeat": "no"}, {"heartbeat": 0}],
)
def test_step_options_are_checked(client: CheckpointClient, options: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgumentError):
        client.step("ns", "k", **options)
    with pytest.raises(InvalidArgumentError):
        client.checkpointed("ns", "k", **options)(lambda: None)()
    assert client.get("ns", "k") is None  # refused before any claim


def test_the_decorator_runs_each_key_once(client: CheckpointClient) -> None:
    calls: list[tuple[str, int]] = []

    @client.checkpointed("ns", "{day}-{part}")
    def process(day: str, part: int, verbose: bool = False) -> dict[str, Any]:
        calls.append((day, part))
        return {"day": day, "part": part}

    assert process("2024-01-01", 1) == {"day": "2024-01-01", "part": 1}
    assert process("2024-01-01", part=1, verbose=True) == {"day": "2024-01-01", "part": 1}
    assert process("2024-01-01", 2) == {"day": "2024-01-01", "part": 2}
    assert calls == [("2024-01-01", 1), ("2024-01-01", 2)]
    assert sorted(r.key for r in client.list("ns")) == ["2024-01-01-1", "2024-01-01-2"]


def test_the_decorator_accepts_a_key_callable(client: CheckpointClient) -> None:
    @client.checkpointed("ns", lambda args: f"item-{args['item']['id']}")
    def handle(item: dict[str, int]) -> int:
        return item["id"] * 2

    assert handle({"id": 3}) == 6
    assert [r.key for r in client.list("ns")] == ["item-3"]


def test_a_bad_key_template_fails_before_any_claim(tmp_path: Path) -> None:
    root = tmp_path / "store"
    cp = CheckpointClient(f"file://{root}")
    ran = []

    # A field no parameter can fill is refused when the function is decorated, not at its first call.
    with pytest.raises(InvalidArgumentError, match="missing"):
        @cp.checkpointed("ns", "{day}-{missing}")
        def process(day: str) -> None:
            ran.append(day)

    @cp.checkpointed("ns", "{thing}")
    def opaque(thing: object) -> None:
        ran.append("opaque")

    with pytest.raises(InvalidArgumentError, match="thing"):
        opaque(object())
    assert ran == [] and not root.exists()


def test_the_decorator_releases_on_error_and_reruns(client: CheckpointClient) -> None:
    attempts = []

    @client.checkpointed("ns", "{n}")
    def flaky(n: int) -> int:
        attempts.append(n)
        if len(attempts) == 1:
            raise RuntimeError("first try fails")
        return n

    with pytest.raises(RuntimeError):
        flaky(7)
    assert flaky(7) == 7 and flaky(7) == 7
    assert attempts == [7, 7]


@pytest.mark.parametrize("on_error", ["abandon", "fail"])
def test_an_interrupt_inside_done_or_fail_gives_the_claim_back(
    client: CheckpointClient, monkeypatch: pytest.MonkeyPatch, on_error: str
) -> None:
    # Ctrl-C lands in the store call that records the outcome: the key must be free for the rerun at
    # once, not only when its lease ends.
    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(client, "done", interrupted)
    monkeypatch.setattr(client, "fail", interrupted)
    with pytest.raises(KeyboardInterrupt), client.step("ns", "k", on_error=on_error) as step:
        step.value = 1
        if on_error == "fail":
            raise ValueError("boom")
    assert client.get("ns", "k") is None
    assert client.claim("ns", "k").kind == "claimed"


def test_a_done_that_landed_before_the_interrupt_stays_done(
    client: CheckpointClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_done = client.done

    def done_then_interrupted(*args: Any, **kwargs: Any) -> Any:
        real_done(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(client, "done", done_then_interrupted)
    with pytest.raises(KeyboardInterrupt), client.step("ns", "k") as step:
        step.value = {"kept": True}
    assert client.get("ns", "k").result == {"kept": True}


@pytest.mark.parametrize(
    ("template", "complaint"),
    [("{nope", "malformed"), ("nope}", "malformed"), ("a-{day", "malformed"), ("{day!x}", "conversion"),
     ("{day:>{width}}", "inside the format"), ("{}", "named fields"), ("{0}", "named fields"),
     ("{day.year}", "named fields"), ("", "non-empty")],
)
def test_a_malformed_key_template_is_refused_when_the_decorator_is_applied(
    client: CheckpointClient, template: str, complaint: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=complaint):
        client.checkpointed("ns", template)
    with pytest.raises(InvalidArgumentError, match=complaint):
        checkpointed(client, "ns", template)
    assert client.list("ns") == []


def test_decorator_options_and_namespace_are_checked_when_it_is_applied(client: CheckpointClient) -> None:
    with pytest.raises(InvalidArgumentError, match="on_busyy"):
        client.checkpointed("ns", "k", on_busyy="raise")
    with pytest.raises(InvalidArgumentError, match="owner_run_id"):
        client.checkpointed("ns", "k", owner_run_id=5)
    with pytest.raises(InvalidArgumentError, match="namespace"):
        client.checkpointed("bad ns", "k")


def test_literal_braces_and_formats_in_a_template_still_work(client: CheckpointClient) -> None:
    @client.checkpointed("ns", "{{part}}-{n:03d}-{name!s}")
    def work(n: int, name: str) -> int:
        return n

    assert work(7, "x") == 7
    assert [r.key for r in client.list("ns")] == ["{part}-007-x"]


@pytest.mark.parametrize(("ns", "key"), [("ns", "it's a key"), ("ns", "-x"), ("ns", "--force"), ("-ns", "k")])
def test_a_failed_step_names_a_reset_command_that_reaches_its_store(tmp_path: Path, ns: str, key: str) -> None:
    """The hint carries --url, so it works from any folder, whatever store the CLI would find there; a
    namespace or key that starts with '-' is not read as an option."""
    url = f"sqlite://{tmp_path / 'a store' / 'cp.db'}"
    (tmp_path / "a store").mkdir()
    with CheckpointClient(url) as cp:
        held = cp.claim(ns, key)
        assert held.lease_token is not None
        cp.fail(ns, key, "boom", held.lease_token)
        with pytest.raises(StepFailedError) as caught, cp.step(ns, key):
            pass
        command = str(caught.value).split("reset it to run again: ", 1)[1]
        assert "--url" in command and caught.value.url == cp.location.command_url
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        argv = shlex.split(command)
        assert argv[0] == "mooncat-checkpoint"
        env = {k: v for k, v in os.environ.items() if k != "MOONCAT_CHECKPOINT_URL"}
        run = subprocess.run([sys.executable, "-m", "mooncat_checkpoint", *argv[1:]], cwd=elsewhere,
                             capture_output=True, text=True, env=env, timeout=120)
        assert run.returncode == 0, run.stderr
        assert cp.get(ns, key) is None
        assert not (elsewhere / ".mooncat").exists()


def test_a_reset_hint_never_shows_a_postgres_password() -> None:
    cp = CheckpointClient("postgresql://me:s3cret@db.example:5432/jobs?schema=cp&password=also&sslmode=require")
    record = Checkpoint(namespace="ns", key="k", status=Status.FAILED, owner_run_id=None, lease_token=None,
                        lease_until=None, result=None, result_ref=None, error="x", attempts=1, created_at=1,
                        updated_at=1)
    message = str(StepFailedError(record, cp.location.command_url))
    assert "s3cret" not in message and "also" not in message
    assert "--url 'postgresql://me@db.example:5432/jobs?schema=cp&sslmode=require'" in message
