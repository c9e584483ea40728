import csv
import io
import json

import pytest
from django.urls import reverse

from core.models import AuditEvent
from governance.dossier.bundle import zip_bytes
from governance.models import ApprovalPolicy, DossierDownload, SignOff, StageChange, UseDeclaration
from governance.services.dossiers import dossier_request
from tests.governance.factories import gate_passed, lineage_fixture

pytestmark = pytest.mark.django_db


@pytest.fixture
def version(project, engineer):
    return lineage_fixture(project, engineer, n_items=6).version


@pytest.fixture
def built(version, compliance):
    return dossier_request(actor=compliance, version=version, run_now=True)


def test_compliance_finds_versions_with_stage_gate_approvals_and_dossier(
    client, compliance, version, engineer
):
    gate_passed(version, engineer)
    client.force_login(compliance)

    response = client.get(reverse("governance:home"), {"q": "support"})

    body = response.content.decode()
    assert response.status_code == 200
    assert version.name in body
    assert "passed (no regression)" in body
    assert "missing 1 × Compliance officer, 1 × Engineering lead" in body


def test_outsider_cannot_reach_a_version(client, outsider, version):
    client.force_login(outsider)

    assert client.get(reverse("governance:version", args=[version.pk])).status_code == 404
    assert client.get(reverse("governance:home")).content.count(version.name.encode()) == 0


@pytest.mark.parametrize("role", ["annotator", "adjudicator", "reviewer"])
def test_roles_without_governance_access_are_refused(client, member_of, role, version):
    client.force_login(member_of(role))

    assert client.get(reverse("governance:version", args=[version.pk])).status_code == 404
    assert client.get(reverse("governance:audit")).status_code == 403
    assert client.get(reverse("governance:verify")).status_code == 403


def test_compliance_signs_off_with_a_comment(client, compliance, version):
    client.force_login(compliance)

    response = client.post(
        reverse("governance:signoff", args=[version.pk]),
        {"role": "compliance", "decision": "approve", "comment": "Datasheets reviewed."},
    )

    assert response.status_code == 302
    signoff = SignOff.objects.get()
    assert (signoff.user, signoff.role, signoff.comment) == (
        compliance,
        "compliance",
        "Datasheets reviewed.",
    )


def test_signoff_without_comment_is_refused_with_the_reason(client, compliance, version):
    client.force_login(compliance)

    response = client.post(
        reverse("governance:signoff", args=[version.pk]),
        {"role": "compliance", "decision": "approve", "comment": ""},
    )

    assert response.status_code == 400
    assert "comment: A sign-off needs a comment" in response.content.decode()
    assert not SignOff.objects.exists()


def _compliance_writes(version, project):
    """Every write a compliance user might try, with what must stay unchanged."""
    return [
        ("post", reverse("governance:promote", args=[version.pk]), {"stage": "canary"}),
        ("post", reverse("governance:rollback", args=[project.pk]), {"reason": "x"}),
        (
            "post",
            reverse("governance:declare", args=[version.pk]),
            {"intended_use": "x", "license": "MIT"},
        ),
        (
            "post",
            reverse("governance:signoff", args=[version.pk]),
            {"role": "engineering_lead", "decision": "approve", "comment": "x"},
        ),
        ("post", reverse("annotation-api:api-schemas", args=[project.pk]), {}),
        ("post", reverse("annotation-api:api-guidelines", args=[project.pk]), {}),
        ("post", reverse("annotation-api:api-datasets", args=[project.pk]), {}),
    ]


def _state():
    return (
        StageChange.objects.count(),
        UseDeclaration.objects.count(),
        SignOff.objects.count(),
        ApprovalPolicy.objects.count(),
        sorted(AuditEvent.objects.values_list("action", flat=True)),
    )


def test_compliance_write_attempts_are_refused_and_change_nothing(
    client, compliance, version, project, engineer
):
    gate_passed(version, engineer)
    client.force_login(compliance)
    before = _state()

    for method, url, data in _compliance_writes(version, project):
        response = getattr(client, method)(url, data)
        assert response.status_code == 403, (url, response.status_code)

    assert _state() == before


