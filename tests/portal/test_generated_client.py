"""A Python client generated from the OpenAPI schema by openapi-python-client, a maintained
generator, works against the running server: it lists, pages by cursor, writes, and reads
an error's field names, all as typed objects. The generator runs in a virtual environment
of its own (it pins an older typer than we do) and must finish without a warning: each
warning is an operation or answer the generated client would lack."""

import importlib
import json
import sys
import uuid
from datetime import datetime
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.core.management import call_command
from django.test import Client as DjangoClient

from annotation.models import Annotation, AnnotationSettings
from core import services
from core.models import Role
from evaluation.models import GenerationJob
from tests.annotation.factories import DatasetFactory, ItemFactory
from tests.governance.factories import lineage_fixture
from tests.portal.factories import MembershipFactory, UserFactory, api_key_for
from tests.portal.test_api_schema import _path_values, world  # noqa: F401 (a fixture)
from tests.support.servers import ROOT
from tests.support.venvs import check, run, tool_venv

GENERATOR = ROOT / "tests" / "support" / "tools" / "openapi-python-client.txt"
PACKAGE = "portal_openapi_client"
# No formatting hooks (the client is imported, not read). The two downloads answer a zip
# and JSON Lines, correct types the generator does not know: it is told to hand them over
# as bytes and as text.
CONFIG = """\
post_hooks: []
content_type_overrides:
  application/zip: application/octet-stream
  application/x-ndjson: text/plain
"""


@pytest.fixture(scope="session")
def generated(tmp_path_factory, django_db_setup, django_db_blocker):
    venv = tool_venv(GENERATOR)
    work = tmp_path_factory.mktemp("generated-client")
    schema, config = work / "schema.json", work / "config.yaml"
    with django_db_blocker.unblock():
        call_command("spectacular", "--format", "openapi-json", "--file", str(schema))
    config.write_text(CONFIG)
    generate = [str(venv / "bin" / "openapi-python-client"), "generate", "--path", str(schema)]
    result = check(
        run(
            [*generate, "--output-path", str(work / PACKAGE), "--meta", "none"]
            + ["--config", str(config), "--fail-on-warning"]
        )
    )
    assert "Warning" not in result.stdout + result.stderr, result.stdout

    sys.path.insert(0, str(work))
    try:
        yield SimpleNamespace(
            schema=json.loads(schema.read_text()),
            client=importlib.import_module(f"{PACKAGE}.client"),
            models=importlib.import_module(f"{PACKAGE}.models"),
            op=lambda name: importlib.import_module(f"{PACKAGE}.api.v1.{name}"),
        )
    finally:
        sys.path.remove(str(work))
        for name in [m for m in sys.modules if m.split(".")[0] == PACKAGE]:
            del sys.modules[name]


def _cursor(next_url):
    return parse_qs(urlsplit(next_url).query)["cursor"][0] if next_url else None


