import asyncio
import json
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from celery import Celery
from channels.layers import get_channel_layer
from django.conf import settings
from django.test import Client as DjangoClient
from redis.exceptions import RedisError
from websockets.exceptions import WebSocketException
from websockets.sync.client import connect

from annotation.models import DatasetUpload
from portal.celery import app as celery_app
from tests.annotation.factories import classification_setup
from tests.portal.factories import MembershipFactory, UserFactory, api_key_for
from tests.support import servers
from tests.support.private_services import PrivateRedis

pytestmark = pytest.mark.django_db(transaction=True)

# How long Redis stays down while a job is being created (a restart takes about a second).
OUTAGE_S = 3


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            what = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class EventListener:
    """What static/js/portal.js does in a browser tab: one socket, subscribed to a project;
    when the socket closes, connect again after a growing pause and subscribe again."""

    def __init__(self, url: str, cookie: str, origin: str, project_id: int):
        self.url, self.cookie, self.origin, self.project_id = url, cookie, origin, project_id
        self.events: list[dict] = []
        self.connections = 0
        self.opened_at: float | None = None
        self.subscribed = threading.Event()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        retry = 0.1
        while not self.stopped.is_set():
            try:
                with connect(
                    self.url,
                    additional_headers={"Cookie": self.cookie},
                    origin=self.origin,
                    open_timeout=5,
                ) as socket:
                    self.connections += 1
                    self.opened_at = time.monotonic()
                    socket.send(json.dumps({"subscribe": self.project_id}))
                    retry = 0.1
                    while not self.stopped.is_set():
                        try:
                            event = json.loads(socket.recv(timeout=0.2))
                        except TimeoutError:
                            continue
                        if event.get("type") == "subscribed":
                            self.subscribed.set()
                        self.events.append(event)
            except (OSError, WebSocketException):
                pass  # refused or dropped: try again, as the browser does
            self.subscribed.clear()
            self.opened_at = None
            self.stopped.wait(retry)
            retry = min(retry * 2, 2.0)

    def finished_uploads(self) -> set[str]:
        return {
            e["upload"]
            for e in list(self.events)
            if e.get("type") == "dataset.upload" and e.get("status") == "succeeded"
        }

    def open_for(self) -> float:
        opened = self.opened_at
        return 0.0 if opened is None else time.monotonic() - opened

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=10)


