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

from asgiref.sync import ThreadSensitiveContext


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
