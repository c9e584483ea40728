import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from annotation.models import AnnotationSettings
from core.models import AuditEvent
from tests.annotation.factories import classification_setup

pytestmark = pytest.mark.django_db

SETTINGS = {
    "labels_per_item": 2,
    "agreement_rule": "unanimous",
    "majority_min": 2,
    "order": "sequential",
    "random_seed": 0,
    "lease_seconds": 600,
    "gold_rate": 0.0,
}


def _api(user):
    api = APIClient()
    api.force_authenticate(user)
    return api


def _url(project):
    return reverse("annotation-api:api-annotation-settings", args=[project.pk])


def _row(project):
    row = AnnotationSettings.objects.get(project=project)
    return {field: getattr(row, field) for field in SETTINGS}


@pytest.fixture
def configured(project):
    classification_setup(project)
    return project


@pytest.mark.parametrize("who", ["engineer", "admin"])
def test_managers_read_and_change_the_settings_the_setup_page_edits(configured, who, request):
    api = _api(request.getfixturevalue(who))

    read = api.get(_url(configured)).json()
    changed = api.patch(
        _url(configured),
        {"labels_per_item": 3, "agreement_rule": "majority", "order": "random", "gold_rate": 0.1},
        format="json",
    )

    assert read == SETTINGS
    assert changed.status_code == 200, changed.content
    expected = {
        **SETTINGS,
        "labels_per_item": 3,
        "agreement_rule": "majority",
        "order": "random",
        "gold_rate": 0.1,
    }
    assert changed.json() == expected
    assert _row(configured) == expected
    event = AuditEvent.objects.get(action="annotation.settings.update")
    assert event.data["labels_per_item"] == {"from": 2, "to": 3}
    assert event.project_id == configured.pk


@pytest.mark.parametrize("who", ["annotator", "adjudicator", "reviewer", "compliance"])
def test_other_roles_cannot_change_the_settings(configured, who, request):
    response = _api(request.getfixturevalue(who)).patch(
        _url(configured), {"lease_seconds": 60}, format="json"
    )

    assert response.status_code == 403
    assert _row(configured) == SETTINGS
    assert not AuditEvent.objects.exists()


def test_a_member_of_another_project_gets_404(configured, outsider):
    response = _api(outsider).patch(_url(configured), {"lease_seconds": 60}, format="json")

    assert response.status_code == 404
    assert _row(configured) == SETTINGS


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"labels_per_item": 21}, "labels_per_item"),
        ({"labels_per_item": "many"}, "labels_per_item"),
        ({"labels_per_item": 10**30}, "labels_per_item"),
        ({"majority_min": 3}, "majority_min"),  # more than k: the service's rule
        ({"agreement_rule": "coin flip"}, "agreement_rule"),
        ({"order": ["random"]}, "order"),
        ({"random_seed": 2**40}, "random_seed"),
        ({"lease_seconds": 5}, "lease_seconds"),
        ({"gold_rate": 0.9}, "gold_rate"),
        ({"gold_rate": "NaN"}, "gold_rate"),
        ({"pseudonym_salt": "x"}, "pseudonym_salt"),
        ({"lease_second": 60}, "lease_second"),
    ],
)
def test_a_bad_setting_is_a_400_naming_it(configured, engineer, body, field):
    response = _api(engineer).patch(_url(configured), body, format="json")

    assert response.status_code == 400, response.content
    assert field in response.json()
    assert _row(configured) == SETTINGS
    assert not AuditEvent.objects.exists()


def test_malformed_json_is_a_400(configured, engineer):
    response = _api(engineer).patch(_url(configured), "{", content_type="application/json")

    assert response.status_code == 400
    assert _row(configured) == SETTINGS
