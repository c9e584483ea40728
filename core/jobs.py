"""Liveness of background jobs: a worker holds a lock for each job it runs, and the lock dies
with the worker's process, so the housekeeping sweep can tell a running job from one whose
worker was killed (`kill -9`, out of memory, a lost machine), without heartbeats.

On PostgreSQL the lock is a session advisory lock on a connection of its own: Django's
connections go back to a pool (or are closed between tasks), a dedicated one lives exactly
as long as the job's process. On the embedded SQLite demo it is an flock on a file, which
also dies with the process (one machine there)."""

import contextlib
import fcntl
import functools
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
from django.conf import settings
from django.db import connection, models

from core.db import on_postgresql

# The server drops a dead client's session (and its lock) after about idle + interval * count
# seconds of silence, instead of the kernel's two hours: a machine that vanished is noticed.
KEEPALIVE = {"tcp_keepalives_idle": 20, "tcp_keepalives_interval": 5, "tcp_keepalives_count": 4}


def job_lock_key(model: type[models.Model], pk: Any) -> int:
    """A signed 64-bit key, stable across processes, for one job row."""
    digest = hashlib.blake2b(f"{model._meta.label_lower}:{pk}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _lock_file(key: int) -> Path:
    folder = Path(settings.VAR_DIR) / "job-locks"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{key & 0xFFFFFFFFFFFFFFFF:016x}.lock"


@contextlib.contextmanager
def job_lock(model: type[models.Model], pk: Any) -> Iterator[bool]:
    """Hold the job's liveness lock for the block; yields False when another live process
    holds it already (a duplicate delivery of a job that is running)."""
    key = job_lock_key(model, pk)
    if not on_postgresql():
        with open(_lock_file(key), "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        return
    params = connection.settings_dict
    with psycopg.connect(
        dbname=params["NAME"],
        user=params.get("USER") or None,
        password=params.get("PASSWORD") or None,
        host=params.get("HOST") or None,
        port=params.get("PORT") or None,
        autocommit=True,
        application_name="portal job lock",
        keepalives=1,
        keepalives_idle=KEEPALIVE["tcp_keepalives_idle"],
        keepalives_interval=KEEPALIVE["tcp_keepalives_interval"],
        keepalives_count=KEEPALIVE["tcp_keepalives_count"],
    ) as lock_connection:
        for name, value in KEEPALIVE.items():
            lock_connection.execute(f"SET {name} = {int(value)}")
        acquired = lock_connection.execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone()
        yield bool(acquired and acquired[0])
        # Closing the connection releases the lock.


def job_owner_gone(model: type[models.Model], pk: Any) -> bool:
    """Whether no live process holds the job's lock. On PostgreSQL the probe takes the lock
    for the caller's transaction (so call it inside one, after locking the job row): a worker
    cannot take it over until the caller has settled the row."""
    key = job_lock_key(model, pk)
    if not on_postgresql():
        with open(_lock_file(key), "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [key])
        return bool(cursor.fetchone()[0])


def runs_under_job_lock(model: type[models.Model], id_argument: str) -> Callable:
    """Run a job's worker-side service while holding the job's liveness lock. The lock is
    taken before the service claims the row, so a claimed job always has a live holder
    until it settles. A second delivery that finds the lock held returns the row as is."""

    def decorate(function: Callable) -> Callable:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            pk = kwargs[id_argument]
            with job_lock(model, pk) as held:
                if not held:
                    return model._default_manager.get(pk=pk)
                return function(*args, **kwargs)

        return wrapper

    return decorate
