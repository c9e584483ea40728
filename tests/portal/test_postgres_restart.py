import http.client
import json
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import psycopg
import pytest
from django.test import Client as DjangoClient

from annotation.models import Item
from tests.annotation.factories import DatasetFactory, ItemFactory, classification_setup
from tests.portal.factories import MembershipFactory, UserFactory, api_key_for
from tests.support import servers
from tests.support.private_services import PrivatePostgres, postgres_bin_dir

pytestmark = pytest.mark.django_db(transaction=True)

ANNOTATORS = 16
ITEMS = 500
SUBMITS_PER_PHASE = 40


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.statuses: Counter = Counter()
        self.unavailable_without_retry_after = 0
        self.submitted: dict[str, int] = {}  # submission id -> annotation id
        self.intended: dict[str, int] = {}  # submission id -> lease
        self.resent = 0

    def count(self, status: int, retry_after: str | None) -> None:
        with self.lock:
            self.statuses[status] += 1
            if status == 503 and not (retry_after or "").isdigit():
                self.unavailable_without_retry_after += 1


class Annotator:
    """An API client that does what the queue's callers are told to: on 503, wait and send
    the same request again, with the same submission id."""

    def __init__(self, base_url: str, token: str, project_id: int, tally: Tally):
        self.url = urlsplit(base_url)
        self.headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
        self.prefix = f"/api/v1/projects/{project_id}/queue"
        self.tally = tally
        self.conn = self._connect()

    def _connect(self):
        return http.client.HTTPConnection(self.url.hostname, self.url.port, timeout=30)

    def post(self, path: str, body: dict | None = None):
        deadline = time.monotonic() + 45
        while True:
            self.conn.request("POST", self.prefix + path, json.dumps(body or {}), self.headers)
            response = self.conn.getresponse()
            data = response.read()
            self.tally.count(response.status, response.getheader("Retry-After"))
            if response.status != 503 or time.monotonic() > deadline:
                return response.status, (json.loads(data) if data else None)
            time.sleep(0.05)  # shorter than Retry-After: the test should not idle

    def work(self, stop: threading.Event) -> None:
        n = 0
        while not stop.is_set():
            status, task = self.post("/next/")
            if status == 204:
                return
            assert status == 200, (status, task)
            submission = str(uuid.uuid4())
            with self.tally.lock:
                self.tally.intended[submission] = task["lease"]
            answer = {"lease": task["lease"], "value": {"labels": ["pos"]}}
            status, body = self.post("/submit/", {**answer, "submission_id": submission})
            assert status == 201, (status, body)
            with self.tally.lock:
                self.tally.submitted[submission] = body["annotation"]
            n += 1
            if n % 4 == 0:
                # A client that never saw the answer sends it again: same id, same answer.
                status, again = self.post("/submit/", {**answer, "submission_id": submission})
                assert (status, again["annotation"]) == (201, body["annotation"]), again
                with self.tally.lock:
                    self.tally.resent += 1


def _get(base_url: str, path: str, cookie: str = ""):
    url = urlsplit(base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    conn.request("GET", path, headers={"Cookie": cookie, "Accept": "text/html"})
    response = conn.getresponse()
    body = response.read().decode(errors="replace")
    conn.close()
    return (
        response.status,
        response.getheader("Retry-After"),
        response.getheader("Content-Type"),
        body,
    )


def test_annotators_ride_out_a_postgres_restart(project, test_database_url, server_log_dir):
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.skip("initdb is not installed (/usr/lib/postgresql/*/bin): no private cluster")
    classification_setup(project, k=1)
    dataset = DatasetFactory(project=project)
    Item.objects.bulk_create(ItemFactory.build_batch(ITEMS, dataset=dataset, project=project))
    tokens = []
    for i in range(ANNOTATORS):
        user = UserFactory(username=f"restart-annotator-{i}")
        MembershipFactory(project=project, user=user, role="annotator")
        tokens.append(api_key_for(user))
    browser = DjangoClient()
    browser.force_login(project.created_by)
    session_cookie = f"sessionid={browser.cookies['sessionid'].value}"

    pg = PrivatePostgres(bin_dir)
    server = None
    try:
        pg.copy_database(test_database_url, "portal_restart")
        server, base_url = servers.start_asgi_server(
            servers.child_env(pg.url("portal_restart")), server_log_dir
        )
        assert _get(base_url, "/", session_cookie)[0] == 200
        tally = Tally()
        stop = threading.Event()
        clients = [Annotator(base_url, token, project.pk, tally) for token in tokens]
        with ThreadPoolExecutor(ANNOTATORS) as pool:
            running = [pool.submit(client.work, stop) for client in clients]

            def submitted_at_least(n):
                return lambda: len(tally.submitted) >= n or any(f.done() for f in running)

            try:
                wait_until(submitted_at_least(SUBMITS_PER_PHASE), 60, "the first answers")
                # 1. A restart as an operator does it: every open connection is terminated.
                pg.restart()
                mark = len(tally.submitted)
                wait_until(submitted_at_least(mark + SUBMITS_PER_PHASE), 60, "answers after it")
                # 2. Down for a while: clients and browsers are told to come back.
                pg.stop()
                page = {}

                def told_to_retry():
                    page["seen"] = _get(base_url, "/", session_cookie)
                    return tally.statuses[503] > 0 and page["seen"][0] == 503

                wait_until(told_to_retry, 30, "503s while the database is down")
                pg.start()
                mark = len(tally.submitted)
                wait_until(submitted_at_least(mark + SUBMITS_PER_PHASE), 60, "answers after it")
            finally:
                stop.set()
            for future in running:
                future.result()

        status, retry_after, content_type, body = page["seen"]
        assert status == 503
        assert (retry_after or "").isdigit(), page["seen"]
        assert content_type.startswith("text/html")
        assert "try again" in body.lower()
        assert tally.statuses[503] > 0
        assert tally.unavailable_without_retry_after == 0
        assert set(tally.statuses) <= {200, 201, 503}, tally.statuses
        assert tally.resent > 0
        # Every answer a client sent is stored once, under its id, and counted once.
        with psycopg.connect(pg.url("portal_restart")) as db:
            stored = dict(
                db.execute(
                    "SELECT submission_id::text, id FROM annotation_annotation"
                    " WHERE project_id = %s",
                    [project.pk],
                ).fetchall()
            )
            labels = db.execute(
                "SELECT sum(label_count) FROM annotation_item WHERE project_id = %s",
                [project.pk],
            ).fetchone()[0]
            audited = db.execute(
                "SELECT count(*) FROM governance_auditevent WHERE action = 'annotation.submit'"
            ).fetchone()[0]
        assert stored == tally.submitted
        assert set(tally.intended) == set(stored)
        assert labels == len(stored) == audited
        # And the portal works on without a restart of its own.
        server.check_alive()
        assert _get(base_url, "/healthz/")[0] == 200
        assert _get(base_url, "/", session_cookie)[0] == 200
        after = Tally()
        client = Annotator(base_url, tokens[0], project.pk, after)
        status, task = client.post("/next/")
        assert status == 200
        status, _ = client.post(
            "/submit/",
            {
                "lease": task["lease"],
                "value": {"labels": ["neg"]},
                "submission_id": str(uuid.uuid4()),
            },
        )
        assert status == 201
        assert after.statuses == Counter({200: 1, 201: 1})
    finally:
        if server is not None:
            server.stop()
        pg.destroy()
