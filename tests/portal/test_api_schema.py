"""The OpenAPI schema says what the API answers: every success has a documented body, and
real answers validate against it (a list documented as an array that answers an object
fails here). A client that knows only the schema lists projects and items on the running
server with an API key."""

import copy
import uuid

import httpx
import jsonschema
import pytest
from django.conf import settings
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from annotation import services as annotation_services
from annotation.models import DatasetUpload
from core import services
from core.models import Role
from evaluation.models import GenerationJob
from tests.annotation.factories import DatasetFactory, ItemFactory, classification_setup
from tests.evaluation.factories import build_campaign
from tests.governance.factories import lineage_fixture
from tests.portal.factories import MembershipFactory, UserFactory, api_key_for

METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture(scope="module")
def schema(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        return SchemaGenerator().get_schema(request=None, public=True)


def test_every_success_response_documents_its_body(schema):
    missing = [
        (method.upper(), path, code)
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if method in METHODS
        for code, response in operation["responses"].items()
        if code.startswith("2") and code != "204" and not response.get("content")
    ]

    assert missing == []


def test_every_operation_has_its_own_id(schema):
    ids = [
        operation["operationId"]
        for operations in schema["paths"].values()
        for method, operation in operations.items()
        if method in METHODS
    ]

    assert len(ids) == len(set(ids))
    assert not [i for i in ids if i[-1].isdigit()]  # drf-spectacular's collision suffix


# --- real answers against the schema -------------------------------------------------------


def _json_schema(node, components, depth=0):
    """An OpenAPI 3.0 schema as JSON Schema: references inlined, `nullable` as a null
    alternative, and objects closed (a field the schema does not name is an error)."""
    if depth > 40:
        return {}
    if isinstance(node, list):
        return [_json_schema(n, components, depth + 1) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return _json_schema(components[node["$ref"].rsplit("/", 1)[1]], components, depth + 1)
    out = {k: _json_schema(v, components, depth + 1) for k, v in node.items()}
    if out.get("type") == "object" and "properties" in out:
        out.setdefault("additionalProperties", False)
    if "properties" in node:
        out["properties"] = {
            name: _json_schema(sub, components, depth + 1)
            for name, sub in node["properties"].items()
        }
    if "oneOf" in out:  # blank-or-email and the like overlap where formats go unchecked
        out["anyOf"] = out.pop("oneOf")
    if out.pop("nullable", False):
        return {"anyOf": [out, {"type": "null"}]}
    return out


def _check(schema, path, method, response):
    operation = schema["paths"][path][method]
    documented = operation["responses"].get(str(response.status_code))
    assert documented is not None, (method, path, response.status_code, response.content[:300])
    if response.status_code == 204:
        return
    body_schema = documented["content"]["application/json"]["schema"]
    components = schema["components"]["schemas"]
    jsonschema.validate(response.json(), _json_schema(copy.deepcopy(body_schema), components))


@pytest.fixture
def world(db, project):
    user = UserFactory(username="everyone", is_staff=True)
    for role in Role.values:
        MembershipFactory(project=project, role=role, user=user)
    fixture = lineage_fixture(project, user, n_items=6)
    fixture.user = user
    fixture.key = services.api_key_create(user=user, name="schema")[0]
    fixture.campaign = build_campaign(user, project, prompts=2, contestants=2)[0]
    return fixture


def _path_values(world, project):
    check = annotation_services.quality.quality_check_start(
        actor=world.user, project=project, kind="duplicates", dataset=world.dataset
    )
    upload = DatasetUpload.objects.create(
        project=project, created_by=world.user, file_name="rows.jsonl"
    )
    return {
        "project_id": project.pk,
        "dataset_id": world.dataset.pk,
        "snapshot_id": world.snapshot.pk,
        "job_id": world.job.pk,
        "version_id": world.version.pk,
        "check_id": check.pk,
        "key_id": world.key.pk,
        "user_id": world.user.pk,
        "membership_id": world.user.memberships.filter(role=Role.ANNOTATOR).get().pk,
        "upload_id": upload.pk,
        "campaign_id": world.campaign.pk,
    }


def test_every_read_answers_what_the_schema_says(schema, world, project):
    api = APIClient()
    api.force_authenticate(world.user)
    values = _path_values(world, project)
    generation_job_id = (
        GenerationJob.objects.filter(project=project).values_list("pk", flat=True).first()
    )
    checked, skipped = [], []
    for path, operations in schema["paths"].items():
        if "get" not in operations or not path.startswith("/api/v1/"):
            continue
        names = [p.strip("{}") for p in path.split("/") if p.startswith("{")]
        # `job_id` names a training job, except under generation-jobs/.
        here = {**values, "job_id": generation_job_id} if "/generation-jobs/" in path else values
        if any(here.get(name) is None for name in names):
            skipped.append(path)
            continue
        url = path.format(**here)
        if "{fmt}" in path:
            continue  # JSON Lines, not JSON
        response = api.get(url)
        assert response.status_code < 300, (url, response.content[:300])
        _check(schema, path, "get", response)
        checked.append(path)

    assert len(checked) >= 25, skipped
    for must in ("/items/", "/memberships/", "/audit-events/", "/agreement/", "/disagreements/"):
        assert any(p.endswith(must) for p in checked), must


def test_the_new_writes_answer_what_the_schema_says(schema, world, project):
    api = APIClient()
    api.force_authenticate(world.user)
    newcomer = UserFactory(username="newcomer")
    p = f"/api/v1/projects/{project.pk}"
    membership = world.user.memberships.get(role=Role.REVIEWER)
    calls = [
        ("post", "/api/v1/users/", {"username": "made", "password": "a-long-pass-phrase"}),
        ("patch", "/api/v1/users/{user_id}/", {"first_name": "N"}, {"user_id": newcomer.pk}),
        ("patch", "/api/v1/projects/{project_id}/", {"description": "new"}),
        (
            "post",
            "/api/v1/projects/{project_id}/memberships/",
            {"username": "newcomer", "role": "annotator"},
        ),
        (
            "patch",
            "/api/v1/projects/{project_id}/memberships/{membership_id}/",
            {"role": "compliance"},
            {"membership_id": membership.pk},
        ),
        ("patch", "/api/v1/projects/{project_id}/annotation/settings/", {"lease_seconds": 90}),
    ]
    for method, path, body, *extra in calls:
        url = path.format(project_id=project.pk, **(extra[0] if extra else {}))
        response = getattr(api, method)(url, body, format="json")
        assert response.status_code < 300, (url, response.content)
        _check(schema, path, method, response)

    ItemFactory(dataset=DatasetFactory(project=project, created_by=world.user))
    task = api.post(f"{p}/queue/next/", format="json")
    assert task.status_code == 200, task.content
    submitted = api.post(
        f"{p}/queue/submit/",
        {
            "lease": task.json()["lease"],
            "value": {"labels": ["pos"]},
            "submission_id": str(uuid.uuid4()),
            "next": True,
        },
        format="json",
    )
    _check(schema, "/api/v1/projects/{project_id}/queue/submit/", "post", submitted)


# --- a client that knows only the schema, against the running server -----------------------


@pytest.mark.django_db(transaction=True)
def test_a_schema_only_client_lists_projects_and_items_with_a_key(asgi_server):
    staff = UserFactory(username="scripted", is_staff=True)
    project = services.project_create(name="Scripted", created_by=staff)
    classification_setup(project)
    dataset = DatasetFactory(project=project, created_by=staff)
    made = [ItemFactory(dataset=dataset).pk for _ in range(5)]
    key = api_key_for(staff)

    with httpx.Client(
        base_url=asgi_server, headers={"Authorization": f"Token {key}"}, timeout=30
    ) as http:
        doc = http.get("/api/schema/", params={"format": "json"}).json()
        projects_path = next(p for p in doc["paths"] if p == "/api/v1/projects/")
        items_path = next(p for p in doc["paths"] if p.endswith("/items/"))
        projects = http.get(projects_path).json()
        url, query, seen = items_path.format(project_id=project.pk), {"limit": 2}, []
        while url:
            page = http.get(url, params=query).json()
            seen += [row["id"] for row in page["results"]]
            url, query = page["next"], None
        too_big = http.post(
            "/api/v1/users/",
            content=b'{"username": "' + b"x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1) + b'"}',
            headers={"Content-Type": "application/json"},
        )

    assert [p["name"] for p in projects] == ["Scripted"]
    assert projects[0]["roles"] == ["engineer", "admin"]
    assert seen == made
    assert too_big.status_code == 413, (too_big.status_code, too_big.headers)
