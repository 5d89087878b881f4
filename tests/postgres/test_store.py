"""The PostgreSQL store itself: URL options, schema and version, streaming scans, limits of the server."""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

import pytest
from mooncat_checkpoint import AsyncCheckpointClient, CheckpointClient, CorruptRecord, Status
from mooncat_checkpoint.errors import ConfigError, InvalidArgumentError
from mooncat_checkpoint.machine import claim as machine_claim
from pg_server import SERVER_URL, store_url
from pg_support import server_now_ms

NS = "pg"


def _tables(admin: Any, schema: str) -> set[str]:
    rows = admin.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,)).fetchall()
    return {name for (name,) in rows}


def test_schema_is_created_on_first_use_with_a_version(client: CheckpointClient, schema: str, admin: Any) -> None:
    client.claim(NS, "k")
    assert _tables(admin, schema) == {"checkpoints", "checkpoints_quarantine", "checkpoints_schema_version"}
    assert admin.execute(f'SELECT version FROM "{schema}".checkpoints_schema_version').fetchall() == [(1,)]
    columns = admin.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = 'checkpoints' "
        "ORDER BY ordinal_position", (schema,)
    ).fetchall()
    assert [c for (c,) in columns] == [
        "namespace", "storage_key", "key", "status", "owner_run_id", "lease_token", "lease_until", "result",
        "result_ref", "error", "attempts", "created_at", "updated_at",
    ]
    indexes = {name for (name,) in admin.execute("SELECT indexname FROM pg_indexes WHERE schemaname = %s", (schema,))}
    assert "checkpoints_status_idx" in indexes


def test_table_option_and_postgres_scheme(schema: str, admin: Any) -> None:
    url = store_url(schema, table="jobs").replace("postgresql://", "postgres://", 1)
    with CheckpointClient(url) as cp:
        token = cp.claim(NS, "k").lease_token
        assert token is not None
        cp.done(NS, "k", token, result={"n": 1})
    assert {"jobs", "jobs_quarantine", "jobs_schema_version"} <= _tables(admin, schema)
    assert admin.execute(f'SELECT key, status, result FROM "{schema}".jobs').fetchall() == [("k", "done", '{"n":1}')]


def test_libpq_options_pass_through(schema: str, admin: Any) -> None:
    url = store_url(schema, application_name="nightly-etl")
    with CheckpointClient(url) as cp:
        cp.claim(NS, "k")
        names = {n for (n,) in admin.execute("SELECT application_name FROM pg_stat_activity")}
        assert "nightly-etl" in names


@pytest.mark.parametrize(
    ("query", "complaint"),
    [
        ("schema=bad-name", "schema='bad-name'"),
        ("schema=1x", "schema='1x'"),
        ("table=a;drop", "table='a;drop'"),
        ("table=" + "t" * 41, "longer than 40"),
        ("pool_size=0", "pool_size"),
        ("schema=a&schema=b", "given twice"),
    ],
)
def test_bad_url_options_are_refused_before_connecting(query: str, complaint: str) -> None:
    # Port 1 answers nobody: the error must come from the URL check, not from a connection attempt.
    with CheckpointClient(f"postgresql://nobody@127.0.0.1:1/none?{query}") as cp, pytest.raises(ConfigError) as err:
        cp.get(NS, "k")
    assert complaint in str(err.value)


def test_unreachable_server_is_a_clear_error() -> None:
    from mooncat_checkpoint.backends.postgres import PostgresUnavailableError

    url = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1"
    with CheckpointClient(url) as cp, pytest.raises(PostgresUnavailableError) as err:
        cp.get(NS, "k")
    assert "127.0.0.1:1/none" in str(err.value)


def test_newer_schema_version_is_refused(pg_url: str, schema: str, admin: Any) -> None:
    with CheckpointClient(pg_url) as cp:
        cp.claim(NS, "k")
    admin.execute(f'INSERT INTO "{schema}".checkpoints_schema_version (version) VALUES (2)')
    with CheckpointClient(pg_url) as cp, pytest.raises(ConfigError, match="schema version 2"):
        cp.get(NS, "k")


