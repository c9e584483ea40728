"""Request telemetry, written off the request path.

The gateway hands each finished request to `telemetry_record`: it updates the Prometheus
metrics and appends the row's fields to a bounded in-process buffer (no I/O, never waits).
A daemon thread writes the buffer in batches, every FLUSH_INTERVAL_S or as soon as a batch
is full: PostgreSQL takes a batch as one COPY, other databases (SQLite in the demo) a bulk
insert. When the buffer is full the oldest row is dropped and counted, so a database that
is down or slow costs telemetry, never an answer. Each server process has its own buffer and
writer; what is buffered is written when the process exits.

Content (the request and the answer) is kept only where the deployment's logging policy
selects the request, encrypted as `RequestRecord.content` stores it, and cleared once its
retention days pass (`telemetry_content_purge`, run hourly by Celery beat).
"""

import atexit
import hashlib
import json
import logging
import os
import threading
from collections import deque
from datetime import datetime, timedelta
from typing import Any

import psycopg
from django.conf import settings
from django.db import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    close_old_connections,
    connection,
    transaction,
)
from django.utils import timezone

from core.db import on_postgresql
from core.services.audit import audit_record
from serving import metrics
from serving.models import RequestRecord

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.2
BATCH = 2000

# The columns a row is written with, in the model's order (the primary key is the table's).
_FIELDS = [f for f in RequestRecord._meta.concrete_fields if not f.primary_key]
_COPY_SQL = "COPY {table} ({columns}) FROM STDIN"
# Errors that say nothing about the rows: the database is not there (yet, or any more).
_UNREACHABLE = (OperationalError, InterfaceError, psycopg.OperationalError, psycopg.InterfaceError)


def content_selected(*, request_id: str, logging_policy: str, sample_percent: int) -> bool:
    """Whether the logging policy keeps this request's content: all, none, or a sample
    chosen by the request id's hash (the same request is always in or out)."""
    if logging_policy == "all":
        return True
    if logging_policy != "sampled" or sample_percent <= 0:
        return False
    bucket = int.from_bytes(hashlib.blake2b(request_id.encode(), digest_size=2).digest()) % 100
    return bucket < sample_percent


class TelemetryBuffer:
    """Rows waiting to be written, and the thread that writes them. `max_rows` bounds the
    memory a stalled database can cost; past it the oldest rows go first."""

    def __init__(self, *, max_rows: int, batch: int = BATCH, interval_s: float = FLUSH_INTERVAL_S):
        self.rows: deque[dict[str, Any]] = deque(maxlen=max_rows)
        self.batch = batch
        self.interval_s = interval_s
        self.written = 0
        self.dropped_full = 0
        self.dropped_failed = 0
        self.unreachable = False
        self._flushing = threading.Lock()
        self._starting = threading.Lock()  # not _flushing: a stalled write must not hold it
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def append(self, fields: dict[str, Any]) -> None:
        """Queue one row; called on the request path, so: no I/O, no lock."""
        rows = self.rows
        if len(rows) == rows.maxlen:
            # The deque drops the oldest row itself as this one goes in.
            self.dropped_full += 1
            metrics.telemetry_dropped("buffer_full")
        rows.append(fields)
        if self._thread is None:
            self.start()
        elif len(rows) >= self.batch and not self._wake.is_set():
            self._wake.set()

    def flush(self) -> int:
        """Write everything buffered now, batch by batch; returns the rows written. A batch
        the database refuses is logged, counted as dropped and skipped: the writer never
        stops, and the next batch may well go in. While the database cannot be reached the
        rows stay buffered."""
        written = 0
        with self._flushing:
            while self.rows:
                batch = []
                for _ in range(min(self.batch, len(self.rows))):
                    try:
                        batch.append(self.rows.popleft())
                    except IndexError:  # dropped by a full buffer meanwhile
                        break
                try:
                    _write(batch)
                except _UNREACHABLE:
                    # The database is down or out of connections: the rows wait for the
                    # next flush, within the buffer's bound, and the outage is logged once.
                    self._put_back(batch)
                    if not self.unreachable:
                        log.warning("telemetry: database unreachable, buffering", exc_info=True)
                        self.unreachable = True
                    break
                # Any other failure (a row the database refuses) costs this batch only:
                # a writer that died would cost every later request's row.
                except Exception:
                    log.exception("telemetry: %d request records dropped", len(batch))
                    self.dropped_failed += len(batch)
                    metrics.telemetry_dropped("write_failed", len(batch))
                    continue
                if self.unreachable:
                    log.warning("telemetry: database reachable again")
                    self.unreachable = False
                written += len(batch)
            self.written += written
        return written

    def _put_back(self, batch: list[dict[str, Any]]) -> None:
        """Return an unwritten batch to the front; what no longer fits is its oldest."""
        room = max((self.rows.maxlen or 0) - len(self.rows), 0)
        if room < len(batch):
            lost = len(batch) - room
            batch = batch[lost:]
            self.dropped_full += lost
            metrics.telemetry_dropped("buffer_full", lost)
        self.rows.extendleft(reversed(batch))

    def start(self) -> None:
        with self._starting:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="telemetry-flush", daemon=True
                )
                self._thread.start()
                atexit.register(self.flush)

    def _loop(self) -> None:
        while True:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            if self.rows:
                self.flush()
                # This thread's connection goes back (to the pool) between flushes.
                close_old_connections()

    def forget_thread(self) -> None:
        """In a forked child: the parent's writer thread does not exist here."""
        self.rows.clear()
        self._flushing = threading.Lock()
        self._starting = threading.Lock()
        self._wake = threading.Event()
        self._thread = None


