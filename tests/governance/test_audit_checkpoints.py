import io
import json
import zipfile

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from core import keys
from core.chain import GENESIS_HASH, canonical_json, event_hash
from core.checkpoint import checkpoint_problem, checkpoint_sign
from core.checks import keys_configured
from core.models import AuditChainHead, AuditCheckpoint, AuditEvent
from core.services.audit import audit_chain_verify, audit_record
from core.services.checkpoints import (
    CheckpointRefused,
    audit_checkpoint_sign,
    audit_log_verify,
    checkpoint_file,
)
from core.signing import private_key_pem
from core.tasks import audit_checkpoint_sign_task
from governance.dossier.bundle import bundle_build, json_bytes
from governance.dossier.verify import AUDIT_CHECKPOINT, verify_bundle
from governance.services.dossiers import dossier_request, dossier_verify
from portal.celery import app as celery_app
from tests.governance.factories import lineage_fixture

pytestmark = pytest.mark.django_db

AUDIT_TABLES = [
    "governance_auditevent",
    "governance_auditchainhead",
    "governance_auditcheckpoint",
]


def _events(actor, project, n=3):
    return [
        audit_record(actor=actor, action=f"test.{i}", target=project, data={"n": i})
        for i in range(n)
    ]


def _refused(statement, params=None):
    with pytest.raises(DatabaseError) as caught, transaction.atomic():
        connection.cursor().execute(statement, params)
    return str(caught.value)


def _file_entries():
    return [json.loads(line) for line in checkpoint_file().read_text().splitlines()]


def _rows():
    counts = {}
    with connection.cursor() as cursor:
        for table in AUDIT_TABLES:
            cursor.execute(f"SELECT count(*) FROM {table}")  # noqa: S608
            counts[table] = cursor.fetchone()[0]
    return counts


@pytest.mark.parametrize("table", AUDIT_TABLES)
def test_truncate_is_refused_on_every_audit_table(admin, project, table):
    _events(admin, project)
    audit_checkpoint_sign()
    before = _rows()
    connection.cursor().execute("SET CONSTRAINTS ALL IMMEDIATE")  # TRUNCATE waits for none

    assert "append-only: TRUNCATE refused" in _refused(f"TRUNCATE {table}")

    assert _rows() == before


@pytest.mark.parametrize("table", AUDIT_TABLES)
def test_delete_is_refused_on_every_audit_table(admin, project, table):
    _events(admin, project)
    audit_checkpoint_sign()
    before = _rows()

    assert "append-only: DELETE" in _refused(f"DELETE FROM {table}")  # noqa: S608

    assert _rows() == before


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE governance_auditevent SET action = 'forged' WHERE seq = 2",
        "UPDATE governance_auditcheckpoint SET head_hash = repeat('e', 64)",
    ],
)
def test_update_is_refused_on_events_and_checkpoints(admin, project, statement):
    _events(admin, project)
    signed = audit_checkpoint_sign()

    assert "append-only: UPDATE" in _refused(statement)

    assert AuditEvent.objects.get(seq=2).action == "test.1"
    assert AuditCheckpoint.objects.get().head_hash == signed.head_hash


@pytest.mark.parametrize(
    "change",
    [
        "seq = seq - 1",
        "seq = 0, hash = repeat('0', 64)",
        "hash = repeat('e', 64)",  # same seq, other hash
        "id = 2, seq = seq + 1",
    ],
)
def test_chain_head_only_moves_forward(admin, project, change):
    events = _events(admin, project)

    message = _refused(f"UPDATE governance_auditchainhead SET {change} WHERE id = 1")  # noqa: S608

    assert "only moves forward" in message
    head = AuditChainHead.objects.get(pk=1)
    assert (head.seq, head.hash) == (3, events[-1].hash)
    assert audit_record(actor=admin, action="test.after", target=project).seq == 4


def test_sign_writes_a_signed_checkpoint_to_the_database_and_the_file(admin, project):
    events = _events(admin, project)

    checkpoint = audit_checkpoint_sign()

    assert (checkpoint.tree_size, checkpoint.head_hash) == (3, events[-1].hash)
    [line] = _file_entries()
    assert line == checkpoint.entry()
    public = keys.audit_checkpoint_key().public_key()
    assert checkpoint_problem(line, [public]) is None
    assert checkpoint_problem(line | {"tree_size": 2}, [public]).startswith("its signature")
    assert checkpoint_file().stat().st_mode & 0o777 == 0o640
    # The checkpoint key is its own, not the dossier key, in development too.
    assert checkpoint.key_id != keys.signing_key_id()


def test_sign_again_only_after_the_chain_grows(admin, project):
    _events(admin, project)
    first = audit_checkpoint_sign()

    assert audit_checkpoint_sign() == first
    audit_record(actor=admin, action="test.more", target=project)
    second = audit_checkpoint_sign()

    assert second.tree_size == 4
    assert [e["tree_size"] for e in _file_entries()] == [3, 4]
    call_command("verify_audit_log")