def test_lease_times_come_from_the_server(client: CheckpointClient, admin: Any) -> None:
    before = server_now_ms(admin)
    got = client.claim(NS, "k", lease_ms=60_000)
    after = server_now_ms(admin)
    record = got.checkpoint
    assert before <= record.created_at <= after
    assert record.lease_until == record.updated_at + 60_000
    assert before <= client.backend.now_ms()


def test_nul_characters_are_refused_before_anything_is_written(client: CheckpointClient) -> None:
    with pytest.raises(InvalidArgumentError, match="NUL"):
        client.claim(NS, "a\x00b")
    with pytest.raises(InvalidArgumentError, match="NUL"):
        client.claim(NS, "k", owner_run_id="run\x00")
    token = client.claim(NS, "k").lease_token
    assert token is not None
    with pytest.raises(InvalidArgumentError, match="NUL"):
        client.fail(NS, "k", "bad\x00error", lease_token=token)
    record = client.get(NS, "k")
    assert record is not None and record.status is Status.CLAIMED and record.lease_token == token
    assert client.list(NS) == [record]


def test_scan_streams_in_pages_without_an_open_transaction(
    client: CheckpointClient, admin: Any, schema: str
) -> None:
    keys = [f"key-{i:05d}" for i in range(1_234)]
    claimed = client.claim_many(NS, keys)
    assert {c.kind for c in claimed.values()} == {"claimed"}
    for key in keys[:600]:
        token = claimed[key].lease_token
        assert token is not None
        client.done(NS, key, token, result=key)
    seen: list[str] = []
    for record in client.scan(NS):
        assert isinstance(record, CorruptRecord) is False
        seen.append(record.key)  # type: ignore[union-attr]
        if len(seen) in (1, 700):
            states = {s for (s,) in admin.execute(
                "SELECT state FROM pg_stat_activity WHERE application_name = %s", (schema,)
            )}
            assert "idle in transaction" not in states
    assert sorted(seen) == keys
    done = [r.key for r in client.scan(NS, Status.DONE)]  # type: ignore[union-attr]
    assert sorted(done) == keys[:600]
    assert len(client.list(NS, Status.CLAIMED)) == 634


def test_namespaces_lists_each_once_in_byte_order(client: CheckpointClient) -> None:
    for ns in ("b", "A", "a", "_x", "Z-1"):
        for key in ("1", "2", "3"):
            client.claim(ns, key)
    assert client.namespaces() == sorted(["b", "A", "a", "_x", "Z-1"])


