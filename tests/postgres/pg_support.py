"""Helpers for the PostgreSQL tests."""

from __future__ import annotations

from typing import Any


def server_now_ms(conn: Any) -> int:
    row = conn.execute("SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint").fetchone()
    return int(row[0])


def terminate_clients(conn: Any, application_name: str) -> int:
    """pg_terminate_backend on every connection with that application name; how many were ended."""
    rows = conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = %s AND pid <> pg_backend_pid()",
        (application_name,),
    ).fetchall()
    return sum(1 for (ended,) in rows if ended)