def test_a_checkpoint_only_the_file_kept_is_signed_into_the_database_again(admin, project):
    _events(admin, project)
    first = audit_checkpoint_sign()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute("DELETE FROM governance_auditcheckpoint")
        cursor.execute("SET LOCAL session_replication_role = origin")

    again = audit_checkpoint_sign()

    assert (again.tree_size, again.head_hash) == (first.tree_size, first.head_hash)
    assert len(_file_entries()) == 2
    assert audit_log_verify().ok


def test_empty_chain_is_not_signed():
    assert audit_checkpoint_sign() is None
    assert not checkpoint_file().exists()


def _rebuild_the_log(cursor, *, method, keep, forge):
    """The attack: as superuser, switch the triggers off, wipe every audit table and write a
    fresh chain of `keep` events whose every hash is recomputed (actions changed by
    `forge`), with a matching head. The unkeyed chain then verifies."""
    events = list(AuditEvent.objects.order_by("seq")[:keep])
    cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no pending FK checks before ALTER
    if method == "disable trigger":
        for table in AUDIT_TABLES:
            cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER ALL")
    else:
        cursor.execute("SET LOCAL session_replication_role = replica")
    cursor.execute(f"TRUNCATE {', '.join(AUDIT_TABLES)}")
    prev = GENESIS_HASH
    for event in events:
        event.action = forge(event.action)
        event.prev_hash = prev
        event.hash = event_hash(prev, event.payload())
        prev = event.hash
        cursor.execute(
            "INSERT INTO governance_auditevent (seq, created_at, actor_id, actor_username, "
            "project_id, action, target_type, target_id, data, prev_hash, hash) VALUES "
            "(%s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s)",
            [
                event.seq,
                event.created_at,
                event.actor_id,
                event.actor_username,
                event.project_id,
                event.action,
                event.target_type,
                event.target_id,
                canonical_json(event.data).decode(),
                event.prev_hash,
                event.hash,
            ],
        )
    cursor.execute(
        "INSERT INTO governance_auditchainhead (id, seq, hash) VALUES (1, %s, %s)",
        [len(events), prev],
    )
    if method == "disable trigger":
        for table in AUDIT_TABLES:
            cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER ALL")
    else:
        cursor.execute("SET LOCAL session_replication_role = origin")


@pytest.mark.parametrize("method", ["disable trigger", "session_replication_role"])
def test_superuser_who_rebuilds_the_whole_log_is_caught_by_the_signed_checkpoint(
    admin, project, method
):
    _events(admin, project)
    audit_checkpoint_sign()
    with connection.cursor() as cursor:
        _rebuild_the_log(cursor, method=method, keep=3, forge=lambda a: f"forged {a}")

    assert audit_chain_verify().ok  # the unkeyed chain alone is fooled
    assert AuditCheckpoint.objects.count() == 0  # the database copies went with it
    with pytest.raises(
        CommandError,
        match=rf"checkpoint of tree size 3 .* from {checkpoint_file()} line 1 fails: "
        r"event #3 has hash .* not the signed .*: the log was rewritten",
    ):
        call_command("verify_audit_log")
    with pytest.raises(CheckpointRefused, match="does not extend the last checkpoint"):
        audit_checkpoint_sign()  # and the rewrite is never signed


def test_truncated_log_with_a_moved_back_head_is_caught(admin, project):
    _events(admin, project)
    audit_checkpoint_sign()
    with connection.cursor() as cursor:
        _rebuild_the_log(cursor, method="disable trigger", keep=2, forge=lambda a: a)

    assert audit_chain_verify().ok
    report = audit_log_verify()
    assert not report.ok
    assert "checkpoint of tree size 3" in report.problems[0]
    assert "the log holds only 2 events: it was truncated" in report.problems[0]


def test_database_copy_catches_a_rewrite_when_the_file_is_lost(admin, project):
    _events(admin, project)
    audit_checkpoint_sign()
    checkpoint_file().unlink()
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("ALTER TABLE governance_auditevent DISABLE TRIGGER ALL")
        cursor.execute("UPDATE governance_auditevent SET hash = repeat('e', 64) WHERE seq = 3")
        cursor.execute("ALTER TABLE governance_auditevent ENABLE TRIGGER ALL")
        cursor.execute("UPDATE governance_auditchainhead SET seq = 4, hash = repeat('e', 64)")

    report = audit_log_verify()

    assert report.missing_outside == 1
    assert any("from database checkpoint id" in p and "rewritten" in p for p in report.problems)


def test_forged_line_in_the_checkpoint_file_is_named(admin, project):
    _events(admin, project)
    audit_checkpoint_sign()
    entry = _file_entries()[0] | {"tree_size": 2}
    with checkpoint_file().open("a") as handle:
        handle.write(json.dumps(entry) + "\n")
    stranger = Ed25519PrivateKey.generate()
    other = checkpoint_sign(stranger, tree_size=3, head_hash="e" * 64, timestamp="2026-01-01")
    with checkpoint_file().open("a") as handle:
        handle.write(json.dumps(other) + "\n")

    problems = audit_log_verify().problems

    assert len(problems) == 2
    assert f"{checkpoint_file()} line 2: its signature does not verify" in problems[0]
    assert f"{checkpoint_file()} line 3: it is signed by key" in problems[1]
    assert "not a trusted key" in problems[1]


