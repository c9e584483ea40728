"""A lean HTTP/1.1 client for the gateway's engines: a pool of kept-alive connections per
engine, each request written in one send and its response parsed by httptools (the parser
uvicorn uses), body chunks handed on as they arrive.

Why not httpx: on the gateway's path httpx cost about a millisecond of CPU per request
(its layers of request/response models, anyio streams and h11), most of the gateway's
whole overhead budget; this client does the one thing needed, POST JSON and relay the
answer, in a tenth of that. What it does not do: redirects, proxies, HTTP/2, cookies.
"""

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httptools


class UpstreamBroken(Exception):  # noqa: N818 - names the condition
    """The engine closed the connection or sent something that is not HTTP."""


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.head: asyncio.Future | None = None
        self.chunks: asyncio.Queue | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.complete = False
        self.received = False
        self.keep_alive = False

    # asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received = True
        if self.head is None:  # nothing asked: not a conversation we can follow
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(UpstreamBroken(f"bad HTTP from the engine: {error}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(UpstreamBroken("the engine closed the connection"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        # Read here: once the message is complete llhttp has reset its flags and
        # should_keep_alive() says False, which closed every connection after one request.
        self.keep_alive = self.parser.should_keep_alive()
        if self.head is not None and not self.head.done():
            self.head.set_result(self.parser.get_status_code())

    def on_body(self, body: bytes) -> None:
        if self.chunks is not None:
            self.chunks.put_nowait(body)

    def on_message_complete(self) -> None:
        self.complete = True
        if self.chunks is not None:
            self.chunks.put_nowait(None)

    # ours
    def send(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        self.head = loop.create_future()
        self.chunks = asyncio.Queue()
        self.headers = []
        self.complete = False
        self.received = False
        self.keep_alive = False
        assert self.transport is not None  # noqa: S101 - set by connection_made
        self.transport.write(data)

    def _fail(self, error: Exception) -> None:
        if self.head is not None and not self.head.done():
            self.head.set_exception(error)
        elif self.chunks is not None and not self.complete:
            self.chunks.put_nowait(error)

    def close(self) -> None:
        self.closed = True
        if self.head is not None and not self.head.done():
            self.head.cancel()  # nobody waits for it any more
        if self.transport is not None:
            self.transport.close()

    @property
    def reusable(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()


class UpstreamResponse:
    def __init__(self, pool: "UpstreamPool", conn: _Connection, status: int, read_timeout: float):
        self.pool = pool
        self.conn = conn
        self.status_code = status
        self.read_timeout = read_timeout
        self.content = b""
        self._finished = False

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        assert self.conn.chunks is not None  # noqa: S101 - set by send
        chunks = self.conn.chunks
        while True:
            if not chunks.empty():
                item = chunks.get_nowait()
            else:
                try:
                    # asyncio.timeout, not wait_for: no task made per chunk of a stream.
                    async with asyncio.timeout(self.read_timeout):
                        item = await chunks.get()
                except TimeoutError:
                    self.conn.close()
                    raise UpstreamBroken("the engine stopped sending") from None
            if item is None:
                self._finished = True
                return
            if isinstance(item, Exception):
                raise item
            yield item

    async def aread(self) -> bytes:
        self.content = b"".join([chunk async for chunk in self.aiter_bytes()])
        return self.content

    def json(self) -> Any:
        return json.loads(self.content)

    async def aclose(self) -> None:
        """Back to the pool when the answer was read to its end, else the connection goes."""
        if self._finished and self.conn.keep_alive:
            self.pool.release(self.conn)
        else:
            self.conn.close()


class UpstreamPool:
    """Kept-alive connections to one engine (`base_url` ends in /v1)."""

    MAX_IDLE = 64

    def __init__(self, base_url: str, *, timeout: float, connect_timeout: float) -> None:
        url = urlsplit(base_url)
        self.https = url.scheme == "https"
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or (443 if self.https else 80)
        self.prefix = url.path.rstrip("/")
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.idle: list[_Connection] = []
        host = self.host if url.port is None else f"{self.host}:{self.port}"
        self._head = f"Host: {host}\r\nContent-Type: application/json\r\nAccept: */*\r\n"

    def release(self, conn: _Connection) -> None:
        if conn.reusable and len(self.idle) < self.MAX_IDLE:
            self.idle.append(conn)
        else:
            conn.close()

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        context = ssl.create_default_context() if self.https else None
        _, conn = await asyncio.wait_for(
            loop.create_connection(
                _Connection,
                self.host,
                self.port,
                ssl=context,
                server_hostname=self.host if context else None,
            ),
            self.connect_timeout,
        )
        return conn

    async def post(self, path: str, body: bytes) -> UpstreamResponse:
        """POST `body` (JSON) to `path` below the base URL; returns once the status line and
        headers are in. Raises TimeoutError, OSError or UpstreamBroken."""
        request = (
            f"POST {self.prefix}{path} HTTP/1.1\r\n{self._head}Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        while True:
            conn = None
            while self.idle and conn is None:
                candidate = self.idle.pop()
                conn = candidate if candidate.reusable else None
            reused = conn is not None
            if conn is None:
                conn = await self._connect()
            conn.send(request)
            assert conn.head is not None  # noqa: S101 - set by send
            try:
                async with asyncio.timeout(self.timeout):
                    status = await conn.head
            except UpstreamBroken:
                # A kept-alive connection the engine had closed while idle: try a fresh one.
                if reused and not conn.received:
                    conn.close()
                    continue
                conn.close()
                raise
            except BaseException:
                conn.close()
                raise
            return UpstreamResponse(self, conn, status, self.timeout)

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()
