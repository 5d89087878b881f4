"""A bad PostgreSQL URL or a server that cannot be used is one line, as a CheckpointError of the library:
ConfigError for what the URL says (found before any connection), PostgresUnavailableError for the server."""

from __future__ import annotations

import asyncio
import contextlib
import io
from typing import Any

import pytest
from mooncat_checkpoint import AsyncCheckpointClient, CheckpointClient, cli
from mooncat_checkpoint.errors import CheckpointError, ConfigError
from pg_server import SERVER_URL, require_server, store_url

NS = "pg"

# Port 1 answers nobody: a ConfigError here cannot have come from a connection attempt.
NOWHERE = "postgresql://nobody@127.0.0.1:1/none"
BAD_URLS = [
    (f"{NOWHERE}?shema=x", "shema"),
    (f"{NOWHERE}?schema=ok&connect_timeout=abc", "connect_timeout"),
    (f"{NOWHERE}?sslmode=require&tablee=t", "tablee"),
    ("postgresql://nobody@127.0.0.1:99999/none", "port"),
    ("postgresql://nobody@127.0.0.1:abc/none", "port"),
    (f"{NOWHERE}?port=abc", "port"),
    (f"{NOWHERE}?port=70000", "port"),
    ("postgresql://nobody@[::1/none", "IPv6"),
    ("postgresql://nobody@127.0.0.1:1/no%zzne", "%zz"),
    (f"{NOWHERE}?pool_size=%C2%B2", "pool_size"),
    (f"{NOWHERE}?pool_size=abc", "pool_size"),
    ("postgresql://nobody:s3cret@127.0.0.1:99999/none", "port"),
]


def _sync_error(url: str) -> CheckpointError:
    with CheckpointClient(url) as cp, pytest.raises(CheckpointError) as err:
        cp.get(NS, "k")
    return err.value


def _async_error(url: str) -> CheckpointError:
    async def attempt() -> None:
        async with AsyncCheckpointClient(url) as cp:
            await cp.get(NS, "k")

    with pytest.raises(CheckpointError) as err:
        asyncio.run(attempt())
    return err.value


def _cli(*argv: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = cli.main(list(argv))
    return code, err.getvalue()


@pytest.mark.parametrize(("url", "named"), BAD_URLS)
def test_a_bad_url_is_a_config_error_naming_the_option_before_connecting(url: str, named: str) -> None:
    for error in (_sync_error(url), _async_error(url)):
        assert type(error) is ConfigError, repr(error)
        message = str(error)
        assert named.lower() in message.lower() and "\n" not in message
        assert "s3cret" not in message


@pytest.mark.parametrize(("url", "named"), BAD_URLS[:2])
def test_the_cli_reports_a_bad_url_in_one_line(url: str, named: str) -> None:
    code, err = _cli("list", "ns", "--url", url)
    assert code == 2
    assert err.startswith("mooncat-checkpoint: error: PostgreSQL") and err.count("\n") == 1
    assert named in err and "unexpected" not in err and "Traceback" not in err


def _unusable_servers() -> list[tuple[str, str]]:
    return [
        ("postgresql://postgres@127.0.0.1:1/test?connect_timeout=2", "port 1"),
        ("postgresql://postgres@no-such-host.invalid:5432/test?connect_timeout=2", "no-such-host.invalid"),
        (SERVER_URL.rsplit("/", 1)[0] + "/mooncat_no_such_database", "mooncat_no_such_database"),
        (SERVER_URL.replace("postgres@", "mooncat_no_such_role@"), "mooncat_no_such_role"),
    ]


@pytest.mark.parametrize("case", range(4))
def test_a_server_that_cannot_be_used_is_one_line_unavailable_error(case: int) -> None:
    from mooncat_checkpoint.backends.postgres import PostgresUnavailableError

    url, named = _unusable_servers()[case]
    if "127.0.0.1:1/" not in url and "invalid" not in url:
        require_server()
    for error in (_sync_error(url), _async_error(url)):
        assert isinstance(error, PostgresUnavailableError), repr(error)
        assert named in str(error) and "\n" not in str(error)


def test_a_store_that_cannot_be_created_is_a_config_error(schema: str) -> None:
    # A read-only session (as on a standby) cannot create the schema: said so, not a psycopg error.
    url = store_url(schema, options="-c%20default_transaction_read_only%3Don")
    for error in (_sync_error(url), _async_error(url)):
        assert type(error) is ConfigError, repr(error)
        assert "read-only" in str(error) and "\n" not in str(error)


def test_a_store_dropped_under_an_open_client_is_a_config_error(pg_url: str, schema: str, admin: Any) -> None:
    with CheckpointClient(pg_url) as cp:
        cp.claim(NS, "k")
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        with pytest.raises(ConfigError) as err:
            cp.get(NS, "k")
    assert "does not exist" in str(err.value) and "\n" not in str(err.value)
