"""Every row of tests/role_matrix.py, called as each role, as a member of another project and
as an anonymous visitor; and every project-scoped URL has its rows there."""

import tempfile
import uuid
from functools import cached_property
from itertools import product
from pathlib import Path

import pytest
from django.core.cache import cache
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve, reverse
from django.urls.converters import IntConverter, UUIDConverter
from django.utils import timezone
from rest_framework.parsers import JSONParser
from rest_framework.test import APIClient

from annotation.models import DatasetUpload, QualityCheck, Snapshot
from core.models import AuditEvent, Membership, Role
from evaluation.models import (
    Contestant,
    Gate,
    GenerationJob,
    MetricRun,
    PromptSet,
    RatingsBootstrap,
)
from governance.models import Dossier
from tests.annotation.factories import DatasetFactory, classification_setup
from tests.conftest import ROLES
from tests.evaluation.factories import base_model, build_campaign, model_version
from tests.portal.factories import MembershipFactory, UserFactory
from tests.role_matrix import MATRIX, Row
from training.models import BaseModelRegistration, Sweep, TrainingJob

pytestmark = pytest.mark.django_db

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# Rows whose callers send a real request instead of an empty one: each role the table lets
# through must get this status, so the write works for all of them, not only the first.
WORKING = {
    ("api-project", "PATCH"): (lambda world: {"description": "changed"}, 200),
    ("api-memberships", "POST"): (
        lambda world: {"username": world.newcomer.username, "role": Role.REVIEWER},
        201,
    ),
    ("api-membership", "PATCH"): (lambda world: {"role": Role.REVIEWER}, 200),
    ("annotation-api:api-annotation-settings", "PATCH"): (
        lambda world: {"lease_seconds": 900},
        200,
    ),
    ("annotation-api:api-schemas", "POST"): (
        lambda world: {"task_type": "classification", "config": {"choices": ["a", "b"]}},
        201,
    ),
    ("annotation-api:api-guidelines", "POST"): (lambda world: {"markdown": "# Be kind"}, 201),
}


def _project_urls() -> dict[str, dict]:
    """{URL name with namespace: {param: converter}} for every route taking a project_id."""
    found: dict[str, dict] = {}

    def walk(patterns, namespace: str, converters: dict) -> None:
        for pattern in patterns:
            here = {**converters, **pattern.pattern.converters}
            if isinstance(pattern, URLResolver):
                inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
                walk(pattern.url_patterns, inner, here)
            elif isinstance(pattern, URLPattern) and pattern.name and "project_id" in here:
                found[namespace + pattern.name] = here

    walk(get_resolver().url_patterns, "", {})
    return found


PROJECT_URLS = _project_urls()


def _is_api(url: str) -> bool:
    return hasattr(resolve(url).func, "cls")  # DRF's as_view() keeps the view class there


