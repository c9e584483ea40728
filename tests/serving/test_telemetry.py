import json
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta

import psycopg
import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from core.fields import TOKEN_PREFIX, decrypt_json
from core.models import AuditEvent
from portal.celery import app as celery_app
from serving.models import RequestRecord
from serving.services.telemetry import (
    TelemetryBuffer,
    content_selected,
    telemetry_buffer_stats,
    telemetry_content_purge,
    telemetry_flush,
    telemetry_record,
)
from serving.tasks import telemetry_purge_task
from tests.serving.factories import deployment, version
from tests.support import servers
from tests.support.servers import database_url

# Rows are written by the writer thread on its own connection: it sees committed rows only.
committed = pytest.mark.django_db(transaction=True)


def _fields(dep, **overrides):
    return {
        "request_id": uuid.uuid4().hex,
        "deployment_id": dep.pk,
        "model_version_id": dep.stable_version_id,
        "arm": "stable",
        "endpoint": "chat.completions",
        "status": 200,
        "latency_ms": 40.0,
        **overrides,
    }


def _wait_written(count, timeout=10.0):
    deadline = time.monotonic() + timeout
    while RequestRecord.objects.count() < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return RequestRecord.objects.count()


@pytest.fixture
def dep(project, engineer):
    return deployment(project, engineer, name="chat")


@committed
def test_rows_written_match_the_records_sent(dep, project):
    canary = version(project, stage="canary")
    at = timezone.now() - timedelta(seconds=3)
    sent = []
    for n in range(300):
        arm = "canary" if n % 3 == 0 else "stable"
        fields = _fields(
            dep,
            model_version_id=canary.pk if arm == "canary" else dep.stable_version_id,
            arm=arm,
            stream=n % 2 == 0,
            status=502 if n % 50 == 0 else 200,
            error="upstream 502" if n % 50 == 0 else "",
            fell_back=n % 75 == 0,
            latency_ms=10.0 + n,
            ttft_ms=5.0 + n,
            tokens_in=n,
            tokens_out=2 * n,
            cost=n / 1000,
            guardrail_flags=["pii:email"] if n % 10 == 0 else [],
            end_user=f"user-{n % 7}",
            key_id=n % 4,
            created_at=at,
        )
        sent.append(dict(fields))
        telemetry_record(fields)

    # The writer thread writes them without being asked.
    assert _wait_written(300) == 300
    stored = {r.request_id: r for r in RequestRecord.objects.all()}
    assert set(stored) == {s["request_id"] for s in sent}
    for s in sent:
        row = stored[s["request_id"]]
        assert {name: getattr(row, name) for name in s} == s
        assert row.content is None


@committed
def test_content_is_not_stored_when_the_policy_is_off(dep):
    fields = _fields(dep)
    telemetry_record(fields, content={"request": "secret"}, logging_policy="off")
    telemetry_flush()

    row = RequestRecord.objects.get(request_id=fields["request_id"])
    assert row.content is None
    assert row.content_expires_at is None
    with connection.cursor() as cursor:
        cursor.execute("SELECT content FROM serving_requestrecord")
        assert cursor.fetchall() == [(None,)]


@committed
def test_the_sampled_policy_keeps_about_its_percentage_chosen_by_request_id(dep):
    ids = [uuid.uuid4().hex for _ in range(2000)]
    for request_id in ids:
        telemetry_record(
            _fields(dep, request_id=request_id),
            content={"prompt": request_id},
            logging_policy="sampled",
            sample_percent=20,
        )
    telemetry_flush()

    kept = set(
        RequestRecord.objects.filter(content_expires_at__isnull=False).values_list(
            "request_id", flat=True
        )
    )
    assert RequestRecord.objects.count() == 2000
    assert 340 <= len(kept) <= 460  # 20 % of 2,000, give or take 3 points
    # The same request is always in or out, whichever process decides.
    chosen = {
        i
        for i in ids
        if content_selected(request_id=i, logging_policy="sampled", sample_percent=20)
    }
    assert kept == chosen


