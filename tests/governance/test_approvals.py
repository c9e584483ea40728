import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from core.models import AuditEvent
from core.services.audit import content_hash
from governance.models import SignOff, StageChange
from governance.services.approvals import approval_policy_set, signoff_record
from governance.services.stages import model_version_rollback, model_version_stage_change
from tests.governance.factories import gate_passed, lineage_fixture
from training.models import ModelVersion

pytestmark = pytest.mark.django_db


@pytest.fixture
def version(project, engineer):
    return lineage_fixture(project, engineer, n_items=5).version


@pytest.fixture
def lead(member_of):
    return member_of("engineer", "lead")


def _sign_all(version, lead, compliance):
    signoff_record(
        actor=lead, version=version, role="engineering_lead", decision="approve", comment="ok"
    )
    signoff_record(
        actor=compliance, version=version, role="compliance", decision="approve", comment="ok"
    )


def test_promotion_without_a_gate_run_is_refused(version, engineer, lead, compliance):
    _sign_all(version, lead, compliance)

    with pytest.raises(ValidationError, match="no regression gate has been run"):
        model_version_stage_change(actor=engineer, version=version, to_stage="canary")

    version.refresh_from_db()
    assert version.stage == "candidate"
    assert not StageChange.objects.exists()


def test_promotion_after_a_failed_gate_is_refused(version, engineer, lead, compliance):
    _sign_all(version, lead, compliance)
    gate_passed(version, engineer, passed=False)

    with pytest.raises(ValidationError, match="failed"):
        model_version_stage_change(actor=engineer, version=version, to_stage="canary")
    version.refresh_from_db()
    assert version.stage == "candidate"


def test_promotion_without_the_required_signoffs_is_refused(version, engineer, lead):
    gate_passed(version, engineer)
    signoff_record(
        actor=lead, version=version, role="engineering_lead", decision="approve", comment="ok"
    )

    with pytest.raises(ValidationError, match="sign-offs missing: 1 × Compliance officer"):
        model_version_stage_change(actor=engineer, version=version, to_stage="canary")
    version.refresh_from_db()
    assert version.stage == "candidate"


def test_a_rejection_blocks_promotion(version, engineer, lead, compliance):
    gate_passed(version, engineer)
    signoff_record(
        actor=lead, version=version, role="engineering_lead", decision="approve", comment="ok"
    )
    signoff_record(
        actor=compliance,
        version=version,
        role="compliance",
        decision="reject",
        comment="consent basis unclear",
    )

    with pytest.raises(ValidationError, match="consent basis unclear"):
        model_version_stage_change(actor=engineer, version=version, to_stage="canary")


def test_gate_and_signoffs_let_a_version_go_candidate_canary_production(
    version, engineer, lead, compliance
):
    gate = gate_passed(version, engineer)
    _sign_all(version, lead, compliance)

    with pytest.raises(ValidationError, match="can only move to canary"):
        model_version_stage_change(actor=engineer, version=version, to_stage="production")
    model_version_stage_change(actor=engineer, version=version, to_stage="canary")
    model_version_stage_change(actor=engineer, version=version, to_stage="production")

    version.refresh_from_db()
    assert version.stage == "production"
    changes = list(StageChange.objects.values_list("to_stage", "gate_run_id"))
    assert changes == [("canary", gate.pk), ("production", gate.pk)]
    actions = list(AuditEvent.objects.values_list("action", flat=True))
    assert actions.count("governance.version.promote") == 2
    assert "training.model_version.stage" not in actions


def test_project_policy_sets_the_required_signoffs(project, version, engineer, admin, compliance):
    gate_passed(version, engineer)
    approval_policy_set(actor=admin, project=project, required={"compliance": 1})
    signoff_record(
        actor=compliance, version=version, role="compliance", decision="approve", comment="ok"
    )

    promoted = model_version_stage_change(actor=engineer, version=version, to_stage="canary")

    assert promoted.stage == "canary"


def test_rollback_restores_the_previous_production_version_in_one_action(
    project, engineer, lead, compliance
):
    first = lineage_fixture(project, engineer, n_items=3).version
    second = ModelVersion.objects.create(
        project=project,
        name="support-bot v2",
        base_model=first.base_model,
        kind="adapter",
        path="/models/v2",
        base_weights_sha256=first.base_weights_sha256,
    )
    for v in (first, second):
        gate_passed(v, engineer)
        _sign_all(v, lead, compliance)
        model_version_stage_change(actor=engineer, version=v, to_stage="canary")
        model_version_stage_change(actor=engineer, version=v, to_stage="production")
    first.refresh_from_db()
    assert first.stage == "archived"

    restored = model_version_rollback(actor=engineer, project=project, reason="v2 hallucinates")

    second.refresh_from_db()
    assert restored.pk == first.pk
    assert restored.stage == "production"
    assert second.stage == "archived"
    event = AuditEvent.objects.filter(action="governance.version.rollback").get()
    assert event.data == {
        "from": second.pk,
        "to": first.pk,
        "reason_sha256": content_hash("v2 hallucinates"),
    }


def test_rollback_with_no_earlier_production_version_is_refused(project, engineer):
    with pytest.raises(ValidationError, match="nothing to roll back"):
        model_version_rollback(actor=engineer, project=project, reason="test")


def test_signoff_needs_a_comment_and_the_matching_role(version, compliance, lead):
    with pytest.raises(ValidationError, match="comment"):
        signoff_record(
            actor=compliance, version=version, role="compliance", decision="approve", comment=" "
        )
    with pytest.raises(PermissionDenied):
        signoff_record(
            actor=compliance,
            version=version,
            role="engineering_lead",
            decision="approve",
            comment="ok",
        )
    assert not SignOff.objects.exists()


def test_one_person_signs_a_version_once(version, member_of):
    both = member_of("engineer", "both")
    from tests.portal.factories import MembershipFactory

    MembershipFactory(project=version.project, role="compliance", user=both)
    signoff_record(
        actor=both, version=version, role="engineering_lead", decision="approve", comment="ok"
    )

    with pytest.raises(ValidationError, match="already signed"):
        signoff_record(
            actor=both, version=version, role="compliance", decision="approve", comment="ok"
        )


@pytest.mark.parametrize("role", ["annotator", "adjudicator", "reviewer", "compliance"])
def test_only_engineers_and_admins_promote(version, member_of, role, engineer, lead, compliance):
    gate_passed(version, engineer)
    _sign_all(version, lead, compliance)
    user = compliance if role == "compliance" else member_of(role)

    with pytest.raises(PermissionDenied):
        model_version_stage_change(actor=user, version=version, to_stage="canary")
    version.refresh_from_db()
    assert version.stage == "candidate"
