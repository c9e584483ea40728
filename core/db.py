"""Prepared statements for the few queries that run on every request of a hot path.

Django sends every query as fresh text (client-side binding, prepare_threshold None by
default), so PostgreSQL parses and plans each one again. For the annotation queue's CTEs and
the API token lookup, planning cost the database more than running them. These statements
go to psycopg directly as server-side prepared statements of the pooled connection, with
Django's translation of database errors.

Preparing needs `prepare_threshold` set in the database OPTIONS (settings.py sets it for
PostgreSQL; DATABASE_PREPARED=0 leaves it unset, e.g. behind a transaction-mode pooler
without prepared-statement support); without it these run unprepared.

Prepared statements live and die with their connection, and psycopg keeps its record of
them on the connection object too, so the two never disagree: a server restart breaks the
connection, the pool's check (CONN_HEALTH_CHECKS) drops it, and the next connection
prepares afresh (tests/portal/test_postgres_restart.py runs the queue across restarts).

Where PostgreSQL has a faster way than the ORM, the portal keeps a portable twin for the
embedded SQLite demo. Each pair is chosen in one function that asks `on_postgresql()` once
(grep for it to find them all); tests/portal/test_demo_sqlite.py runs the twins."""

from collections.abc import Iterable, Sequence
from itertools import islice

import psycopg
from django.db import connection, transaction

INSERT_BATCH = 2000


def on_postgresql() -> bool:
    return connection.vendor == "postgresql"


def fetch_one(sql: str, params: dict) -> tuple | None:
    """Run a statement, prepared on this connection, and return its first row.
    PostgreSQL only: its callers choose their twin with `on_postgresql()`."""
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params, prepare=True)
        return cursor.fetchone()


def run_alone(sql: str, params: dict) -> tuple | None:
    """Run one statement as its own transaction and return its first row. Inside a
    caller's transaction it runs under a savepoint, so that a refused statement (a unique
    violation) leaves the caller's work usable."""
    if connection.in_atomic_block:
        with transaction.atomic():
            return fetch_one(sql, params)
    return fetch_one(sql, params)


def rows_insert(*, table: str, columns: Sequence[str], rows: Iterable[tuple]) -> None:
    """Write `rows`, each the `columns`' values as the database stores them (JSON as text,
    encrypted fields as their tokens), into `table` as they come: COPY on PostgreSQL,
    INSERTs of INSERT_BATCH rows elsewhere. Runs in the caller's transaction."""
    quote = connection.ops.quote_name
    names = ", ".join(quote(column) for column in columns)
    with connection.cursor() as cursor:
        if on_postgresql():
            with cursor.cursor.copy(f"COPY {quote(table)} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        statement = (
            f"INSERT INTO {quote(table)} ({names}) "  # noqa: S608 - quoted names only
            f"VALUES ({', '.join(['%s'] * len(columns))})"
        )
        pending = iter(rows)
        while batch := list(islice(pending, INSERT_BATCH)):
            cursor.executemany(statement, batch)


def commit_without_flush() -> None:
    """Let the current transaction's commit return before it reaches the disk, for work
    whose loss in a crash costs nothing (PostgreSQL's synchronous_commit). Elsewhere the
    commit is as usual."""
    if on_postgresql():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = off")
