"""The governance endpoints that write: sign-offs, stage changes, rollback and use
declarations. They call the compliance screen's services, so these tests check what the API
adds: the roles it lets through, the project an id must belong to, and 400s naming fields."""

import pytest
from rest_framework.test import APIClient

from core.models import AuditEvent, Role, RoleSet
from governance.models import SignOff, StageChange, UseDeclaration
from governance.services.approvals import SIGNOFF_ROLE_NEEDS, signoff_record
from tests.evaluation.factories import model_version
from tests.governance.factories import full_lineage
from tests.portal.factories import ProjectFactory
from training.models import ModelVersion

pytestmark = pytest.mark.django_db


def _api(user) -> APIClient:
    api = APIClient()
    api.force_authenticate(user)
    return api


def _url(project, version, rest: str) -> str:
    return f"/api/v1/projects/{project.pk}/models/{version.pk}/{rest}"


@pytest.fixture
def version(project):
    return model_version(project, "support-bot v1")


def test_the_signers_role_set_is_the_roles_sign_offs_need():
    assert set(RoleSet.SIGNERS) == set(SIGNOFF_ROLE_NEEDS.values())


def test_compliance_signs_off_and_the_approval_shows_what_is_still_missing(
    project, version, compliance
):
    response = _api(compliance).post(
        _url(project, version, "signoffs/"),
        {"role": "compliance", "decision": "approve", "comment": "Licenses read."},
        format="json",
    )

    assert response.status_code == 201, response.json()
    assert response.json()["username"] == compliance.username
    approval = _api(compliance).get(_url(project, version, "signoffs/")).json()
    assert approval["approvals"] == {"compliance": 1}
    assert approval["missing"] == ["1 × Engineering lead"]
    assert approval["satisfied"] is False


def test_a_sign_off_in_a_role_the_caller_lacks_is_refused_and_nothing_is_written(
    project, version, compliance
):
    before = AuditEvent.objects.count()

    response = _api(compliance).post(
        _url(project, version, "signoffs/"),
        {"role": "engineering_lead", "decision": "approve", "comment": "Looks fine."},
        format="json",
    )

    assert response.status_code == 403
    assert SignOff.objects.count() == 0
    assert AuditEvent.objects.count() == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"decision": "approve", "comment": "x"}, "role"),
        ({"role": "compliance", "decision": "maybe", "comment": "x"}, "decision"),
        ({"role": "compliance", "decision": "approve", "comment": "  "}, "comment"),
        ({"role": "compliance", "decision": "approve", "comment": "x", "score": 1}, "score"),
    ],
)
def test_a_malformed_sign_off_is_a_400_naming_the_field(project, version, compliance, body, field):
    response = _api(compliance).post(_url(project, version, "signoffs/"), body, format="json")

    assert response.status_code == 400
    assert field in response.json()
    assert SignOff.objects.count() == 0


def test_a_version_of_another_project_is_not_found_through_this_one(project, compliance, engineer):
    elsewhere = model_version(ProjectFactory(name="Elsewhere"), "theirs")

    for rest, body in [
        ("signoffs/", {"role": "compliance", "decision": "approve", "comment": "x"}),
        ("stage-changes/", {"stage": "canary"}),
    ]:
        caller = compliance if rest == "signoffs/" else engineer
        response = _api(caller).post(_url(project, elsewhere, rest), body, format="json")
        assert response.status_code == 404
    assert _api(engineer).get(_url(project, elsewhere, "declaration/")).status_code == 404
    assert SignOff.objects.count() == StageChange.objects.count() == 0


def test_promotion_without_gate_or_sign_offs_is_a_400_saying_what_is_missing(
    project, version, engineer
):
    response = _api(engineer).post(
        _url(project, version, "stage-changes/"), {"stage": "canary"}, format="json"
    )

    assert response.status_code == 400
    assert "sign-offs missing" in response.json()["detail"][0]
    version.refresh_from_db()
    assert version.stage == ModelVersion.Stage.CANDIDATE


def test_promotion_with_sign_offs_and_a_passed_gate_moves_the_version(
    project, engineer, compliance, reviewer
):
    lineage = full_lineage(project, engineer, compliance, reviewer)  # ends in canary
    version = lineage.lineage.version

    response = _api(engineer).post(
        _url(project, version, "stage-changes/"),
        {"stage": "production", "reason": "Canary held a week."},
        format="json",
    )

    assert response.status_code == 201, response.json()
    assert response.json()["stage"] == "production"
    assert [c["to_stage"] for c in response.json()["changes"]] == ["canary", "production"]
    history = _api(compliance).get(_url(project, version, "stage-changes/")).json()
    assert [c["to_stage"] for c in history] == ["canary", "production"]


def test_compliance_cannot_promote(project, version, compliance):
    response = _api(compliance).post(
        _url(project, version, "stage-changes/"), {"stage": "canary"}, format="json"
    )

    assert response.status_code == 403
    assert StageChange.objects.count() == 0


def test_an_unknown_stage_is_a_400_naming_stage(project, version, engineer):
    response = _api(engineer).post(
        _url(project, version, "stage-changes/"), {"stage": "heaven"}, format="json"
    )

    assert response.status_code == 400
    assert "stage" in response.json()


def test_rollback_with_nothing_in_production_is_refused(project, engineer):
    response = _api(engineer).post(
        f"/api/v1/projects/{project.pk}/rollback/", {"reason": "bad answers"}, format="json"
    )

    assert response.status_code == 400
    assert "nothing to roll back" in response.json()["detail"][0]


def test_a_declaration_is_set_and_read_back(project, version, engineer, compliance):
    url = _url(project, version, "declaration/")
    assert _api(compliance).get(url).json()["declared"] is False

    response = _api(engineer).put(
        url, {"intended_use": "Ticket triage.", "license": "Apache-2.0"}, format="json"
    )

    assert response.status_code == 200, response.json()
    read = _api(compliance).get(url).json()
    assert (read["declared"], read["license"], read["updated_by"]) == (
        True,
        "Apache-2.0",
        engineer.username,
    )


def test_a_declaration_without_its_use_is_a_400_naming_intended_use(project, version, engineer):
    response = _api(engineer).put(
        _url(project, version, "declaration/"),
        {"intended_use": "", "license": "MIT"},
        format="json",
    )

    assert response.status_code == 400
    assert "intended_use" in response.json()
    assert UseDeclaration.objects.count() == 0


def test_a_second_sign_off_by_the_same_person_is_refused(project, version, engineer):
    signoff_record(
        actor=engineer, version=version, role="engineering_lead", decision="approve", comment="ok"
    )

    response = _api(engineer).post(
        _url(project, version, "signoffs/"),
        {"role": "engineering_lead", "decision": "reject", "comment": "changed my mind"},
        format="json",
    )

    assert response.status_code == 400
    assert SignOff.objects.filter(user=engineer).count() == 1
    assert Role.ENGINEER in SIGNOFF_ROLE_NEEDS.values()