class World:
    """The project and one object of each kind a project-scoped URL names, made on first use."""

    def __init__(self, project):
        self.project = project
        self.owner = project.created_by
        self.task_id = f"role-matrix-{uuid.uuid4().hex}"
        classification_setup(project)  # the annotation and adjudication pages need a schema

    def url(self, name: str) -> str:
        return reverse(name, kwargs={p: self.value(name, p) for p in PROJECT_URLS[name]})

    def value(self, name: str, param: str):
        if param == "project_id":
            return self.project.pk
        if param == "job_id":
            job = self.generation_job if name.startswith("evaluation") else self.training_job
            return job.pk
        if param == "fmt":
            return "jsonl" if "export-" in name and "snapshot" not in name else "sft"
        if param == "task_id":
            return self.task_id
        return getattr(self, param.removesuffix("_id")).pk

    def before_call(self, user) -> None:
        # A playground result is shown only to the user who asked for it.
        cache.set(f"training:playground:{self.task_id}", getattr(user, "pk", None), 60)

    def _own(self, model, **fields):
        return model.objects.create(project=self.project, created_by=self.owner, **fields)

    @cached_property
    def dataset(self):
        return DatasetFactory(project=self.project, created_by=self.owner)

    @cached_property
    def upload(self):
        return self._own(DatasetUpload, file_name="rows.jsonl")

    @cached_property
    def snapshot(self):
        return self._own(
            Snapshot,
            name="gold",
            version=1,
            task_type="classification",
            seed=0,
            split_ratios={"train": 1.0},
            member_count=0,
            manifest_sha256="0" * 64,
            created_at=timezone.now(),
        )

    @cached_property
    def check(self):
        return self._own(QualityCheck, kind=QualityCheck.Kind.DUPLICATES)

    @cached_property
    def campaign(self):
        return build_campaign(self.owner, self.project, prompts=2, contestants=2)[0]

    @cached_property
    def prompt_set(self):
        return self._own(PromptSet, name="prompts", source=PromptSet.Source.UPLOAD)

    @cached_property
    def contestant(self):
        return self._own(Contestant, label="Contender")

    @cached_property
    def generation_job(self):
        return self._own(GenerationJob, prompt_set=self.prompt_set, contestant=self.contestant)

    @cached_property
    def run(self):
        return self._own(MetricRun, prompt_set=self.prompt_set, contestant=self.contestant)

    @cached_property
    def gate(self):
        return self._own(Gate, name="gate", checks=[])

    @cached_property
    def training_job(self):
        base = base_model(self.project, "job-base")
        return self._own(TrainingJob, name="job", kind="sft", method="lora", base_model=base)

    @cached_property
    def sweep(self):
        return Sweep.objects.create(
            project=self.project,
            name="sweep",
            base_job=self.training_job,
            search_space={"learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2}},
            n_trials=2,
            created_by=self.owner,
        )

    @cached_property
    def version(self):
        return model_version(self.project, "version")

    @cached_property
    def dossier(self):
        bundle = Path(tempfile.mkdtemp(prefix="role-matrix-")) / "dossier.zip"
        bundle.write_bytes(b"PK\x05\x06" + b"\x00" * 18)  # an empty zip
        return Dossier.objects.create(
            project=self.project,
            model_version=self.version,
            inputs_sha256="0" * 64,
            requested_by=self.owner,
            status=Dossier.Status.SUCCEEDED,
            file_path=str(bundle),
        )

    @cached_property
    def registration(self):
        return self._own(BaseModelRegistration, name="base", source="local", path="/models/b")

    @cached_property
    def base_model(self):
        return base_model(self.project, "matrix-base")

    @cached_property
    def bootstrap(self):
        return RatingsBootstrap.objects.create(campaign=self.campaign, created_by=self.owner)

    @cached_property
    def membership(self):
        return MembershipFactory(project=self.project, role=Role.ANNOTATOR)

    @cached_property
    def newcomer(self):
        return UserFactory(username="newcomer")  # in no project yet: anyone may add them


@pytest.fixture
def world(project):
    world = World(project)
    yield world
    cache.delete(f"training:playground:{world.task_id}")


@pytest.fixture
def callers(member_of, outsider):
    """{who: (page client, API client, user)}: each role, a stranger, an anonymous visitor."""
    people = {role: member_of(role) for role in ROLES}
    people["non-member"] = outsider
    found = {}
    for who, user in people.items():
        page, api = Client(), APIClient()
        page.force_login(user)
        api.force_authenticate(user)
        found[who] = (page, api, user)
    found["anonymous"] = (Client(), APIClient(), None)
    return found


def _call(page, api, url: str, method: str, body: dict):
    if not _is_api(url):
        return getattr(page, method.lower())(url, body if method != "GET" else None)
    if method == "GET":
        return api.get(url)
    parsers = resolve(url).func.cls().get_parsers()
    fmt = "json" if any(isinstance(p, JSONParser) for p in parsers) else "multipart"
    return getattr(api, method.lower())(url, body, format=fmt)


def _verdict(row: Row, who: str, response, api: bool, working: int | None) -> str:
    status = response.status_code
    if who == "anonymous":
        if api:
            return "login" if status == 401 else str(status)
        to_login = status == 302 and "/accounts/login/" in response["Location"]
        return "login" if to_login else str(status)
    if status in (403, 404) or status >= 500:
        return str(status)
    if working is not None or row.method == "GET":
        return "allowed" if status == (working or 200) else str(status)
    return "allowed" if status not in (401, 405) else str(status)


def _expected(row: Row, who: str) -> str:
    if who == "anonymous":
        return "login"
    if who == "non-member":
        return "404"
    return "allowed" if who in row.allowed else "403"


@pytest.mark.parametrize("row", MATRIX, ids=lambda row: row.id)
def test_role_matrix(row, world, callers):
    # An allowed caller gets past the access check: a GET answers 200; a write with an
    # empty body gets to its own 400, or does what needs no input (next item, cancel,
    # remove), rolled back before the next caller. A refused caller leaves no audit trace.
    url = world.url(row.name)
    api = _is_api(url)
    make_body, working = WORKING.get((row.name, row.method), (lambda world: {}, None))
    body = make_body(world)  # what it names is made here, outside the rollbacks below
    answers, wanted, traces = {}, {}, {}
    for who, (page, api_client, user) in callers.items():
        world.before_call(user)
        with transaction.atomic():  # every caller finds the same project
            before = AuditEvent.objects.count()
            response = _call(page, api_client, url, row.method, body)
            traces[who] = AuditEvent.objects.count() - before
            transaction.set_rollback(True)
        answers[who] = _verdict(row, who, response, api, working)
        wanted[who] = _expected(row, who)

    assert answers == wanted
    assert {who: n for who, n in traces.items() if n and wanted[who] != "allowed"} == {}


def test_every_project_scoped_url_has_a_row_and_every_row_a_url():
    named = {row.name for row in MATRIX}

    assert sorted(set(PROJECT_URLS) - named) == []
    assert sorted(named - set(PROJECT_URLS)) == []
    assert len({(row.name, row.method) for row in MATRIX}) == len(MATRIX)


def test_methods_outside_the_matrix_are_not_served(client, project):
    # A member holding every role gets 405 for each method the table has no row for: a
    # page or endpoint that starts answering another method needs its row.
    user = UserFactory(username="every-role")
    for role in ROLES:
        Membership.objects.create(project=project, user=user, role=role)
    client.force_login(user)
    api = APIClient()
    api.force_authenticate(user)
    rows = {(row.name, row.method) for row in MATRIX}

    served = []
    for (name, converters), method in product(PROJECT_URLS.items(), METHODS):
        if (name, method) in rows:
            continue
        kwargs = {p: _dummy(c) for p, c in converters.items()} | {"project_id": project.pk}
        url = reverse(name, kwargs=kwargs)
        caller = api if _is_api(url) else client
        status = getattr(caller, method.lower())(url).status_code
        if status != 405:
            served.append((name, method, status))

    assert served == []


def _dummy(converter):
    if isinstance(converter, IntConverter):
        return 1
    if isinstance(converter, UUIDConverter):
        return uuid.uuid4()
    return "x"
