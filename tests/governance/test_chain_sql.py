import datetime

import pytest
from django.db import connection
from django.utils import timezone

from core.chain import GENESIS_HASH
from core.models import AuditChainHead, AuditEvent
from core.services.audit import (
    audit_append_sql,
    audit_chain_verify,
    audit_record,
    drafts_settle,
    event_draft,
)

pytestmark = pytest.mark.django_db


def test_one_statement_append_hashes_what_python_would(admin, project):
    awkward = {"é": "ü ✓", "n": 2.5, "nested": {"b": [1, None], "a": 'x"y'}, "seq": 3}

    first = audit_record(actor=admin, action="test.one", target=project, data=awkward)
    second = audit_record(actor=None, action="test.two", data={"when": datetime.date(2025, 1, 2)})

    assert first.prev_hash == GENESIS_HASH
    assert second.prev_hash == first.hash
    for event in (first, second):
        stored = AuditEvent.objects.get(pk=event.pk)
        assert stored.compute_hash() == stored.hash == event.hash
        assert stored.seq == event.seq
    assert AuditChainHead.objects.get(pk=1).hash == second.hash
    assert audit_chain_verify().ok


def _append(drafts, gate_sql=""):
    clauses, params = audit_append_sql(drafts, gate="gate" if gate_sql else None)
    prefix = f"gate AS ({gate_sql}), " if gate_sql else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH {prefix}{clauses} SELECT id, seq, prev_hash, hash FROM audit_rows",  # noqa: S608
            params,
        )
        return cursor.fetchall()


def test_several_events_append_in_order_in_one_statement(admin, project):
    audit_record(actor=admin, action="test.before", target=project)
    now = timezone.now()
    drafts = [
        event_draft(actor=admin, action=f"test.{n}", created_at=now, target=project, data={"n": n})
        for n in range(3)
    ]

    events = drafts_settle(drafts, _append(drafts))

    assert [e.seq for e in events] == [2, 3, 4]
    assert [e.action for e in AuditEvent.objects.order_by("seq")][1:] == [
        "test.0",
        "test.1",
        "test.2",
    ]
    assert audit_chain_verify().ok


def test_a_closed_gate_appends_nothing(admin, project):
    audit_record(actor=admin, action="test.before", target=project)
    draft = event_draft(actor=admin, action="test.gated", created_at=timezone.now())

    assert _append([draft], gate_sql="SELECT 1 WHERE false") == []
    assert AuditEvent.objects.count() == AuditChainHead.objects.get(pk=1).seq == 1