def _upload(base_url: str, token: str, project_id: int, n: int) -> str:
    rows = "".join(json.dumps({"text": f"upload {n} row {i}"}) + "\n" for i in range(5))
    response = requests.post(
        f"{base_url}/api/v1/projects/{project_id}/datasets/",
        headers={"Authorization": f"Token {token}"},
        data={
            "name": f"restart {n}",
            "source_description": "generated",
            "license": "CC0-1.0",
            "consent_basis": "synthetic",
            "collection_date": "2025-01-01",
            "synthetic": "true",
        },
        files={"file": (f"rows-{n}.jsonl", rows.encode())},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    return response.json()["id"]


def test_queued_jobs_and_live_events_survive_a_redis_restart(
    project, test_database_url, server_log_dir
):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed: no private Redis to restart")
    classification_setup(project)
    engineer = UserFactory(username="restart-engineer")
    MembershipFactory(project=project, user=engineer, role="engineer")
    token = api_key_for(engineer)
    browser = DjangoClient()
    browser.force_login(engineer)
    cookie = f"sessionid={browser.cookies['sessionid'].value}"

    redis = PrivateRedis(appendonly=True)
    env = servers.child_env(test_database_url, REDIS_URL=redis.url)
    # To ping the worker on the private Redis, with the portal's key prefix.
    probe = Celery("probe", set_as_current=False)
    probe.conf.broker_url = redis.url
    probe.conf.broker_transport_options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    node = f"restart-{os.environ['PORTAL_TEST_RUN_ID']}@localhost"
    server = worker = listener = None
    try:
        server, base_url = servers.start_asgi_server(env, server_log_dir)
        listener = EventListener(
            base_url.replace("http://", "ws://") + "/ws/events/", cookie, base_url, project.pk
        )
        wait_until(listener.subscribed.is_set, 20, "the websocket subscription")

        # 1. Jobs wait in Redis (no worker yet) while it restarts.
        queued = [_upload(base_url, token, project.pk, n) for n in range(4)]
        redis.restart()
        # Sockets stay open while nothing happens (they died every 5 s: the layer's
        # blocking read outlived redis-py's default socket timeout). The worker starts after
        # that: events sent while a tab is between sockets are gone (portal.js refreshes its
        # live regions when it reconnects), and the first imports take well under a second.
        wait_until(lambda: listener.open_for() > 7, 30, "a socket that stays open while idle")
        wait_until(listener.subscribed.is_set, 20, "the subscription on that socket")
        worker = servers.start_celery_worker(env, server_log_dir, probe, node)

        def imported(ids):
            unfinished = DatasetUpload.objects.filter(pk__in=ids, status__in=["queued", "running"])
            return lambda: not unfinished.exists()

        wait_until(imported(queued), 60, "the queued imports")
        statuses = set(DatasetUpload.objects.filter(pk__in=queued).values_list("status", flat=True))
        assert statuses == {"succeeded"}
        # The tab heard them finish over the socket it had, or one it opened again.
        wait_until(
            lambda: set(queued) <= listener.finished_uploads(),
            20,
            lambda: f"their events ({listener.connections} connections, {listener.events})",
        )

        # 2. Redis restarts under a running worker, web server and open socket. The socket
        # survives, or the tab opens another and subscribes again before the jobs come.
        connections, restarted_at = listener.connections, time.monotonic()
        redis.restart()
        wait_until(
            lambda: (
                listener.subscribed.is_set()
                and (listener.connections > connections or time.monotonic() - restarted_at > 2)
            ),
            20,
            "the socket after the restart",
        )
        later = [_upload(base_url, token, project.pk, n) for n in range(4, 7)]
        wait_until(imported(later), 60, "imports queued after the second restart")
        statuses = set(DatasetUpload.objects.filter(pk__in=later).values_list("status", flat=True))
        assert statuses == {"succeeded"}
        wait_until(
            lambda: set(later) <= listener.finished_uploads(),
            30,
            lambda: f"their events ({listener.connections} connections, {listener.events})",
        )

        # 3. Redis is down for a few seconds when a job is created: the web server holds
        # the job's message until Redis is back, rather than failing after the commit and
        # leaving a job that is queued in the database but nowhere in Redis.
        redis.stop()
        before = DatasetUpload.objects.count()
        with ThreadPoolExecutor(1) as pool:
            posted = pool.submit(_upload, base_url, token, project.pk, 7)
            wait_until(lambda: DatasetUpload.objects.count() > before, 20, "the committed job")
            outage_ends = time.monotonic() + OUTAGE_S
            wait_until(lambda: time.monotonic() > outage_ends, OUTAGE_S + 1, "the outage")
            redis.start()
            during = posted.result(timeout=60)
        wait_until(imported([during]), 60, "the import created during the outage")
        assert DatasetUpload.objects.get(pk=during).status == "succeeded"
        worker.check_alive()
        server.check_alive()
    finally:
        if listener is not None:
            listener.stop()
        for child in (worker, server):
            if child is not None:
                child.stop()
        redis.destroy()


def test_no_task_outlives_the_brokers_visibility_timeout():
    celery_app.loader.import_default_modules()
    limits = {
        name: task.time_limit
        for name, task in celery_app.tasks.items()
        if not name.startswith("celery.") and task.time_limit
    }
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    assert "training.run_job" in limits
    assert {name: limit for name, limit in limits.items() if limit >= visibility} == {}


def test_an_idle_socket_outlives_the_layers_blocking_read():
    # A consumer waits in the layer's BZPOPMIN; with nothing to deliver the read must end
    # with Redis's empty answer, not with the client's socket timeout.
    layer = get_channel_layer()

    async def wait_idle() -> BaseException:
        channel = await layer.new_channel()
        try:
            await asyncio.wait_for(layer.receive(channel), layer.brpop_timeout + 1.5)
        except (TimeoutError, RedisError) as error:
            return error
        raise AssertionError("nobody sent anything, yet a message came")

    with ThreadPoolExecutor(1) as pool:  # a fresh event loop, off any loop of this thread
        error = pool.submit(asyncio.run, wait_idle()).result()
    assert type(error) is TimeoutError, repr(error)  # our wait_for, not redis-py's read