def test_sampling_keeps_nothing_at_zero_percent_and_everything_under_all():
    ids = [uuid.uuid4().hex for _ in range(200)]

    assert not any(
        content_selected(request_id=i, logging_policy="sampled", sample_percent=0) for i in ids
    )
    assert all(content_selected(request_id=i, logging_policy="all", sample_percent=0) for i in ids)
    assert not any(
        content_selected(request_id=i, logging_policy="off", sample_percent=100) for i in ids
    )


@committed
def test_stored_content_is_ciphertext_in_sql_and_decrypts_through_the_orm(dep):
    content = {"request": {"messages": [{"role": "user", "content": "héllo"}]}, "response": "hi"}
    fields = _fields(dep)
    before = timezone.now()
    telemetry_record(fields, content=content, logging_policy="all", retention_days=7)
    telemetry_flush()

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT content FROM serving_requestrecord WHERE request_id = %s",
            [fields["request_id"]],
        )
        (raw,) = cursor.fetchone()
    assert raw.startswith(TOKEN_PREFIX)
    assert "héllo" not in raw
    assert decrypt_json(raw) == content
    row = RequestRecord.objects.get(request_id=fields["request_id"])
    assert row.content == content
    assert (
        before + timedelta(days=7) <= row.content_expires_at <= timezone.now() + timedelta(days=7)
    )


@pytest.mark.django_db
def test_purge_clears_expired_content_only_and_audits_once(dep):
    now = timezone.now()
    expired = [
        RequestRecord.objects.create(
            **_fields(dep, tokens_out=5, created_at=now),
            content={"n": n},
            content_expires_at=now - timedelta(minutes=n + 1),
        )
        for n in range(3)
    ]
    kept = RequestRecord.objects.create(
        **_fields(dep, created_at=now), content={"n": 9}, content_expires_at=now + timedelta(days=1)
    )
    events_before = AuditEvent.objects.filter(action="serving.telemetry.content_purge").count()

    assert telemetry_content_purge(now=now) == 3

    for row in expired:
        row.refresh_from_db()
        assert (row.content, row.content_expires_at, row.tokens_out) == (None, None, 5)
    kept.refresh_from_db()
    assert kept.content == {"n": 9}
    events = AuditEvent.objects.filter(action="serving.telemetry.content_purge")
    assert events.count() == events_before + 1
    assert events.latest("seq").data["cleared"] == 3


@pytest.mark.django_db
def test_the_purge_task_clears_what_has_expired(dep):
    row = RequestRecord.objects.create(
        **_fields(dep, created_at=timezone.now()),
        content={"n": 1},
        content_expires_at=timezone.now() - timedelta(seconds=1),
    )

    telemetry_purge_task()

    row.refresh_from_db()
    assert row.content is None


def test_a_full_buffer_drops_the_oldest_and_counts_them():
    # A writer that waits an hour: nothing leaves the buffer but what it drops.
    buffer = TelemetryBuffer(max_rows=5, interval_s=3600)
    for n in range(8):
        buffer.append({"request_id": str(n)})

    assert [row["request_id"] for row in buffer.rows] == ["3", "4", "5", "6", "7"]
    assert buffer.dropped_full == 3
    buffer.rows.clear()  # nothing for its exit flush to write


# Committed: a failed COPY must not depend on the test's own transaction to see `dep`.
@committed
def test_a_refused_batch_is_dropped_and_counted_and_the_next_is_written(dep):
    buffer = TelemetryBuffer(max_rows=100, batch=2, interval_s=3600)
    buffer.append(_fields(dep, created_at=timezone.now()))
    buffer.append(_fields(dep, created_at=timezone.now(), status=-1))  # refused by a CHECK
    good = _fields(dep, created_at=timezone.now())
    buffer.append(good)

    assert buffer.flush() == 1

    assert buffer.dropped_failed == 2
    assert list(RequestRecord.objects.values_list("request_id", flat=True)) == [good["request_id"]]


# Committed: a failed COPY must not depend on the test's own transaction to see `dep`.
@committed
def test_a_request_id_written_before_is_skipped_and_the_rest_of_its_batch_written(dep):
    buffer = TelemetryBuffer(max_rows=100, interval_s=3600)
    first = _fields(dep, created_at=timezone.now())
    buffer.append(dict(first))
    buffer.flush()
    others = [_fields(dep, created_at=timezone.now()) for _ in range(3)]
    for fields in [{**first, "status": 500}, *others]:
        buffer.append(fields)

    assert buffer.flush() == 4

    assert RequestRecord.objects.count() == 4
    assert RequestRecord.objects.get(request_id=first["request_id"]).status == 200


