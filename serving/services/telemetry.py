"""Request telemetry, written off the request path: the gateway appends each finished
request to an in-process buffer (`telemetry_record`, no I/O) and a daemon thread inserts the
buffer in batches. `telemetry_flush` writes what is buffered now (tests, shutdown)."""

import atexit
import hashlib
import threading
import time
from collections import deque
from datetime import timedelta
from typing import Any

from django.db import close_old_connections
from django.utils import timezone

from serving.models import RequestRecord

FLUSH_INTERVAL_S = 0.2
BATCH = 2000

_buffer: deque[dict[str, Any]] = deque()
_lock = threading.Lock()
_thread: threading.Thread | None = None


def content_selected(*, request_id: str, logging_policy: str, sample_percent: int) -> bool:
    """Whether the logging policy keeps this request's content: all, none, or a sample
    chosen by the request id's hash (the same request is always in or out)."""
    if logging_policy == "all":
        return True
    if logging_policy != "sampled" or sample_percent <= 0:
        return False
    bucket = int.from_bytes(hashlib.blake2b(request_id.encode(), digest_size=2).digest()) % 100
    return bucket < sample_percent


def telemetry_record(
    fields: dict[str, Any],
    *,
    content: Any = None,
    logging_policy: str = "off",
    sample_percent: int = 0,
    retention_days: int = 30,
) -> None:
    """Queue one RequestRecord's fields (as the model names them, `request_id` among
    them). `content` (the request and the answer) is kept only where the deployment's
    logging policy selects the request, until its retention days pass. Never blocks on I/O."""
    if content is not None and content_selected(
        request_id=fields["request_id"],
        logging_policy=logging_policy,
        sample_percent=sample_percent,
    ):
        fields["content"] = content
        fields["content_expires_at"] = timezone.now() + timedelta(days=retention_days)
    _buffer.append(fields)
    if _thread is None:
        _start()


def telemetry_flush() -> int:
    """Insert everything buffered; returns how many rows were written."""
    written = 0
    with _lock:
        while _buffer:
            batch = [_buffer.popleft() for _ in range(min(BATCH, len(_buffer)))]
            RequestRecord.objects.bulk_create(
                [RequestRecord(**fields) for fields in batch], ignore_conflicts=True
            )
            written += len(batch)
    return written


def _loop() -> None:
    while True:
        time.sleep(FLUSH_INTERVAL_S)
        if _buffer:
            try:
                telemetry_flush()
            finally:
                close_old_connections()


def _start() -> None:
    global _thread
    with _lock:
        if _thread is None:
            _thread = threading.Thread(target=_loop, name="telemetry-flush", daemon=True)
            _thread.start()
            atexit.register(telemetry_flush)
