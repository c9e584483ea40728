"""A canary the deployment's rollback rules took off traffic goes back to candidate through
governance (the portal acting, one audit event), and its dossier says why."""

import io
import zipfile

import pytest
from lxml import html as lxml_html

from core.models import AuditEvent
from core.services.audit import audit_chain_verify
from governance.models import Dossier, StageChange
from governance.services.approvals import signoff_record
from governance.services.dossiers import dossier_request
from governance.services.stages import model_version_canary_withdraw, model_version_stage_change
from serving import hooks
from serving.services.deployments import deployment_place
from serving.services.rollout import rollout_evaluate
from tests.governance.factories import gate_passed, lineage_fixture
from tests.serving.factories import deployment, version
from tests.serving.rollout_support import requests

pytestmark = pytest.mark.django_db


@pytest.fixture
def canary(project, engineer, member_of, compliance):
    """A version promoted to canary the ordinary way: gate passed, sign-offs in."""
    v = lineage_fixture(project, engineer, n_items=3).version
    gate_passed(v, engineer)
    lead = member_of("engineer", "lead")
    for actor, role in ((lead, "engineering_lead"), (compliance, "compliance")):
        signoff_record(actor=actor, version=v, role=role, decision="approve", comment="ok")
    return model_version_stage_change(actor=engineer, version=v, to_stage="canary")


def test_withdraw_moves_a_canary_back_to_candidate_with_one_audit_event(canary):
    before = AuditEvent.objects.count()

    moved = model_version_canary_withdraw(
        version=canary, reason="error rate over threshold", figures={"canary": {"requests": 50}}
    )

    assert moved.stage == "candidate"
    canary.refresh_from_db()
    assert canary.stage == "candidate"
    change = StageChange.objects.get(model_version=canary, kind=StageChange.Kind.WITHDRAW)
    assert (change.from_stage, change.to_stage, change.actor) == ("canary", "candidate", None)
    assert AuditEvent.objects.count() == before + 1
    event = AuditEvent.objects.get(seq=change.audit_seq)
    assert event.action == "governance.version.withdraw"
    assert event.actor_id is None
    assert event.data["figures"] == {"canary": {"requests": 50}}
    assert audit_chain_verify().ok


def test_withdraw_leaves_a_version_no_longer_in_canary_as_it_is(canary):
    model_version_canary_withdraw(version=canary, reason="first")
    before = AuditEvent.objects.count()

    again = model_version_canary_withdraw(version=canary, reason="second")

    assert again.stage == "candidate"
    assert StageChange.objects.filter(kind=StageChange.Kind.WITHDRAW).count() == 1
    assert AuditEvent.objects.count() == before


def test_governance_registers_the_withdraw_with_serving_at_start_up(canary):
    hooks.canary_withdraw(version=canary, reason="from serving", figures={})

    canary.refresh_from_db()
    assert canary.stage == "candidate"


def test_the_dossier_of_a_rolled_back_canary_shows_the_rollback_and_its_figures(
    project, engineer, compliance, canary
):
    stable = version(project, stage="production")
    dep = deployment(
        project, engineer, name="support-chat", stable=stable,
        rollback_rules={"window_s": 300, "min_requests": 20, "error_rate": 0.05},
    )  # fmt: skip
    dep = deployment_place(actor=engineer, deployment=dep, arm="canary", version=canary)
    requests(dep, "stable", 40)
    requests(dep, "canary", 20, errors=12)
    assert rollout_evaluate(deployment=dep).action == "rolled_back"
    canary.refresh_from_db()

    dossier = dossier_request(actor=compliance, version=canary, run_now=True)

    assert dossier.status == Dossier.Status.SUCCEEDED, dossier.error
    with open(dossier.file_path, "rb") as handle:
        archive = zipfile.ZipFile(io.BytesIO(handle.read()))
    document = lxml_html.fromstring(archive.read("dossier.html").decode())
    (section,) = document.xpath('//section[@id="approvals"]')
    text = " ".join(" ".join(section.itertext()).split())
    assert "Deployment support-chat" in text
    assert "Rolled back automatically" in text
    assert "10 → 0 %" in text
    assert "canary error rate 0.6 exceeds stable's 0 by 0.6 (> 0.05) over 300 s" in text
    assert "canary: 20 requests, error rate 0.6" in text
    assert "stable: 40 requests, error rate 0.0" in text
    assert "breached: error_rate" in text
    assert "withdraw" in text
    (audit,) = document.xpath('//section[@id="audit"]')
    assert "governance.version.withdraw" in " ".join(audit.itertext())
