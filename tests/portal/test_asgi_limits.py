import asyncio
import json
import socket
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
from asgiref.testing import ApplicationCommunicator
from django.core.signals import request_started
from django.db import connection
from django.test import override_settings

from portal.asgi import application
from portal.asgi_limits import MULTIPART_ALLOWANCE, body_limit_for

UPLOAD_LIMIT = 10_000


def _run(coroutine):
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _post(path, chunks, *, length=None, headers=()):
    """POST `chunks` (one http.request message each) to the portal's ASGI application;
    returns the status, the response headers and body, and whether Django's handler saw
    the request at all."""
    seen = []

    def started(**kwargs):
        seen.append(True)

    async def run():
        head = [(b"host", b"127.0.0.1"), (b"content-type", b"multipart/form-data; boundary=x")]
        if length is not None:
            head.append((b"content-length", str(length).encode()))
        communicator = ApplicationCommunicator(
            application,
            {
                "type": "http",
                "method": "POST",
                "path": path,
                "headers": [*head, *headers],
                "query_string": b"",
            },
        )
        for index, chunk in enumerate(chunks):
            await communicator.send_input(
                {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1}
            )
        start = await communicator.receive_output(timeout=10)
        body = b""
        while True:
            message = await communicator.receive_output(timeout=10)
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await communicator.wait(timeout=10)
        return start["status"], dict(start["headers"]), body

    request_started.connect(started)
    try:
        status, headers, body = _run(run())
    finally:
        request_started.disconnect(started)
        connection.close_pool()
    return status, headers, body, bool(seen)


UPLOAD = "/api/v1/projects/1/datasets/"


@pytest.mark.django_db(transaction=True)
@override_settings(PORTAL_MAX_UPLOAD_BYTES=UPLOAD_LIMIT)
def test_an_oversized_upload_is_refused_before_django_or_authentication_runs():
    limit = UPLOAD_LIMIT + MULTIPART_ALLOWANCE

    status, headers, body, reached_django = _post(UPLOAD, [b"x" * 100], length=limit + 1)

    assert status == 413
    assert json.loads(body) == {
        "detail": f"The request body is larger than the limit of {limit} bytes for this address."
    }
    assert headers[b"connection"] == b"close"
    assert not reached_django


@pytest.mark.django_db(transaction=True)
@override_settings(PORTAL_MAX_UPLOAD_BYTES=UPLOAD_LIMIT)
def test_a_body_within_the_limit_reaches_authentication():
    status, _, _, reached_django = _post(UPLOAD, [b"x" * 100], length=100)

    assert status in (401, 403)  # no credentials: the API's answer, not the guard's
    assert reached_django


@pytest.mark.django_db(transaction=True)
@override_settings(PORTAL_MAX_UPLOAD_BYTES=UPLOAD_LIMIT)
def test_a_chunked_body_is_counted_as_it_arrives_and_refused_past_the_limit():
    limit = UPLOAD_LIMIT + MULTIPART_ALLOWANCE
    chunks = [b"x" * 256 * 1024] * 8  # 2 MiB, no Content-Length

    status, _, body, reached_django = _post(UPLOAD, chunks)

    assert status == 413
    assert str(limit) in json.loads(body)["detail"]
    assert not reached_django


@pytest.mark.django_db(transaction=True)
@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1000)
def test_pages_that_take_no_files_keep_the_small_limit_and_answer_in_html():
    status, headers, body, reached_django = _post("/accounts/login/", [b"x"], length=1001)

    assert status == 413
    assert headers[b"content-type"].startswith(b"text/html")
    assert b"larger than the limit of 1000 bytes" in body
    assert not reached_django


def test_each_route_gets_its_own_limit(settings):
    settings.PORTAL_MAX_UPLOAD_BYTES = 5_000_000
    settings.PORTAL_MAX_VERIFY_BYTES = 7_000_000
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1234

    assert body_limit_for("/api/v1/projects/3/datasets/") == 5_000_000 + MULTIPART_ALLOWANCE
    assert (
        body_limit_for("/api/v1/projects/3/fine_tuning/files/") == 5_000_000 + MULTIPART_ALLOWANCE
    )
    assert body_limit_for("/projects/3/datasets/") == 5_000_000 + MULTIPART_ALLOWANCE
    assert body_limit_for("/governance/verify/") == 7_000_000 + MULTIPART_ALLOWANCE
    assert body_limit_for("/api/v1/projects/3/queue/submit/") == 1234
    assert body_limit_for("/accounts/login/") == 1234
    assert body_limit_for("/no/such/page/") == 1234


@pytest.mark.django_db(transaction=True)
def test_the_running_server_refuses_a_large_unauthenticated_body_at_once(asgi_server):
    url = urlsplit(asgi_server)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(
            b"POST /accounts/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 314572800\r\n\r\n" + b"x" * 65536
        )
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data

    assert answer.startswith(b"HTTP/1.1 413 ")