@committed
def test_recording_never_waits_for_a_stalled_database(dep):
    telemetry_flush()
    # Another session holds the table: every write waits for it, as on a stalled database.
    with psycopg.connect(database_url(connection.settings_dict), autocommit=False) as blocker:
        blocker.execute("LOCK TABLE serving_requestrecord IN ACCESS EXCLUSIVE MODE")
        telemetry_record(_fields(dep))
        time.sleep(0.5)  # the writer is now stuck in its COPY
        slowest = 0.0
        for _ in range(2000):
            started = time.perf_counter()
            telemetry_record(_fields(dep))
            slowest = max(slowest, time.perf_counter() - started)
        waiting = telemetry_buffer_stats()["buffered"]
        blocker.rollback()

    assert slowest < 0.05
    assert waiting >= 2000
    assert _wait_written(2001) == 2001


def test_flush_waits_for_the_writer_thread_instead_of_racing_it():
    buffer = TelemetryBuffer(max_rows=10, interval_s=3600)
    finished = threading.Event()
    with buffer._flushing:
        flusher = threading.Thread(target=lambda: (buffer.flush(), finished.set()))
        flusher.start()
        assert not finished.wait(0.2)
    flusher.join(5)
    assert finished.is_set()


def test_the_beat_schedule_purges_telemetry_content_hourly():
    celery_app.loader.import_default_modules()
    schedule = {e["task"]: e["schedule"] for e in settings.CELERY_BEAT_SCHEDULE.values()}

    assert schedule["serving.telemetry_purge"] <= 3600
    assert "serving.telemetry_purge" in celery_app.tasks


@committed
def test_what_is_buffered_is_written_when_the_process_exits(dep, test_database_url):
    script = (
        "import django; django.setup()\n"
        "from django.utils import timezone\n"
        "from serving.services.telemetry import telemetry_record\n"
        "for n in range(50):\n"
        f"    telemetry_record({{'request_id': f'exit-{{n}}', 'deployment_id': {dep.pk},"
        " 'arm': 'stable', 'endpoint': 'completions', 'status': 200, 'latency_ms': 1.0})\n"
    )
    env = servers.child_env(test_database_url)
    # Exits at once, well before the writer's first 0.2 s are up.
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=120)  # noqa: S603

    assert RequestRecord.objects.filter(request_id__startswith="exit-").count() == 50


def test_rows_wait_in_the_buffer_while_the_database_is_unreachable():
    script = (
        "import json, django; django.setup()\n"
        "from serving.services.telemetry import TelemetryBuffer\n"
        "buffer = TelemetryBuffer(max_rows=5, interval_s=3600)\n"
        "row = {'deployment_id': 1, 'arm': 'stable', 'endpoint': 'completions', 'status': 200}\n"
        "for n in range(3): buffer.append({**row, 'request_id': f'r{n}'})\n"
        "written = buffer.flush()\n"
        "for n in range(3, 7): buffer.append({**row, 'request_id': f'r{n}'})\n"
        "print(json.dumps({'written': written, 'unreachable': buffer.unreachable,\n"
        "  'buffered': [r['request_id'] for r in buffer.rows],\n"
        "  'dropped_full': buffer.dropped_full, 'dropped_failed': buffer.dropped_failed}))\n"
        "buffer.rows.clear()\n"
    )
    # Nothing listens on this port: every connection attempt fails, as in an outage.
    nowhere = f"postgres://postgres@127.0.0.1:{servers.free_port()}/portal"
    env = servers.child_env(nowhere, DATABASE_POOL_TIMEOUT="1")
    done = subprocess.run(  # noqa: S603 - our own code
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )

    assert done.returncode == 0, done.stderr[-2000:]
    state = json.loads(done.stdout.strip().splitlines()[-1])
    assert state["written"] == 0
    assert state["unreachable"] is True
    assert state["dropped_failed"] == 0
    # Kept through the outage, and the bound still holds: the oldest two went.
    assert state["buffered"] == ["r2", "r3", "r4", "r5", "r6"]
    assert state["dropped_full"] == 2
