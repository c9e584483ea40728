"""API errors from the live server arrive as exceptions named after their status, with
the API's error body (field names kept)."""

import pytest

from core.models import Role
from tests.portal.factories import MembershipFactory, UserFactory, api_key_for
from training.models import TrainingJob
from tuning_portal import (
    AuthenticationError,
    BadRequestError,
    Client,
    NotFoundError,
    PermissionDeniedError,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_unknown_key_is_an_authentication_error(asgi_server, project):
    client = Client(base_url=asgi_server, api_key="not-a-key", project=project.pk)

    with pytest.raises(AuthenticationError) as raised:
        client.projects.retrieve()

    assert raised.value.status_code == 401
    assert raised.value.body == {"detail": "Invalid token."}


def test_a_role_without_the_right_is_permission_denied(asgi_server, project):
    annotator = UserFactory(username="client-ann")
    MembershipFactory(project=project, user=annotator, role=Role.ANNOTATOR)
    client = Client(base_url=asgi_server, api_key=api_key_for(annotator), project=project.pk)

    with pytest.raises(PermissionDeniedError) as raised:
        client.datasets.list()

    assert raised.value.status_code == 403
    assert "detail" in raised.value.body
    assert client.projects.retrieve().roles == [Role.ANNOTATOR]


def test_another_project_and_a_missing_job_are_not_found(portal, other_project):
    with pytest.raises(NotFoundError) as foreign:
        portal.datasets.list(project=other_project.pk)
    with pytest.raises(NotFoundError) as missing:
        portal.jobs.retrieve(987654)

    assert foreign.value.status_code == missing.value.status_code == 404


def test_a_refused_job_names_each_field(portal, tiny_base_model):
    with pytest.raises(BadRequestError) as raised:
        portal.jobs.create(
            model=tiny_base_model.pk, hyperparameters={"learning_rate": -1, "lora_rank": 8}
        )

    errors = raised.value.errors
    assert raised.value.status_code == 400
    assert "training_file" in errors
    assert "lora_r" in errors["lora_rank"][0]  # the unknown setting, named with a hint
    assert "learning_rate" in errors
    assert "training_file" in raised.value.message
    assert not TrainingJob.objects.exists()