def test_unreadable_rows_are_reported_and_quarantined(client: CheckpointClient, schema: str, admin: Any) -> None:
    client.claim(NS, "good")
    admin.execute(
        f'INSERT INTO "{schema}".checkpoints VALUES '
        "(%s, 'weird', 'weird', 'paused', NULL, NULL, NULL, NULL, NULL, NULL, 1, 1, 1), "
        "(%s, 'broken', 'broken', 'done', NULL, NULL, NULL, '{oops', NULL, NULL, 1, 1, 1)",
        (NS, NS),
    )
    problems = [r for r in client.scan(NS) if isinstance(r, CorruptRecord)]
    assert len(problems) == 2
    by_key = {p.location.split("storage_key=")[1]: p.reason for p in problems}
    assert by_key["'weird')"] == "unknown status 'paused'"
    assert "result" in by_key["'broken')"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert [r.key for r in client.list(NS)] == ["good"]
    assert caught
    for problem in problems:
        assert "quarantine" in client.quarantine(problem)
    assert [r.key for r in client.scan(NS)] == ["good"]  # type: ignore[union-attr]
    moved = admin.execute(f'SELECT key FROM "{schema}".checkpoints_quarantine ORDER BY key').fetchall()
    assert moved == [("broken",), ("weird",)]


def test_one_statement_claim_follows_the_machine_over_an_expired_lease(
    client: CheckpointClient, schema: str, admin: Any
) -> None:
    first = client.claim(NS, "k", owner_run_id="old", lease_ms=60_000)
    # Age the lease on the server side, as if its holder had died long ago.
    admin.execute(f'UPDATE "{schema}".checkpoints SET lease_until = lease_until - 120000')
    before = client.get(NS, "k")
    assert before is not None
    got = client.claim(NS, "k", owner_run_id="new", lease_ms=5_000)
    assert got.kind == "claimed" and got.lease_token != first.lease_token
    expected = machine_claim(NS, "k", "new", 5_000)(before, got.checkpoint.updated_at).value.checkpoint
    assert got.checkpoint.attempts == expected.attempts == 2
    assert got.checkpoint.created_at == expected.created_at == first.checkpoint.created_at
    assert got.checkpoint.lease_until == expected.lease_until
    assert client.get(NS, "k") == got.checkpoint


def test_claimed_row_holding_a_result_goes_through_the_locking_path(
    client: CheckpointClient, schema: str, admin: Any
) -> None:
    # Not a row this library writes; the one-statement claim leaves it to read-validate-write.
    client.claim(NS, "k", lease_ms=60_000)
    admin.execute(f"""UPDATE "{schema}".checkpoints SET lease_until = 0, result = '[1]'""")
    got = client.claim(NS, "k")
    assert got.kind == "claimed" and got.checkpoint.result is None and got.checkpoint.attempts == 2


def test_fast_durability_store_works_the_same(schema: str) -> None:
    with CheckpointClient(store_url(schema), durability="fast") as cp:
        token = cp.claim(NS, "k").lease_token
        assert token is not None
        assert cp.done(NS, "k", token, result=[1, 2]).status is Status.DONE
        assert cp.claim(NS, "k").kind == "done"


def test_async_client_is_native_and_exactly_once(pg_url: str) -> None:
    from mooncat_checkpoint.backends.postgres import AsyncPostgresBackend

    async def main() -> None:
        async with AsyncCheckpointClient(pg_url) as cp:
            assert isinstance(cp.backend, AsyncPostgresBackend)
            keys = [f"k{i}" for i in range(20)]
            outcomes = await asyncio.gather(*(cp.claim(NS, k, owner_run_id=f"t{n}")
                                              for n in range(5) for k in keys))
            wins = [o for o in outcomes if o.kind == "claimed"]
            assert sorted(o.checkpoint.key for o in wins) == sorted(keys)
            assert {o.kind for o in outcomes} == {"claimed", "busy"}
            for outcome in wins[:10]:
                assert outcome.lease_token is not None
                touched = await cp.touch(NS, outcome.checkpoint.key, outcome.lease_token, extend_ms=90_000)
                assert touched is not None
                await cp.done(NS, outcome.checkpoint.key, outcome.lease_token, result={"ok": True})
            for outcome in wins[10:12]:
                assert outcome.lease_token is not None
                await cp.fail(NS, outcome.checkpoint.key, "boom", lease_token=outcome.lease_token)
            assert len(await cp.list(NS, Status.DONE)) == 10
            assert len(await cp.list(NS, "failed")) == 2
            many = await cp.claim_many(NS, [*keys[:3], "fresh"])
            assert [o.kind for o in many.values()] == ["done", "done", "done", "claimed"]
            assert set(await cp.get_many(NS, ["k0", "nope"])) == {"k0"}
            assert await cp.abandon_owned("t0") + await cp.abandon_owned("t1") + await cp.abandon_owned(
                "t2") + await cp.abandon_owned("t3") + await cp.abandon_owned("t4") == 8
            assert await cp.gc() == 0

    asyncio.run(main())


def test_server_url_for_tests_is_the_local_one_unless_set() -> None:
    assert SERVER_URL.startswith("postgresql://")
