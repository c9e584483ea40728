import csv
import io
import json
import zipfile

import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError

from core import keys
from core.checks import missing_libraries
from core.models import AuditEvent
from governance.dossier.bundle import zip_bytes
from governance.dossier.verify import verify_bundle
from governance.models import Dossier
from governance.services.approvals import signoff_record, use_declaration_set
from governance.services.dossiers import dossier_request, dossier_verify
from tests.governance.factories import gate_passed, lineage_fixture

pytestmark = pytest.mark.django_db


@pytest.fixture
def lineage(project, engineer):
    fixture = lineage_fixture(project, engineer)
    fixture.gate_run = gate_passed(fixture.version, engineer)
    use_declaration_set(
        actor=engineer,
        version=fixture.version,
        intended_use="Drafting replies to customer support tickets, reviewed by staff.",
        limitations="English only.",
        license="Apache-2.0",
        commercial_use=True,
    )
    return fixture


def _build(version, actor):
    dossier = dossier_request(actor=actor, version=version, run_now=True)
    assert dossier.status == Dossier.Status.SUCCEEDED, dossier.error
    with open(dossier.file_path, "rb") as handle:
        return dossier, handle.read()


def _files(data):
    archive = zipfile.ZipFile(io.BytesIO(data))
    return {name: archive.read(name) for name in archive.namelist()}


def test_dossier_holds_every_part_and_verifies(lineage, compliance):
    dossier, data = _build(lineage.version, compliance)

    files = _files(data)
    for name in (
        "manifest.json",
        "manifest.dsse.json",
        "public_key.pem",
        "dossier.html",
        "dossier.pdf",
        "model_card.md",
        "lineage.json",
        "annotation/disagreements.csv",
        "evaluation/gates.json",
        "training/config.yaml",
        "audit/events.jsonl",
    ):
        assert name in files, name
    assert files["dossier.pdf"].startswith(b"%PDF-")
    assert dossier_verify(data=data).ok


def test_manifest_predicate_matches_the_database(lineage, compliance):
    _, data = _build(lineage.version, compliance)

    predicate = json.loads(_files(data)["manifest.json"])["predicate"]

    assert predicate["checkpoint_sha256"] == lineage.version.checkpoint_sha256
    assert predicate["base_model"]["weights_sha256"] == lineage.base_model.weights_sha256
    assert predicate["model_version"]["id"] == lineage.version.pk
    last = AuditEvent.objects.filter(target_type="training.modelversion").order_by("-seq")
    head = predicate["audit_chain_head"]
    assert AuditEvent.objects.get(seq=head["seq"]).hash == head["hash"]
    assert head["seq"] >= (last.first().seq if last.exists() else 0)
    assert predicate["signing_key"]["keyid"] == keys.signing_key_id()
    assert predicate["snapshots"][0]["manifest_sha256"] == lineage.snapshot.manifest_sha256
    assert predicate["datasets"][0]["file_sha256"] == lineage.dataset.file_sha256


def test_training_config_seed_and_gate_results_come_from_the_database(lineage, compliance):
    _, data = _build(lineage.version, compliance)
    files = _files(data)

    config = yaml.safe_load(files["training/config.yaml"])[lineage.job.name]
    gates = json.loads(files["evaluation/gates.json"])

    assert config["seed"] == 1234
    assert config["config"] == lineage.job.config
    assert [g["id"] for g in gates] == [lineage.gate_run.pk]
    assert gates[0]["passed"] is True
    card = files["model_card.md"].decode()
    meta = yaml.safe_load(card.split("---\n")[1])
    assert meta["license"] == "apache-2.0"
    assert meta["base_model"] == "tiny-llama"


def test_annotation_figures_and_disagreements_use_pseudonyms_only(lineage, compliance):
    _, data = _build(lineage.version, compliance)
    files = _files(data)

    rows = list(csv.DictReader(io.StringIO(files["annotation/disagreements.csv"].decode())))
    figures = json.loads(files["annotation/figures.json"])[0]

    # Every 5th of 20 items disagreed; one row per label, so two rows for each of them.
    assert len(rows) == 8
    by_item = {}
    for row in rows:
        by_item.setdefault(row["item"], []).append(row)
    assert len(by_item) == 4
    for item_rows in by_item.values():
        assert sorted(r["label"] for r in item_rows) == ["neg", "pos"]
        assert len({r["annotator"] for r in item_rows}) == 2
        assert {r["gold"] for r in item_rows} == {"pos"}
    assert not any("[" in cell or "{" in cell for row in rows for cell in row.values())
    assert figures["annotations"] == 40
    assert figures["annotators"] == 3
    assert figures["adjudicated"] == 4
    for name in ("annotator-0", "annotator-1", "annotator-2"):
        assert not any(name.encode() in body for body in files.values()), name
    assert all(row["decided_by"].startswith("A-") for row in rows)


