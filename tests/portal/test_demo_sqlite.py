"""`make demo` on its embedded SQLite database: migrate, seed_demo, the web server serve_demo
starts, and real HTTP requests. The rest of the suite runs on PostgreSQL, so this is where
the portable twins of the PostgreSQL hot paths run (grep `on_postgresql()`): the dataset
import (under its job lock) and the snapshot seed_demo makes, the queue's claim and submit,
the API key lookup and the audit chain the web requests append to.

No worker is started: the training job seed_demo queues stays queued."""

import http.cookiejar
import json
import re
import sys
import urllib.parse
import urllib.request
import uuid
from urllib.error import HTTPError

import pytest

from core.models import Role
from portal.demo import DEMO_LOGINS
from tests.support import servers
from tests.support.servers import ChildProcess, free_port

# Each role's own pages besides home and the project page ({p}: the demo project's id).
ROLE_PAGES = {
    Role.ANNOTATOR: ["/projects/{p}/annotate/"],
    Role.ADJUDICATOR: ["/projects/{p}/adjudicate/"],
    Role.REVIEWER: ["/projects/{p}/review/"],
    Role.ENGINEER: [
        "/projects/{p}/training/",
        "/projects/{p}/curation/",
        "/projects/{p}/datasets/",
    ],
    Role.COMPLIANCE: ["/governance/", "/governance/audit/"],
    Role.ADMIN: ["/people/", "/projects/{p}/members/"],
}

CHECKS = """
from django.core.management import call_command
from annotation.models import Snapshot
from annotation.services.snapshots import manifest_recompute
call_command("verify_audit_log")
snapshots = list(Snapshot.objects.all())
assert all(manifest_recompute(snapshot=s) == s.manifest_sha256 for s in snapshots)
print("snapshots", len(snapshots))
"""


class Client:
    """A browser's part of HTTP: cookies, redirects, the CSRF token."""

    def __init__(self, base_url: str, token: str = ""):
        self.base_url = base_url
        self.token = token
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    def csrf_token(self) -> str:
        return next(c.value for c in self.cookies if c.name == "csrftoken")

    def send(self, path: str, *, form=None, body=None) -> tuple[int, str, str]:
        """(status, path answered after redirects, text)."""
        headers = {"Authorization": f"Token {self.token}"} if self.token else {}
        data = None
        if form is not None:
            data = urllib.parse.urlencode({**form, "csrfmiddlewaretoken": self.csrf_token()})
        elif body is not None:
            data = json.dumps(body)
            headers["Content-Type"] = "application/json"
            if not self.token:
                headers["X-CSRFToken"] = self.csrf_token()
        request = urllib.request.Request(  # noqa: S310 - http to our own server
            self.base_url + path, data=None if data is None else data.encode(), headers=headers
        )
        try:
            with self.opener.open(request, timeout=60) as response:
                answered = response.geturl().removeprefix(self.base_url)
                return response.status, answered, response.read().decode()
        except HTTPError as error:
            return error.code, path, error.read().decode()

    def page(self, path: str) -> str:
        status, answered, text = self.send(path)
        assert (status, answered) == (200, path), f"{path}: {status} at {answered}"
        return text

    def log_in(self, username: str, password: str) -> None:
        self.page("/accounts/login/")
        status, answered, _ = self.send(
            "/accounts/login/", form={"username": username, "password": password}
        )
        assert (status, answered) == (200, "/"), f"{username} could not log in"


