import statistics
import time
import uuid

import pytest
from django.utils import timezone

from serving.models import RequestRecord
from serving.services.telemetry import telemetry_buffer_stats, telemetry_flush, telemetry_record
from tests.serving.factories import deployment

# The writer thread commits on its own connection.
pytestmark = pytest.mark.django_db(transaction=True)

RECORDS = 50_000


def _fields(dep, n):
    return {
        "request_id": uuid.uuid4().hex,
        "deployment_id": dep.pk,
        "model_version_id": dep.stable_version_id,
        "key_id": 1,
        "arm": "canary" if n % 10 == 0 else "stable",
        "endpoint": "chat.completions",
        "stream": n % 2 == 0,
        "status": 200,
        "latency_ms": 120.0 + n % 50,
        "ttft_ms": 30.0,
        "tokens_in": 40,
        "tokens_out": 120,
        "cost": 0.0002,
        "guardrail_flags": ["pii:email"] if n % 20 == 0 else [],
        "end_user": f"u{n % 500}",
        "created_at": timezone.now(),
    }


def test_telemetry_ingest_per_s(project, engineer, report):
    """Request records from the gateway's call to rows in PostgreSQL, by the writer thread,
    with a 10 % content sample (encrypted): what one server process sustains."""
    dep = deployment(project, engineer)
    telemetry_flush()
    content = {
        "request": {"messages": [{"role": "user", "content": "x" * 400}]},
        "response": "y" * 400,
    }
    record_s = []
    started = time.perf_counter()
    for n in range(RECORDS):
        t = time.perf_counter()
        telemetry_record(
            _fields(dep, n), content=content, logging_policy="sampled", sample_percent=10
        )
        record_s.append(time.perf_counter() - t)
    while RequestRecord.objects.count() < RECORDS and time.perf_counter() - started < 120:
        time.sleep(0.02)
    elapsed = time.perf_counter() - started
    written = RequestRecord.objects.count()

    report("telemetry_ingest_per_s", written / elapsed, "rows/s")
    report("telemetry_record_p50_us", statistics.median(record_s) * 1e6, "us")
    report("telemetry_record_p99_us", statistics.quantiles(record_s, n=100)[-1] * 1e6, "us")
    assert written == RECORDS
    assert telemetry_buffer_stats()["dropped_full"] == 0
    assert RequestRecord.objects.filter(content__isnull=False).count() > RECORDS // 20
    assert written / elapsed >= 5000