_buffer = TelemetryBuffer(max_rows=getattr(settings, "SERVING_TELEMETRY_BUFFER_ROWS", 100_000))
os.register_at_fork(after_in_child=_buffer.forget_thread)


def telemetry_record(
    fields: dict[str, Any],
    *,
    content: Any = None,
    logging_policy: str = "off",
    sample_percent: int = 0,
    retention_days: int = 30,
) -> None:
    """Queue one RequestRecord's fields (as the model names them, `request_id` and
    `deployment_id` among them) and count the request in the Prometheus metrics. `content`
    (the request and the answer) is kept only where the deployment's logging policy selects
    the request, until its retention days pass. Never blocks on I/O."""
    if content is not None and content_selected(
        request_id=fields["request_id"],
        logging_policy=logging_policy,
        sample_percent=sample_percent,
    ):
        fields["content"] = content
        fields["content_expires_at"] = timezone.now() + timedelta(days=retention_days)
    else:
        fields.pop("content", None)
        fields.pop("content_expires_at", None)
    if fields.get("created_at") is None:
        fields["created_at"] = timezone.now()
    metrics.request_observe(fields)
    _buffer.append(fields)


def telemetry_flush() -> int:
    """Write everything buffered in this process now (tests, shutdown); returns the rows
    written."""
    return _buffer.flush()


def telemetry_buffer_stats() -> dict[str, int]:
    """This process's buffer: rows waiting, written, and dropped (full buffer, failed write)."""
    return {
        "buffered": len(_buffer.rows),
        "written": _buffer.written,
        "dropped_full": _buffer.dropped_full,
        "dropped_failed": _buffer.dropped_failed,
    }


def _write(batch: list[dict[str, Any]]) -> None:
    if on_postgresql():
        try:
            _copy(batch)
            return
        except (IntegrityError, psycopg.errors.UniqueViolation):
            # COPY takes all rows or none; a request id written before (a retried flush)
            # is skipped by the insert below (which fails too for any other refusal).
            pass
    RequestRecord.objects.bulk_create(
        [RequestRecord(**_model_kwargs(fields)) for fields in batch], ignore_conflicts=True
    )


def _copy(batch: list[dict[str, Any]]) -> None:
    """The batch as one COPY, the cheapest way into PostgreSQL. Values are what the ORM
    would send: content encrypted by the field's own `get_prep_value`."""
    quote = connection.ops.quote_name
    statement = _COPY_SQL.format(
        table=quote(RequestRecord._meta.db_table),
        columns=", ".join(quote(f.column) for f in _FIELDS),
    )
    with transaction.atomic(), connection.cursor() as cursor, cursor.copy(statement) as copy:
        for fields in batch:
            copy.write_row(_copy_row(fields))


# (column value's key, default) in _FIELDS order, and where the values that need converting sit.
_COLUMNS = [(f.attname, f.get_default()) for f in _FIELDS]
_NAMES = [name for name, _ in _COLUMNS]
_CONTENT = RequestRecord._meta.get_field("content")
_CONTENT_AT = _NAMES.index("content")
_FLAGS_AT = _NAMES.index("guardrail_flags")
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _copy_row(fields: dict[str, Any]) -> list[Any]:
    if "deployment" in fields:  # an instance rather than its id
        fields = {**fields, "deployment_id": fields["deployment"].pk}
    row = [fields.get(name, default) for name, default in _COLUMNS]
    if row[_CONTENT_AT] is not None:
        row[_CONTENT_AT] = _CONTENT.get_prep_value(row[_CONTENT_AT])
    flags = row[_FLAGS_AT]
    row[_FLAGS_AT] = _dumps(flags) if flags else "[]"
    return row


def _model_kwargs(fields: dict[str, Any]) -> dict[str, Any]:
    known = {f.attname for f in _FIELDS} | {f.name for f in _FIELDS}
    return {name: value for name, value in fields.items() if name in known}


@transaction.atomic
def telemetry_content_purge(*, now: datetime | None = None) -> int:
    """Clear the content of every request record whose retention has passed (the rest of
    the row stays: the figures are not personal). One audit event per run, with the count:
    evidence that retention is enforced, without an event per request."""
    now = now or timezone.now()
    cleared = RequestRecord.objects.filter(content_expires_at__lte=now).update(
        content=None, content_expires_at=None
    )
    audit_record(
        actor=None,
        action="serving.telemetry.content_purge",
        data={"cleared": cleared, "before": now.isoformat()},
    )
    return cleared