def test_compliance_downloads_and_the_download_is_logged(client, compliance, built):
    client.force_login(compliance)

    response = client.get(
        reverse("governance:dossier_download", args=[built.pk]),
        REMOTE_ADDR="203.0.113.9",
        HTTP_USER_AGENT="pytest",
    )

    data = b"".join(response.streaming_content)
    assert response.status_code == 200
    assert data[:2] == b"PK"
    download = DossierDownload.objects.get()
    assert (download.user, download.ip_address, download.dossier) == (
        compliance,
        "203.0.113.9",
        built,
    )
    event = AuditEvent.objects.get(action="governance.dossier.download")
    assert event.data["ip"] == "203.0.113.9"
    log = client.get(reverse("governance:access_log")).content.decode()
    assert "203.0.113.9" in log


def test_verify_page_accepts_a_good_dossier_and_names_a_changed_file(client, compliance, built):
    client.force_login(compliance)
    with open(built.file_path, "rb") as handle:
        data = handle.read()

    good = client.post(
        reverse("governance:verify"), {"dossier": _upload("dossier.zip", data)}
    ).content.decode()
    archive = __import__("zipfile").ZipFile(io.BytesIO(data))
    files = {n: archive.read(n) for n in archive.namelist()}
    files["lineage.json"] = files["lineage.json"].replace(b'"', b"'", 1)
    bad = client.post(
        reverse("governance:verify"), {"dossier": _upload("bad.zip", zip_bytes(files))}
    ).content.decode()

    assert "Verified: dossier.zip" in good
    assert "Not verified: bad.zip" in bad
    assert "lineage.json: sha256 is" in bad


def _upload(name, data):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data, content_type="application/zip")


def test_audit_log_filters_by_project_actor_action_and_time(
    client, compliance, project, engineer, version
):
    gate_passed(version, engineer)
    dossier_request(actor=compliance, version=version, run_now=True)
    client.force_login(compliance)

    page = client.get(
        reverse("governance:audit"),
        {"project": project.pk, "actor": "comp", "action": "governance.dossier"},
    ).content.decode()
    exported = client.get(
        reverse("governance:audit"),
        {"action": "governance.dossier.request", "export": "csv", "since": "2020-01-01"},
    )

    assert "governance.dossier.request" in page
    assert "training.model_version.create" not in page
    rows = list(csv.DictReader(io.StringIO(exported.content.decode())))
    assert [r["action"] for r in rows] == ["governance.dossier.request"]
    assert json.loads(rows[0]["data"])["model_version"] == version.pk


def test_audit_log_refuses_a_bad_date_with_its_name(client, compliance):
    client.force_login(compliance)

    response = client.get(reverse("governance:audit"), {"since": "yesterday"})

    assert response.status_code == 400
    assert "since: &#x27;yesterday&#x27; is not a date" in response.content.decode()


def test_dossier_status_partial_renders_for_htmx(client, compliance, version, built):
    client.force_login(compliance)

    response = client.get(reverse("governance:version", args=[version.pk]), HTTP_HX_REQUEST="true")

    body = response.content.decode()
    assert body.lstrip().startswith('<div id="dossier"')
    assert "Download dossier" in body


def test_compliance_home_lists_each_version_with_its_signoff_state(
    client, project, other_project, compliance, engineer, version
):
    from governance.services.approvals import signoff_record
    from governance.services.stages import model_version_stage_change
    from tests.evaluation.factories import model_version

    gate_passed(version, engineer)
    for actor, role in ((engineer, "engineering_lead"), (compliance, "compliance")):
        signoff_record(
            actor=actor, version=version, role=role, decision="approve", comment="Checked."
        )
    model_version_stage_change(actor=engineer, version=version, to_stage="canary")
    waiting = model_version(project, "support-bot v2")
    theirs = model_version(other_project, "their secret model")
    client.force_login(compliance)

    body = client.get(reverse("home")).content.decode()

    assert "no model versions to sign off yet" not in body
    card = body[body.index('data-testid="work-compliance"') :]
    rows = card.split('data-testid="signoff-version"')[1:]
    assert len(rows) == 2
    shown = {name: row for row in rows for name in (version.name, waiting.name) if name in row}
    assert reverse("governance:version", args=[version.pk]) in shown[version.name]
    assert "Canary" in shown[version.name]
    assert "sign-offs complete" in shown[version.name]
    assert "awaiting 1 × Compliance officer, 1 × Engineering lead" in shown[waiting.name]
    assert theirs.name not in body


def test_home_shows_no_signoff_list_to_an_engineer(client, engineer, version):
    client.force_login(engineer)

    body = client.get(reverse("home")).content.decode()

    assert 'data-testid="work-compliance"' not in body
    assert 'data-testid="signoff-version"' not in body
