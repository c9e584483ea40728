"""Reuse the thread that runs a request's synchronous code (views, middleware, the ORM).

Django's ASGI handler gives each request a fresh ThreadSensitiveContext, and asgiref then
starts a new thread for it and another to join that one at the end: two thread starts per
request, each of which makes the event loop wait for the new thread to get the GIL. On a
busy two-core machine that was a fifth of a web process's time on the annotation queue.

This middleware enters the context first, with a single-thread executor taken from a
pool; Django's own context then finds one already set and keeps out of the way. A request
still runs all its synchronous code on one thread, as Django requires (its database
connection is per thread, and is handed back at request_finished in that same thread).
"""

from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import FileResponse
from django.urls import set_script_prefix


class ReusedRequestThreads:
    """ASGI middleware for HTTP scopes; other scopes (websockets) pass through."""

    def __init__(self, app, *, keep_idle: int = 32):
        self.app = app
        self.keep_idle = keep_idle
        self.idle: list[ThreadPoolExecutor] = []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        # Only the event loop's thread touches `idle`, so it needs no lock.
        executor = self.idle.pop() if self.idle else ThreadPoolExecutor(max_workers=1)
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.app(scope, receive, send)
        except BaseException:
            # A cancelled request (the client went away) may leave code running on the
            # thread; it must not share that thread with the next request.
            executor.shutdown(wait=False)
            raise
        if len(self.idle) < self.keep_idle:
            self.idle.append(executor)
        else:
            executor.shutdown(wait=False)


class SyncChainASGIHandler(ASGIHandler):
    """Django's ASGI handler with its middleware chain built as under WSGI: synchronous,
    entered once per request on the request's thread.

    Every middleware this project uses is synchronous code (Django's own MiddlewareMixin
    classes run their hooks through sync_to_async even in async mode), and so is every
    view. Under the stock handler the chain starts on the event loop, crosses to a thread
    for the first sync-only middleware, back to the loop for the core handler, and to the
    thread again for the view: three hand-overs where one does, each a thread wake-up and
    a wait for the GIL. This handler builds the chain synchronously and enters it once.
    The response is the same: the chain, the view and the exception handling are Django's.
    """

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)

    async def handle(self, scope, receive, send):
        """Django's handle(), with one hand-over to the request's thread where it makes
        three: request_started's receivers, the chain and view, and (for a response whose
        body is already in memory) its close(), which sends request_finished and gives the
        database connection back to the pool, all run there in one go. A streamed response
        is closed after it is sent, as Django does.

        Django also races the view against a listener for the client's disconnect, to
        cancel async views; a synchronous view runs to its end either way, so that
        listener is left out."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        try:
            response = await sync_to_async(self._respond, thread_sensitive=True)(scope, body_file)
            try:
                await self.send_response(response, send)
            finally:
                if response.streaming:
                    await sync_to_async(response.close)()
        finally:
            body_file.close()

    def _respond(self, scope, body_file):
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            response = self.get_response(request)
            response._handler_class = self.__class__
            if isinstance(response, FileResponse):
                response.block_size = self.chunk_size
        if not response.streaming:
            response.close()
        elif not response.is_async:
            # Django would pull a synchronous iterator to its end into a list before sending
            # a byte (an export of a million rows, whole in memory); pull it in batches on
            # the request's thread instead, sending each before the next is made.
            response.streaming_content = _in_batches(response.streaming_content)
        return response


STREAM_BATCH_BYTES = 256 * 1024


def _take_batch(parts: Iterator[bytes]) -> bytes | None:
    """The next parts of `parts`, joined, up to about STREAM_BATCH_BYTES; None at the end."""
    batch: list[bytes] = []
    size = 0
    for part in parts:
        batch.append(part)
        size += len(part)
        if size >= STREAM_BATCH_BYTES:
            break
    return b"".join(batch) if batch else None


async def _in_batches(parts: Iterator[bytes]) -> AsyncIterator[bytes]:
    # thread_sensitive: the iterator may hold a database cursor of the request's thread.
    take = sync_to_async(_take_batch, thread_sensitive=True)
    while (batch := await take(parts)) is not None:
        yield batch