@pytest.fixture
def demo_server(tmp_path, server_log_dir, tiny_model_dir):
    var = tmp_path / "var"
    env = servers.embedded_env(var, DATABASE_URL=f"sqlite:///{var / 'portal.sqlite3'}")
    servers.manage(env, "migrate", "--noinput")
    port = free_port()
    # The web server as serve_demo starts it (its workers would start training), starting up
    # while seed_demo runs.
    web = ChildProcess(
        "demo-daphne",
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port)]
        + ["portal.asgi:application"],
        env,
        server_log_dir,
    )
    try:
        # The tiny model stands in for the packaged one: converting that (half a gigabyte,
        # about a minute here) is tests/training/test_registration.py's to test.
        seeded = servers.manage(env, "seed_demo", "--base-model-dir", str(tiny_model_dir))
        assert "Demo project: Support assistant (demo) (dataset: 330 items)" in seeded
        servers.wait_until_up(web, f"http://127.0.0.1:{port}/healthz/")
        yield env, f"http://127.0.0.1:{port}", seeded
    finally:
        web.stop()


@pytest.mark.timeout(300)
def test_the_demo_on_sqlite_serves_every_role_and_takes_an_answer(demo_server):
    env, base_url, seeded = demo_server
    for login in DEMO_LOGINS:
        client = Client(base_url)
        client.log_in(login.username, login.password)
        project = re.search(r'href="/projects/(\d+)/"', client.page("/"))[1]
        client.page(f"/projects/{project}/")
        pages = " ".join(client.page(path.format(p=project)) for path in ROLE_PAGES[login.role])
        if login.role == Role.ENGINEER:
            # The snapshot seed_demo made and its queued training job.
            links = re.findall(r"/projects/\d+/(?:snapshots|training/jobs)/\d+/", pages)
            assert any("/snapshots/" in link for link in links), links
            for link in links:
                client.page(link)
        if login.role == Role.ANNOTATOR:
            annotator = client

    # The annotator's client, through an API key: the answer is taken, the next item comes.
    status, _, created = annotator.send("/api/v1/me/keys/", body={"name": "demo smoke test"})
    assert status == 201, created
    api = Client(base_url, token=json.loads(created)["key"])
    queue = f"/api/v1/projects/{project}/queue"
    status, _, text = api.send(f"{queue}/next/", body={})
    assert status == 200, text
    task = json.loads(text)
    status, _, text = api.send(
        f"{queue}/submit/",
        body={
            "lease": task["lease"],
            "value": {"response": task["payload"]["response"]},
            "submission_id": str(uuid.uuid4()),
            "seconds_spent": 20,
            "next": True,
        },
    )
    assert status == 201, text
    answered = json.loads(text)
    assert answered["item"] == task["item"]
    assert answered["next"]["item"] not in (None, task["item"])

    # The demo deployment's gateway opens with the key seed_demo printed. No engine runs
    # here (serve_demo's serving worker would start one): a chat is an OpenAI-shaped 503.
    key = re.search(r"OPENAI_BASE_URL=http://127\.0\.0\.1:8000/v1 OPENAI_API_KEY=(\S+)", seeded)[1]
    status, text = _gateway(base_url, key, "/v1/models")
    assert status == 200, text
    assert [m["id"] for m in json.loads(text)["data"]] == ["demo-chat"]
    chat = {"model": "demo-chat", "messages": [{"role": "user", "content": "hi"}]}
    status, text = _gateway(base_url, key, "/v1/chat/completions", chat)
    assert status == 503, text
    assert json.loads(text)["error"]["message"]

    # The chain everything above appended to verifies, and so do the snapshot's members.
    assert servers.manage(env, "shell", "-c", CHECKS).splitlines()[-1] == "snapshots 1"


def _gateway(base_url: str, key: str, path: str, body=None) -> tuple[int, str]:
    request = urllib.request.Request(  # noqa: S310 - http to our own server
        base_url + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            return response.status, response.read().decode()
    except HTTPError as error:
        return error.code, error.read().decode()


def test_only_core_db_asks_which_database_it_is_on():
    asking = [
        str(path.relative_to(servers.ROOT))
        for package in (
            "core",
            "portal",
            "governance",
            "serving",
            "annotation",
            "training",
            "evaluation",
        )
        for path in (servers.ROOT / package).rglob("*.py")
        if "migrations" not in path.parts and "connection.vendor" in path.read_text()
    ]

    assert asking == ["core/db.py"]
