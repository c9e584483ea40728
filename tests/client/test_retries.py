"""What may be retried is, with backoff, and what may not is not; a server out of reach is
a connection error. Against a small real HTTP server that fails on purpose."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tuning_portal import (
    APIConnectionError,
    Client,
    InternalServerError,
    RateLimitError,
    TuningPortalError,
)


def test_a_project_scoped_call_without_a_project_says_so():
    client = Client(base_url="http://127.0.0.1:9", api_key="unused")

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