def test_beat_runs_the_checkpoint_task(admin, project):
    schedule = {entry["task"]: entry for entry in settings.CELERY_BEAT_SCHEDULE.values()}

    entry = schedule["governance.audit_checkpoint_sign"]

    assert entry["schedule"] == settings.PORTAL_AUDIT_CHECKPOINT_SECONDS > 0
    celery_app.loader.import_default_modules()
    assert "governance.audit_checkpoint_sign" in celery_app.tasks
    _events(admin, project)
    audit_checkpoint_sign_task.run()
    assert AuditCheckpoint.objects.get().tree_size == 3


def test_checkpoint_key_is_configured_apart_or_falls_back_to_the_dossier_key(settings):
    dossier_key, checkpoint_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    settings.PORTAL_DEV_KEYS = False
    settings.PORTAL_DOSSIER_SIGNING_KEY = private_key_pem(dossier_key).decode()
    keys.clear_caches()
    try:
        fallback = keys.audit_checkpoint_key().public_key()
        settings.PORTAL_AUDIT_CHECKPOINT_KEY = private_key_pem(checkpoint_key).decode()
        keys.clear_caches()
        own = keys.audit_checkpoint_key().public_key()
    finally:
        keys.clear_caches()

    assert fallback == dossier_key.public_key()
    assert own == checkpoint_key.public_key()


def test_a_malformed_checkpoint_key_stops_the_system_checks(settings):
    settings.PORTAL_AUDIT_CHECKPOINT_KEY = "not a key"
    keys.clear_caches()
    try:
        errors = keys_configured(None)
    finally:
        keys.clear_caches()

    assert [e.id for e in errors] == ["governance.E003"]
    assert "PORTAL_AUDIT_CHECKPOINT_KEY is not a readable" in errors[0].msg


def _bundle_with_checkpoint(checkpoint, events=b""):
    files = {"audit/events.jsonl": events, AUDIT_CHECKPOINT: json_bytes(checkpoint)}
    return bundle_build(files, {"audit_chain_head": {"seq": 0}}, Ed25519PrivateKey.generate())


def test_bundle_verifier_checks_the_embedded_checkpoints_signer():
    portal = Ed25519PrivateKey.generate()
    good = checkpoint_sign(portal, tree_size=9, head_hash="a" * 64, timestamp="2026-01-01")
    forged = checkpoint_sign(
        Ed25519PrivateKey.generate(), tree_size=9, head_hash="b" * 64, timestamp="2026-01-01"
    )

    assert verify_bundle(
        _bundle_with_checkpoint(good), trusted_checkpoint_keys=[portal.public_key()]
    ).ok
    report = verify_bundle(
        _bundle_with_checkpoint(forged), trusted_checkpoint_keys=[portal.public_key()]
    )
    assert not report.ok
    assert report.problem.startswith(f"{AUDIT_CHECKPOINT}: the checkpoint of tree size 9")
    assert "not a trusted key" in report.problem
    tampered = _bundle_with_checkpoint(good | {"head_hash": "c" * 64})
    assert "signature does not verify" in verify_bundle(tampered).problem


def _files(data):
    archive = zipfile.ZipFile(io.BytesIO(data))
    return {name: archive.read(name) for name in archive.namelist()}


def test_dossier_embeds_the_latest_checkpoint_and_its_verifier_holds_the_chain_to_it(
    project, engineer, compliance
):
    lineage = lineage_fixture(project, engineer, n_items=4)
    checkpoint = audit_checkpoint_sign()
    dossier = dossier_request(actor=compliance, version=lineage.version, run_now=True)
    with open(dossier.file_path, "rb") as handle:
        data = handle.read()

    files = _files(data)
    assert json.loads(files[AUDIT_CHECKPOINT]) == checkpoint.entry()
    predicate = json.loads(files["manifest.json"])["predicate"]
    assert predicate["audit_checkpoint"]["tree_size"] == checkpoint.tree_size
    assert "signed checkpoint of its whole audit log" in files["dossier.html"].decode()
    report = dossier_verify(data=data)
    assert report.ok, report.problem
    assert any(f"checkpoint of tree size {checkpoint.tree_size}" in p for p in report.passed)

    with connection.cursor() as cursor:
        _rebuild_the_log(
            cursor, method="disable trigger", keep=checkpoint.tree_size, forge=lambda a: a + "!"
        )
    report = dossier_verify(data=data)
    assert not report.ok
    assert "the audit log was rewritten or truncated" in report.problem
    checkpoint_file().unlink()  # the attacker reached the file too; the reader's copy is left
    kept = checkpoint_file().parent / "from_the_dossier.json"
    kept.write_bytes(files[AUDIT_CHECKPOINT])
    with pytest.raises(CommandError, match=r"from_the_dossier\.json fails: event #\d+ has hash"):
        call_command("verify_audit_log", "--checkpoint", str(kept))
