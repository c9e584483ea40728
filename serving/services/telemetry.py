"""Request telemetry, written off the request path: the gateway appends each finished
request to an in-process buffer (`telemetry_record`, no I/O) and a daemon thread inserts the
buffer in batches. `telemetry_flush` writes what is buffered now (tests, shutdown)."""

import atexit
import threading
import time
from collections import deque
from typing import Any

from django.db import close_old_connections

from serving.models import RequestRecord

FLUSH_INTERVAL_S = 0.2
BATCH = 2000

_buffer: deque[dict[str, Any]] = deque()
_lock = threading.Lock()
_thread: threading.Thread | None = None


def telemetry_record(fields: dict[str, Any]) -> None:
    """Queue one RequestRecord's fields (as the model names them). Never blocks on I/O."""
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
