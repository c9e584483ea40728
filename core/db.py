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
prepares afresh (tests/portal/test_postgres_restart.py runs the queue across restarts)."""

import psycopg
from django.db import connection, transaction


def fetch_one(sql: str, params: dict) -> tuple | None:
    """Run a statement, prepared on this connection, and return its first row. (On the
    embedded SQLite demo, through Django's cursor.)"""
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()
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
