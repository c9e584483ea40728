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

from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core.handlers.asgi import ASGIHandler


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

    async def get_response_async(self, request):
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)