@pytest.mark.django_db(transaction=True)
def test_a_generated_client_lists_pages_writes_and_reads_errors(generated, asgi_server):
    staff = UserFactory(username="generated", is_staff=True)
    project = services.project_create(name="Generated", created_by=staff)
    MembershipFactory(project=project, user=staff, role=Role.ANNOTATOR)
    lineage = lineage_fixture(project, staff, n_items=5, n_annotators=2, per_item=1)
    ItemFactory(dataset=DatasetFactory(project=project, created_by=staff))  # open for the queue
    stranger = services.project_create(name="Elsewhere", created_by=UserFactory(is_staff=True))
    models, op = generated.models, generated.op
    client = generated.client.AuthenticatedClient(
        base_url=asgi_server,
        token=api_key_for(staff),
        prefix="Token",
        raise_on_unexpected_status=True,  # a status the schema does not document fails here
        timeout=30,
    )

    with client:
        projects = op("v1_projects_list").sync(client=client)
        pages, cursor = [], None
        while not pages or cursor:  # the generated client leaves out a None parameter
            page = op("v1_projects_items_list").sync(
                client=client,
                project_id=project.pk,
                dataset=lineage.dataset.pk,
                limit=2,
                cursor=cursor,
            )
            pages.append(page)
            cursor = _cursor(page.next_)
        task = op("v1_projects_queue_next_create").sync(client=client, project_id=project.pk)
        submitted = op("v1_projects_queue_submit_create").sync(
            client=client,
            project_id=project.pk,
            body=models.SubmitInputRequest(
                lease=task.lease,
                value=models.SubmitInputRequestValue.from_dict({"labels": ["pos"]}),
                submission_id=uuid.uuid4(),
            ),
        )
        jobs = op("v1_projects_fine_tuning_jobs_list").sync(client=client, project_id=project.pk)
        refused = op("v1_projects_annotation_settings_partial_update").sync_detailed(
            client=client,
            project_id=project.pk,
            body=models.PatchedAnnotationSettingsInputRequest(lease_seconds=5),
        )
        hidden = op("v1_projects_retrieve").sync_detailed(client=client, project_id=stranger.pk)

    assert all(isinstance(p, models.ProjectOutput) for p in projects)
    assert [(p.name, sorted(p.roles)) for p in projects] == [
        ("Generated", ["admin", "annotator", "engineer"])
    ]
    assert isinstance(projects[0].created_at, datetime)

    assert [len(p.results) for p in pages] == [2, 2, 1]
    assert all(isinstance(p, models.ItemPage) and p.count == 5 for p in pages)
    assert [i.id for p in pages for i in p.results] == [i.pk for i in lineage.items]
    assert all(isinstance(i.state, models.StateEnum) for p in pages for i in p.results)

    assert isinstance(task, models.TaskOutput)
    assert isinstance(task.expires_at, datetime)
    assert isinstance(submitted, models.SubmitOutput)
    assert submitted.item == task.item
    stored = Annotation.objects.get(pk=submitted.annotation)
    assert (stored.item_id, stored.annotator_id, stored.value) == (
        task.item,
        staff.pk,
        {"labels": ["pos"]},
    )

    assert isinstance(jobs, models.JobList)
    assert jobs.object_ == "list"
    assert [(j.id, j.kind, j.status) for j in jobs.data] == [
        (lineage.job.pk, models.JobKindEnum.SFT, models.StatusEnum.SUCCEEDED)
    ]

    assert refused.status_code == 400
    assert isinstance(refused.parsed, models.FieldErrors)
    assert refused.parsed.additional_keys == ["lease_seconds"]
    assert "30" in refused.parsed["lease_seconds"][0]
    assert AnnotationSettings.objects.get(project=project).lease_seconds == 600

    assert hidden.status_code == 404
    assert isinstance(hidden.parsed, models.ErrorDetail)
    assert hidden.parsed.detail


class DjangoTransport(httpx.BaseTransport):
    """Hands the generated client's requests to Django's test client: in-process, inside
    the test's transaction."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        path = url.path + (f"?{url.query.decode()}" if url.query else "")
        headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
        answer = DjangoClient().generic(
            request.method,
            path,
            data=request.read(),
            content_type=request.headers.get("content-type", ""),
            headers=headers,
        )
        return httpx.Response(
            answer.status_code, headers=dict(answer.items()), content=b"".join(answer)
        )


def _operations(schema_paths):
    for path, operations in schema_paths.items():
        if "get" in operations and path.startswith("/api/v1/"):
            yield path, operations["get"]["operationId"]


def test_the_generated_client_parses_every_read(generated, world, project):  # noqa: F811
    values = _path_values(world, project)
    client = generated.client.AuthenticatedClient(
        base_url="http://testserver",
        token=api_key_for(world.user),
        prefix="Token",
        raise_on_unexpected_status=True,
        httpx_args={"transport": DjangoTransport()},
    )
    generation_job = GenerationJob.objects.filter(project=project).values_list("pk", flat=True)
    # `job_id` names a training job, except under generation-jobs/.
    generation_values = {**values, "job_id": generation_job.first()}
    checked, skipped = [], []
    for path, operation_id in _operations(generated.schema["paths"]):
        here = generation_values if "/generation-jobs/" in path else values
        names = [p.strip("{}") for p in path.split("/") if p.startswith("{")]
        if "fmt" in names or any(here.get(name) is None for name in names):
            skipped.append(path)
            continue
        answer = generated.op(operation_id).sync_detailed(
            client=client, **{name: here[name] for name in names}
        )
        assert answer.status_code < 300, (path, answer.content[:300])
        assert answer.parsed is not None, path
        checked.append(path)

    assert len(checked) >= 25, skipped
