import asyncio
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import pytest
from asgiref.sync import ThreadSensitiveContext, iscoroutinefunction, sync_to_async
from asgiref.testing import ApplicationCommunicator
from django.core.handlers.asgi import ASGIHandler
from django.core.signals import request_finished, request_started
from django.db import connection
from django.http import HttpResponse, StreamingHttpResponse
from django.test import override_settings
from django.urls import path

from portal.asgi import application
from portal.asgi_threads import ReusedRequestThreads, SyncChainASGIHandler

SCOPE = {"type": "http", "method": "GET", "path": "/", "headers": []}


def _run(coroutine):
    """asyncio.run on a thread of its own: Playwright's sync API may hold an event loop on
    the test thread when the browser tests ran earlier in the same session."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _recording_app(seen, *, gate=None, fail=False):
    async def app(scope, receive, send):
        # As Django's handler does: its own context inside ours.
        async with ThreadSensitiveContext():
            seen.append(await sync_to_async(threading.get_ident)())
            if gate is not None:
                await gate.wait()
        if fail:
            raise RuntimeError("the view failed")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return app


def test_requests_one_after_another_run_on_one_reused_thread():
    seen = []
    middleware = ReusedRequestThreads(_recording_app(seen))

    async def run():
        for _ in range(5):
            await middleware(SCOPE, None, _ignore)

    _run(run())

    assert len(set(seen)) == 1
    assert len(middleware.idle) == 1


def test_concurrent_requests_get_threads_of_their_own():
    seen = []

    async def run():
        gate = asyncio.Event()
        middleware = ReusedRequestThreads(_recording_app(seen, gate=gate))
        requests = [asyncio.create_task(middleware(SCOPE, None, _ignore)) for _ in range(3)]
        while len(seen) < 3:
            await asyncio.sleep(0.01)
        gate.set()
        await asyncio.gather(*requests)
        return middleware

    middleware = _run(run())

    assert len(set(seen)) == 3
    assert len(middleware.idle) == 3


def test_a_failed_request_does_not_hand_its_thread_on():
    seen = []
    middleware = ReusedRequestThreads(_recording_app(seen, fail=True))

    with pytest.raises(RuntimeError):
        _run(middleware(SCOPE, None, _ignore))

    assert middleware.idle == []


@pytest.mark.django_db(transaction=True)
def test_the_portal_answers_through_the_pooled_threads():
    async def get_health():
        statuses = []
        for _ in range(3):
            communicator = ApplicationCommunicator(
                application,
                {**SCOPE, "path": "/healthz/", "headers": [(b"host", b"127.0.0.1")]},
            )
            await communicator.send_input({"type": "http.request", "body": b""})
            start = await communicator.receive_output(timeout=10)
            await communicator.receive_output(timeout=10)
            statuses.append(start["status"])
        return statuses

    try:
        assert _run(get_health()) == [200, 200, 200]
    finally:
        # The request threads handed their connections back to this process's pool.
        connection.close_pool()


def test_the_middleware_chain_is_entered_once_per_request_not_three_times():
    """Every middleware and view here is synchronous: the chain is built as under WSGI
    (the stock ASGI handler builds an async chain that crosses to a thread and back around
    each sync-only middleware and again for the view)."""
    handler = SyncChainASGIHandler()

    assert not iscoroutinefunction(handler._middleware_chain)
    assert iscoroutinefunction(ASGIHandler()._middleware_chain)


@pytest.mark.django_db(transaction=True)
def test_pages_through_the_sync_chain_keep_the_middleware_answers():
    async def get(path, headers=()):
        communicator = ApplicationCommunicator(
            application,
            {**SCOPE, "path": path, "headers": [(b"host", b"127.0.0.1"), *headers]},
        )
        await communicator.send_input({"type": "http.request", "body": b""})
        start = await communicator.receive_output(timeout=10)
        await communicator.receive_output(timeout=10)
        return start["status"], {k.lower(): v for k, v in start["headers"]}

    try:
        status, headers = _run(get("/healthz/"))
        assert status == 200
        assert b"content-security-policy" in headers  # django-csp
        assert headers[b"x-frame-options"] == b"DENY"  # clickjacking middleware
        assert b"HX-Request" in headers[b"vary"]  # ours
        status, headers = _run(get("/"))  # login_required: the auth middleware ran
        assert status == 302
        assert headers[b"location"].startswith(b"/accounts/login/")
    finally:
        connection.close_pool()


def _stream(request):
    yield b"one "
    yield b"two"


def _whole(request):
    return HttpResponse(b"whole")


urlpatterns = [
    path("whole/", _whole),
    path("stream/", lambda request: StreamingHttpResponse(_stream(request))),
]


def _serve(path: str) -> list[tuple[str, object]]:
    """What happens, in order, while SyncChainASGIHandler serves `path`: the request
    signals (with the thread they ran on) and the messages sent to the server."""
    events = []
    signals = ("started", "finished")

    def started(**kwargs):
        events.append(("started", threading.get_ident()))

    def finished(**kwargs):
        events.append(("finished", threading.get_ident()))

    async def run():
        body = [{"type": "http.request", "body": b""}]

        async def receive():
            return body.pop() if body else {"type": "http.disconnect"}

        async def send(message):
            events.append((message["type"], message.get("body")))

        await SyncChainASGIHandler()(
            {**SCOPE, "path": path, "headers": [(b"host", b"127.0.0.1")]}, receive, send
        )
        return threading.get_ident()

    request_started.connect(started)
    request_finished.connect(finished)
    try:
        loop_thread = _run(run())
    finally:
        request_started.disconnect(started)
        request_finished.disconnect(finished)
    assert all(thread != loop_thread for name, thread in events if name in signals)
    return events


@override_settings(ROOT_URLCONF=__name__)
def test_a_whole_response_is_made_and_closed_in_one_go_on_the_request_thread():
    """Django's handler hands over to the request's thread three times: for
    request_started, for the view and for close() after sending. A response already in
    memory needs one: it is closed (request_finished, the database connection back to the
    pool) before its bytes go out."""
    events = _serve("/whole/")

    assert [name for name, _ in events] == [
        "started",
        "finished",
        "http.response.start",
        "http.response.body",
    ]
    assert events[0][1] == events[1][1]
    assert events[3][1] == b"whole"


@override_settings(ROOT_URLCONF=__name__)
def test_a_streamed_response_is_closed_after_its_last_part():
    events = _serve("/stream/")

    names = [name for name, _ in events]
    assert names[0] == "started"
    assert names[-1] == "finished"
    assert b"".join(body or b"" for name, body in events if name == "http.response.body") == (
        b"one two"
    )


async def _ignore(message):
    return None


GENERATED = []


def _counted_stream(request):
    for index in range(100):
        GENERATED.append(index)
        yield b"x" * 10_000


urlpatterns.append(
    path("big-stream/", lambda request: StreamingHttpResponse(_counted_stream(request)))
)


@override_settings(ROOT_URLCONF=__name__)
def test_a_synchronous_stream_is_sent_as_it_is_made_not_gathered_first():
    GENERATED.clear()
    made_before_first_body = []

    async def run():
        body = [{"type": "http.request", "body": b""}]

        async def receive():
            return body.pop() if body else {"type": "http.disconnect"}

        async def send(message):
            if message["type"] == "http.response.body" and not made_before_first_body:
                made_before_first_body.append(len(GENERATED))

        await SyncChainASGIHandler()(
            {**SCOPE, "path": "/big-stream/", "headers": [(b"host", b"127.0.0.1")]}, receive, send
        )

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Django warns when it gathers a sync iterator whole
        _run(run())

    assert len(GENERATED) == 100
    assert made_before_first_body[0] < 100