def test_building_twice_gives_identical_bytes_and_the_cache_is_reused(lineage, compliance):
    first, data = _build(lineage.version, compliance)
    Dossier.objects.filter(pk=first.pk).update(status=Dossier.Status.FAILED)  # force a rebuild

    second, again = _build(lineage.version, compliance)
    cached = dossier_request(actor=compliance, version=lineage.version)

    assert second.pk != first.pk
    assert again == data
    assert cached.pk == second.pk


def test_new_signoff_changes_the_inputs_and_the_dossier(lineage, compliance):
    first, _ = _build(lineage.version, compliance)

    signoff_record(
        actor=compliance,
        version=lineage.version,
        role="compliance",
        decision="approve",
        comment="Datasheets and licenses reviewed.",
    )
    second, data = _build(lineage.version, compliance)

    assert second.inputs_sha256 != first.inputs_sha256
    approvals = json.loads(_files(data)["approvals.json"])
    assert approvals["signoffs"][0]["comment"] == "Datasheets and licenses reviewed."


def test_license_conflict_is_reported(lineage, compliance):
    lineage.dataset.license = "CC-BY-NC-4.0"
    lineage.dataset.save()

    dossier, data = _build(lineage.version, compliance)

    assert any("non-commercial" in w for w in dossier.warnings)
    assert b"non-commercial, but the declared use is commercial" in _files(data)["dossier.html"]


def test_verify_command_passes_a_good_dossier_and_names_a_changed_file(
    lineage, compliance, tmp_path, capsys
):
    _, data = _build(lineage.version, compliance)
    good = tmp_path / "good.zip"
    good.write_bytes(data)
    files = _files(data)
    files["model_card.md"] = files["model_card.md"].replace(b"support", b"sUpport", 1)
    bad = tmp_path / "bad.zip"
    bad.write_bytes(zip_bytes(files))

    call_command("verify_dossier", str(good))
    assert "verified" in capsys.readouterr().out
    with pytest.raises(CommandError, match=r"model_card\.md: sha256 is"):
        call_command("verify_dossier", str(bad))


def test_changing_any_sampled_byte_of_a_real_dossier_fails(lineage, compliance):
    _, data = _build(lineage.version, compliance)
    trusted = [keys.signing_key().public_key()]
    step = max(1, len(data) // 400)

    for index in list(range(0, len(data), step)) + [len(data) - 1]:
        tampered = bytearray(data)
        tampered[index] ^= 0x20
        assert not verify_bundle(bytes(tampered), trusted_keys=trusted).ok, index


def test_excerpt_not_in_this_portals_chain_is_refused(lineage, compliance):
    _, data = _build(lineage.version, compliance)
    head = json.loads(_files(data)["manifest.json"])["predicate"]["audit_chain_head"]

    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("ALTER TABLE governance_auditevent DISABLE TRIGGER USER")
        cursor.execute(
            "UPDATE governance_auditevent SET hash = %s WHERE seq = %s", ["e" * 64, head["seq"]]
        )
        cursor.execute("ALTER TABLE governance_auditevent ENABLE TRIGGER USER")

    report = dossier_verify(data=data)
    assert not report.ok
    assert f"audit event #{head['seq']} in this portal's chain has hash" in report.problem


def test_request_enqueues_the_build_only_after_commit(
    lineage, compliance, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        dossier = dossier_request(actor=compliance, version=lineage.version)

    assert dossier.status == Dossier.Status.QUEUED
    assert len(callbacks) == 1
    assert AuditEvent.objects.filter(action="governance.dossier.request").count() == 1
    again = dossier_request(actor=compliance, version=lineage.version)
    assert again.pk == dossier.pk  # the queued build with the same inputs is reused


def test_a_build_abandoned_by_a_stopped_worker_is_requeued_and_then_builds(
    lineage, compliance, django_capture_on_commit_callbacks
):
    from governance.services.dossiers import (
        dossier_build_run,
        dossier_builds_requeue_abandoned,
    )

    with django_capture_on_commit_callbacks():  # the build task is not run here
        dossier = dossier_request(actor=compliance, version=lineage.version)
    Dossier.objects.filter(pk=dossier.pk).update(status="running", progress=40, step="PDF")

    with django_capture_on_commit_callbacks() as callbacks:
        requeued = dossier_builds_requeue_abandoned(actor=None, project=lineage.version.project)

    assert requeued == 1
    assert len(callbacks) == 1
    dossier.refresh_from_db()
    assert (dossier.status, dossier.progress) == ("queued", 0)
    assert AuditEvent.objects.filter(action="governance.dossier.requeue").exists()
    assert dossier_build_run(dossier_id=dossier.pk).status == "succeeded"


def test_the_system_checks_name_a_missing_pdf_library():
    # Installed here (make test installs it): without it the rebuild test above fails.
    assert missing_libraries() == []
    warnings = missing_libraries([("no-such-portal-library", "governance.W001", "Install it.")])
    assert [w.id for w in warnings] == ["governance.W001"]
    assert "libno-such-portal-library is not installed" in warnings[0].msg
