import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from core.chain import GENESIS_HASH
from core.models import AuditChainHead, AuditEvent
from core.services.audit import audit_chain_verify, audit_record, record_event

pytestmark = pytest.mark.django_db


def _drop_append_only_trigger(cursor):
    """What an attacker with owner rights would do; rolled back with the test."""
    cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # flush deferred FK checks first
    cursor.execute("DROP TRIGGER auditevent_append_only ON governance_auditevent")


def _three_events(actor, project):
    return [
        audit_record(actor=actor, action="test.one", target=project, data={"n": 1}),
        audit_record(actor=actor, action="test.two", target=project, data={"n": 2.5, "s": "é"}),
        record_event(actor=None, action="test.three", data={"nested": {"b": [1, 2], "a": None}}),
    ]


def test_events_chain_each_to_the_one_before(admin, project):
    first, second, third = _three_events(admin, project)

    assert first.prev_hash == GENESIS_HASH
    assert second.prev_hash == first.hash
    assert third.prev_hash == second.hash
    assert [e.seq for e in (first, second, third)] == [1, 2, 3]
    assert AuditChainHead.objects.get(pk=1).hash == third.hash


def test_event_is_filed_under_its_targets_project_and_actor(admin, project):
    event = audit_record(actor=admin, action="test.one", target=project)

    assert event.project_id == project.pk
    assert event.actor_username == admin.username
    assert (event.target_type, event.target_id) == ("portal.project", str(project.pk))


def test_verify_passes_on_an_untouched_chain(admin, project, capsys):
    _three_events(admin, project)

    call_command("verify_audit_log")

    assert "3 events" in capsys.readouterr().out
    assert audit_chain_verify().ok


def test_stored_data_hashes_the_same_after_reading_back(admin, project):
    event = audit_record(actor=admin, action="t", target=project, data={"when": project.created_at})

    reread = AuditEvent.objects.get(pk=event.pk)

    assert reread.compute_hash() == event.hash


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE governance_auditevent SET action = 'forged' WHERE seq = 2",
        "DELETE FROM governance_auditevent WHERE seq = 3",
    ],
)
def test_database_refuses_update_and_delete(admin, project, statement):
    _three_events(admin, project)

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        connection.cursor().execute(statement)

    assert list(AuditEvent.objects.values_list("action", flat=True)) == [
        "test.one",
        "test.two",
        "test.three",
    ]


def test_altered_event_with_trigger_dropped_is_named_by_verify(admin, project):
    _, second, _ = _three_events(admin, project)
    with connection.cursor() as cursor:
        _drop_append_only_trigger(cursor)
        cursor.execute("UPDATE governance_auditevent SET data = '{\"n\": 3}'::jsonb WHERE seq = 2")

    with pytest.raises(CommandError, match=rf"event #2 \(id {second.pk}\): content does not match"):
        call_command("verify_audit_log")


def test_rehashed_forgery_breaks_the_next_link(admin, project):
    _, second, third = _three_events(admin, project)
    forged = AuditEvent.objects.get(pk=second.pk)
    forged.action = "forged"
    new_hash = forged.compute_hash()
    with connection.cursor() as cursor:
        _drop_append_only_trigger(cursor)
        cursor.execute(
            "UPDATE governance_auditevent SET action = 'forged', hash = %s WHERE seq = 2",
            [new_hash],
        )

    report = audit_chain_verify()

    assert report.first_break.seq == 3
    assert "prev_hash" in report.first_break.reason


def test_deleted_tail_is_caught_by_the_chain_head(admin, project):
    _three_events(admin, project)
    with connection.cursor() as cursor:
        _drop_append_only_trigger(cursor)
        cursor.execute("DELETE FROM governance_auditevent WHERE seq = 3")

    with pytest.raises(CommandError, match="removed from the end"):
        call_command("verify_audit_log")


def test_deleted_middle_event_is_named(admin, project):
    _three_events(admin, project)
    with connection.cursor() as cursor:
        _drop_append_only_trigger(cursor)
        cursor.execute("DELETE FROM governance_auditevent WHERE seq = 2")

    with pytest.raises(CommandError, match="#2: missing"):
        call_command("verify_audit_log")


def test_event_inserted_beyond_the_head_is_named(admin, project):
    _three_events(admin, project)
    forged = AuditEvent(
        seq=4,
        created_at=project.created_at,
        action="test.forged",
        data={},
        prev_hash=AuditChainHead.objects.get(pk=1).hash,
    )
    forged.hash = forged.compute_hash()
    forged.save(force_insert=True)  # the head row is left where it was

    report = audit_chain_verify()

    assert report.first_break.seq == 4
    assert "beyond the chain head" in report.first_break.reason


@pytest.mark.django_db(transaction=True)
def test_verify_passes_while_events_are_appended(admin, project):
    """The soak's failure: the head was read after the walk, so events appended during
    the walk looked like a removed tail. Appends from another connection run for the
    whole of a slow walk (small chunks) and the verdict must still be a pass."""
    import threading

    from django.db import connections

    for n in range(600):
        audit_record(actor=None, action="test.before", data={"n": n})
    stop = threading.Event()
    appended = []

    def append_until_stopped():
        try:
            while not stop.is_set():
                appended.append(audit_record(actor=None, action="test.during", data={}))
        finally:
            connections.close_all()

    appender = threading.Thread(target=append_until_stopped)
    appender.start()
    try:
        while len(appended) < 5:  # appends are under way before the walk starts
            stop.wait(0.01)
        appended_before = len(appended)
        report = audit_chain_verify(chunk_size=20)
        appended_after = len(appended)
    finally:
        stop.set()
        appender.join()

    assert report.ok, str(report.first_break)
    assert report.checked >= 605
    assert appended_after > appended_before  # the walk really raced the appends
    assert audit_chain_verify().checked == 600 + len(appended)
