"""Every filter parameter of the API's list endpoints and of the pages, given a value of
the wrong type, answers 400 (naming the parameter) or an ordinary page, never a 500."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from core.models import Role
from tests.governance.factories import lineage_fixture
from tests.portal.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

BAD_VALUES = ["abc", "1.5", "9" * 30]

# (url name, kwargs from the lineage, query parameters); ids the endpoint parses as integers
# are named in INTEGER_PARAMS and must be refused with a 400 that names them.
API = [
    ("annotation-api:api-items", "project", ["state", "dataset", "is_gold", "external_id"]),
    ("annotation-api:api-items", "project", ["limit", "offset"]),
    ("annotation-api:api-disagreements", "project", ["state", "method", "dataset"]),
    ("annotation-api:api-datasets", "project", ["limit", "offset"]),
    ("annotation-api:api-snapshots", "project", ["limit", "offset"]),
    ("annotation-api:api-snapshot", "snapshot", ["compare"]),
    ("annotation-api:api-checks", "project", ["limit", "offset"]),
    ("training-api:api-jobs", "project", ["limit", "offset", "after"]),
    ("training-api:api-job-events", "job", ["after", "limit"]),
    ("training-api:api-job-checkpoints", "job", ["limit"]),
    ("training-api:api-model-versions", "project", ["limit"]),
    ("training-api:api-base-models", "project", ["limit"]),
    ("api-audit-events", "project", ["action", "actor_username", "target_type", "target_id"]),
    ("api-audit-events", "project", ["limit", "offset"]),
    ("api-memberships", "project", ["limit"]),
    ("api-projects", None, ["limit", "offset"]),
    ("evaluation-api:api-generation-jobs", "project", ["limit", "offset", "cursor"]),
    ("evaluation-api:api-prompt-sets", "project", ["name", "source", "adversarial", "general"]),
    ("evaluation-api:api-contestants", "project", ["label", "model_version", "base_model"]),
    ("evaluation-api:api-campaigns", "project", ["name", "status", "prompt_set", "contestant"]),
    (
        "evaluation-api:api-generation-outputs",
        "project",
        ["generation_job", "contestant", "prompt_set", "campaign", "cursor", "limit"],
    ),
    ("training-api:api-base-model-registrations", "project", ["status", "name", "cursor"]),
]
PAGES = [
    ("annotation:disagreements", "project", ["state", "method", "dataset", "format"]),
    ("annotation:datasets", "project", ["page"]),
    ("annotation:snapshot", "snapshot", ["compare"]),
    ("annotation:curation", "project", ["page"]),
    ("training:jobs", "project", ["page"]),
    ("training:job", "job", ["part"]),
    ("training:versions", "project", ["page"]),
    ("governance:home", None, ["q"]),
    ("governance:audit", None, ["project", "actor", "action", "since", "until", "page"]),
    ("governance:access_log", None, ["page"]),
    ("evaluation:overview", "project", ["page"]),
    ("evaluation:outputs", "project", ["generation_job", "contestant", "campaign", "page"]),
]
INTEGER_PARAMS = {"dataset"}


@pytest.fixture
def lineage(project):
    user = UserFactory(username="everyone")
    for role in (Role.ADMIN, Role.ENGINEER, Role.COMPLIANCE, Role.ADJUDICATOR):
        MembershipFactory(project=project, role=role, user=user)
    fixture = lineage_fixture(project, user, n_items=5)
    fixture.user = user
    return fixture


def _url(name, scope, lineage, project):
    if scope is None:
        return reverse(name)
    if scope == "project":
        return reverse(name, args=[project.pk])
    if scope == "snapshot":
        return reverse(name, args=[project.pk, lineage.snapshot.pk])
    return reverse(name, args=[project.pk, lineage.job.pk])


def _problems(get, table, lineage, project):
    """Every (url, parameter, value) that gave a 500, or for an id parameter anything but a
    400 naming it."""
    problems = []
    for name, scope, params in table:
        url = _url(name, scope, lineage, project)
        for param in params:
            for value in BAD_VALUES:
                response = get(url, {param: value})
                if response.status_code >= 500 or (
                    param in INTEGER_PARAMS
                    and (response.status_code != 400 or param not in response.content.decode())
                ):
                    problems.append((name, param, value, response.status_code))
    return problems


def test_api_filters_refuse_values_of_the_wrong_type(lineage, project):
    api = APIClient()
    api.force_authenticate(lineage.user)

    assert _problems(api.get, API, lineage, project) == []


def test_page_filters_refuse_values_of_the_wrong_type(client, lineage, project):
    client.force_login(lineage.user)

    assert _problems(client.get, PAGES, lineage, project) == []
    assert (
        _problems(
            lambda url, query: client.get(url, {**query, "format": "csv"}), PAGES, lineage, project
        )
        == []
    )
