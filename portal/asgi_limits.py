"""Refuse request bodies over their route's limit before any of Django runs.

Django reads a whole body (to a temporary file past FILE_UPLOAD_MAX_MEMORY_SIZE) before the
first middleware, so a client could make every worker read and store hundreds of megabytes
without logging in. This middleware answers 413 as soon as the declared Content-Length, or
the bytes of a chunked body counted as they arrive, pass the limit: the file-upload routes
accept up to their file limit (plus room for the form around the file), every other route
Django's DATA_UPLOAD_MAX_MEMORY_SIZE. No session, database or authentication work happens
for a refused body.
"""

import json
from collections.abc import Callable

from django.conf import settings
from django.urls import Resolver404, resolve
from rest_framework.parsers import FileUploadParser, MultiPartParser

# Boundaries, headers and the provenance fields sent with a file.
MULTIPART_ALLOWANCE = 1024**2


# Function views that read request.FILES, by URL name, with their file limit. DRF views
# that accept multipart bodies are found by their parser classes.
def _dataset_file_limit() -> int:
    return settings.PORTAL_MAX_UPLOAD_BYTES


UPLOAD_VIEWS: dict[str, Callable[[], int]] = {
    "annotation:datasets": _dataset_file_limit,
    "training:job_new": _dataset_file_limit,
    "evaluation:overview": _dataset_file_limit,
    "governance:verify": lambda: settings.PORTAL_MAX_VERIFY_BYTES,
}


class BodyTooLarge(Exception):  # noqa: N818 - it names the condition, like Http404
    pass


def body_limit_for(path_info: str) -> int | None:
    """The most bytes a request body to `path_info` (the path below the script prefix)
    may have; None for no limit."""
    try:
        match = resolve(path_info)
    except Resolver404:
        return _small_limit()
    file_limit = UPLOAD_VIEWS.get(match.view_name)
    view_class = getattr(match.func, "cls", None)
    if file_limit is None and view_class is not None:
        parsers = getattr(view_class, "parser_classes", ())
        if any(issubclass(p, MultiPartParser | FileUploadParser) for p in parsers):
            file_limit = _dataset_file_limit
    if file_limit is None:
        return _small_limit()
    return file_limit() + MULTIPART_ALLOWANCE


def _small_limit() -> int | None:
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def _declared_length(scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _wants_json(scope) -> bool:
    if scope.get("path", "").startswith("/api/"):
        return True
    accept = next((v for k, v in scope.get("headers", ()) if k.lower() == b"accept"), b"")
    return b"application/json" in accept and b"text/html" not in accept


async def _refuse(scope, send, limit: int) -> None:
    message = f"The request body is larger than the limit of {limit} bytes for this address."
    if _wants_json(scope):
        body = json.dumps({"detail": message}).encode()
        content_type = b"application/json"
    else:
        body = (
            "<!doctype html><title>Request too large</title>"
            f"<h1>Request too large</h1><p>{message}</p>"
        ).encode()
        content_type = b"text/html; charset=utf-8"
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                # The rest of the body is never read: the connection cannot be reused.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodySizeLimit:
    """ASGI middleware for HTTP scopes; other scopes (websockets, lifespan) pass through."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        # As Django's ASGIRequest derives path_info from the scope.
        limit = body_limit_for(scope["path"].removeprefix(scope.get("root_path", "")) or "/")
        if limit is None:
            return await self.app(scope, receive, send)
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            return await _refuse(scope, send, limit)

        received = 0
        started = False

        async def counted_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge
            return message

        async def watched_send(message):
            nonlocal started
            started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge:
            # Raised while Django read the body, before it started a response.
            if started:
                raise
            await _refuse(scope, send, limit)
