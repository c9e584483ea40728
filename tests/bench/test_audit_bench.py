import statistics
import time

import pytest
from django.db import connection
from django.utils import timezone

from core.services.audit import audit_append_sql, audit_record, event_draft
from core.services.checkpoints import audit_checkpoint_sign, audit_log_verify

# Inside one transaction: the figures are the statements' cost, not the commit's fsync.
pytestmark = pytest.mark.django_db

APPENDS = 2000
EVENTS = 50_000


def _append_p50_us(actor, project) -> float:
    times = []
    for n in range(APPENDS):
        start = time.perf_counter()
        audit_record(actor=actor, action="bench.append", target=project, data={"n": n})
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def test_audit_append_with_the_forward_only_head_trigger(admin, project, report):
    audit_record(actor=admin, action="bench.first", target=project)
    with_trigger = _append_p50_us(admin, project)
    with connection.cursor() as cursor:
        cursor.execute(
            "ALTER TABLE governance_auditchainhead DISABLE TRIGGER auditchainhead_forward_only"
        )
    try:
        without_trigger = _append_p50_us(admin, project)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(
                "ALTER TABLE governance_auditchainhead ENABLE TRIGGER auditchainhead_forward_only"
            )

    report("audit_append_p50_us", with_trigger, "us")
    report("audit_append_p50_without_head_trigger_us", without_trigger, "us")
    assert with_trigger < 20_000  # a sanity bound; the figures are the point


def test_checkpoint_and_verify_of_50k_events(admin, project, report, settings, tmp_path):
    settings.PORTAL_AUDIT_CHECKPOINT_DIR = tmp_path
    audit_record(actor=admin, action="bench.first", target=project)
    now = timezone.now()
    for start in range(1, EVENTS, 1000):
        drafts = [
            event_draft(actor=admin, action="bench.bulk", created_at=now, data={"n": n})
            for n in range(start, min(start + 1000, EVENTS))
        ]
        clauses, params = audit_append_sql(drafts)
        with connection.cursor() as cursor:
            cursor.execute(f"WITH {clauses} SELECT count(*) FROM audit_rows", params)  # noqa: S608

    started = time.perf_counter()
    checkpoint = audit_checkpoint_sign()
    sign_s = time.perf_counter() - started
    started = time.perf_counter()
    result = audit_log_verify()
    verify_s = time.perf_counter() - started

    report("audit_checkpoint_sign_50k_events_from_genesis_s", sign_s, "s")
    report("verify_audit_log_50k_events_s", verify_s, "s")
    assert checkpoint.tree_size == EVENTS
    assert result.ok, result.problems
