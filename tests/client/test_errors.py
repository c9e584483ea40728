"""API errors arrive as exceptions named after their status, with the API's error body
(field names kept); what may be retried is, with backoff, and what may not is not."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core.models import Role
from tests.portal.factories import MembershipFactory, UserFactory, api_key_for
from training.models import TrainingJob
from tuning_portal import (
    APIConnectionError,
    AuthenticationError,
    BadRequestError,
    Client,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    TuningPortalError,
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


def test_a_project_scoped_call_without_a_project_says_so(asgi_server):
    client = Client(base_url=asgi_server, api_key="unused")

    with pytest.raises(TuningPortalError, match="needs a project"):
        client.jobs.list()


class _Flaky(BaseHTTPRequestHandler):
    """Answers each path's first `failures` requests with `status`, then 200."""

    plan: dict[str, tuple[int, int]] = {}
    seen: dict[str, int] = {}

    def _answer(self) -> None:
        self.seen[self.path] = self.seen.get(self.path, 0) + 1
        status, failures = self.plan.get(self.path.split("?")[0], (200, 0))
        code = status if self.seen[self.path] <= failures else 200
        body = b'{"detail": "busy"}' if code != 200 else b"[]"
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if code != 200:
            self.send_header("Retry-After", "0")
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def flaky():
    _Flaky.seen = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_reads_are_retried_on_503_and_writes_are_not(flaky):
    server, url = flaky
    _Flaky.plan = {
        "/api/v1/projects/1/datasets/": (503, 2),
        "/api/v1/projects/": (503, 1),
    }
    client = Client(base_url=url, api_key="k", project=1, max_retries=2)

    assert client.datasets.list() == []
    with pytest.raises(InternalServerError) as raised:
        client.projects.create(name="x")

    assert _Flaky.seen["/api/v1/projects/1/datasets/"] == 3
    assert _Flaky.seen["/api/v1/projects/"] == 1
    assert raised.value.body == {"detail": "busy"}


def test_a_write_is_retried_on_429_until_the_retries_run_out(flaky):
    server, url = flaky
    _Flaky.plan = {"/api/v1/projects/": (429, 5)}
    client = Client(base_url=url, api_key="k", max_retries=2)

    with pytest.raises(RateLimitError):
        client.projects.create(name="x")

    assert _Flaky.seen["/api/v1/projects/"] == 3


def test_a_server_out_of_reach_is_a_connection_error():
    client = Client(base_url="http://127.0.0.1:9", api_key="k", max_retries=0)

    with pytest.raises(APIConnectionError):
        client.projects.list()
