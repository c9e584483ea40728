import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from core.models import AuditEvent, Role
from tests.evaluation.factories import base_model
from training import services
from training.models import BaseModel, BaseModelRegistration

pytestmark = pytest.mark.django_db

HUB = {"name": "tiny-hub", "source": "hub", "path": "example-org/tiny-model"}


def _api(user):
    api = APIClient()
    api.force_authenticate(user)
    return api


def _registrations(project):
    return reverse("training-api:api-base-model-registrations", args=[project.pk])


def test_an_engineer_registers_a_model_and_follows_the_registration(
    project, engineer, compliance, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        response = _api(engineer).post(_registrations(project), HUB, format="json")
    body = response.json()
    reader = _api(compliance)
    detail = reader.get(
        reverse("training-api:api-base-model-registration", args=[project.pk, body["id"]])
    )
    listed = reader.get(_registrations(project), {"status": "queued", "name": "tiny-hub"})

    assert response.status_code == 201
    assert body["status"] == "queued"
    assert body["path"] == "example-org/tiny-model"
    assert body["base_model"] is None
    assert len(callbacks) == 2  # the task and the push, as from the page
    assert AuditEvent.objects.filter(
        action="training.base_model.registration.start", target_id=str(body["id"])
    ).exists()
    assert detail.json() == body
    assert [r["id"] for r in listed.json()["results"]] == [body["id"]]
    assert reader.get(_registrations(project), {"status": "failed"}).json()["results"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**HUB, "name": ""}, "name"),
        ({**HUB, "name": "n" * 201}, "name"),
        ({**HUB, "source": "ftp"}, "source"),
        ({**HUB, "source": "local", "path": "/etc"}, "path"),
        ({**HUB, "path": "../../etc"}, "path"),
        ({**HUB, "path": "p" * 501}, "path"),
        ({**HUB, "licence": "MIT"}, "licence"),
        ({"packaged": True, "name": "mine"}, "name"),
        ({**HUB, "name": ["tiny"]}, "name"),
    ],
)
def test_a_registration_the_service_or_body_refuses_is_a_400_naming_the_field(
    project, engineer, body, field
):
    response = _api(engineer).post(_registrations(project), body, format="json")

    assert response.status_code == 400
    assert field in response.json()
    assert not BaseModelRegistration.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="training.base_model").exists()


@pytest.mark.parametrize("raw", [b"{not json", b"[]", b'{"name": "x", "path": 1e400}'])
def test_a_malformed_registration_body_is_a_400(project, engineer, raw):
    response = _api(engineer).post(_registrations(project), raw, content_type="application/json")

    assert response.status_code == 400
    assert not BaseModelRegistration.objects.exists()


def test_the_api_refuses_what_the_page_refuses_with_the_same_words(project, engineer, client):
    base_model(project, "tiny-hub")
    client.force_login(engineer)

    api = _api(engineer).post(_registrations(project), HUB, format="json")
    page = client.post(reverse("training:base_models", args=[project.pk]), HUB)

    message = api.json()["name"][0]
    assert message == "A base model named 'tiny-hub' exists already."
    assert message.replace("'", "&#x27;") in page.content.decode()


@pytest.mark.parametrize("role", [Role.COMPLIANCE, Role.ADMIN, Role.REVIEWER])
def test_only_engineers_register_and_a_refusal_leaves_no_trace(project, member_of, role):
    response = _api(member_of(role)).post(_registrations(project), HUB, format="json")

    assert response.status_code == 403
    assert not BaseModelRegistration.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="training.base_model").exists()


def test_another_projects_registrations_and_base_models_are_404(project, other_project, engineer):
    theirs = services.base_model_registration_start(
        actor=other_project.created_by, project=other_project, **HUB
    )
    their_model = base_model(other_project, "theirs")
    shared = BaseModel.objects.create(
        project=None,
        name="shared",
        source="local",
        path="/models/shared",
        architecture="LlamaForCausalLM",
        parameter_count=1,
        tokenizer="tiny",
        weights_sha256="2" * 64,
    )
    mine = base_model(project, "mine")
    api = _api(engineer)

    def status(name, pk):
        return api.get(reverse(f"training-api:{name}", args=[project.pk, pk])).status_code

    assert status("api-base-model-registration", theirs.pk) == 404
    assert status("api-base-model", their_model.pk) == 404
    assert status("api-base-model", shared.pk) == 200
    assert status("api-base-model", mine.pk) == 200
    assert api.get(_registrations(project)).json()["results"] == []


def test_registrations_page_by_cursor(project, engineer):
    made = [
        services.base_model_registration_start(
            actor=engineer, project=project, **{**HUB, "name": f"model-{n}"}
        ).pk
        for n in range(3)
    ]
    api = _api(engineer)

    first = api.get(_registrations(project), {"limit": 2}).json()
    second = api.get(first["next"]).json()
    bad = api.get(_registrations(project), {"cursor": "bogus"})

    assert [r["id"] for r in first["results"] + second["results"]] == made[::-1]
    assert bad.status_code == 400
    assert list(bad.json()) == ["cursor"]


@pytest.mark.parametrize(("field", "size"), [("name", 201), ("license", 101)])
def test_the_page_refuses_an_oversized_value_by_name_not_with_a_500(
    project, engineer, client, field, size
):
    client.force_login(engineer)

    page = client.post(
        reverse("training:base_models", args=[project.pk]), {**HUB, field: "x" * size}
    )

    assert page.status_code == 200
    assert f"At most {size - 1} characters" in page.content.decode()
    assert not BaseModelRegistration.objects.exists()
