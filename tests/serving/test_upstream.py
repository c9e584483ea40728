"""The gateway's HTTP/1.1 client for engines: connections kept alive and reused across
requests, plain and streamed, and let go when the engine says so or closed one while idle."""

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from serving.gateway.upstream import UpstreamPool
from tests.support.fake_upstream import FakeUpstream

BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
STREAM = json.dumps(
    {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
).encode()


def _run_loop(coroutine):
    """asyncio.run on a thread of its own: the browser tests' sync Playwright leaves a loop
    running on the main thread."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@pytest.fixture
def upstream():
    up = FakeUpstream("engine", words=5)
    yield up
    up.stop()


def _run(up: FakeUpstream, bodies: list[bytes]) -> list[bytes]:
    async def main() -> list[bytes]:
        pool = UpstreamPool(up.base_url, timeout=5, connect_timeout=5)
        out = []
        for body in bodies:
            response = await pool.post("/chat/completions", body)
            assert response.status_code == 200
            out.append(await response.aread())
            await response.aclose()
        pool.close()
        return out

    return _run_loop(main())


def test_one_connection_serves_many_requests(upstream):
    answers = _run(upstream, [BODY, STREAM, BODY, STREAM, BODY])
    assert len(upstream.requests) == 5
    assert upstream.connections == 1
    assert json.loads(answers[0])["choices"][0]["message"]["content"].startswith("engine")
    assert answers[1].rstrip().endswith(b"data: [DONE]")


def test_connection_close_is_honoured(upstream):
    upstream.close_after = True
    _run(upstream, [BODY, BODY, BODY])
    assert upstream.connections == 3


def test_a_connection_the_engine_dropped_while_idle_is_replaced(upstream):
    async def main() -> bytes:
        pool = UpstreamPool(upstream.base_url, timeout=5, connect_timeout=5)
        response = await pool.post("/chat/completions", BODY)
        await response.aread()
        await response.aclose()
        assert len(pool.idle) == 1
        # The engine restarts: its side of the idle connection goes away.
        pool.idle[0].transport.abort()
        await asyncio.sleep(0.05)
        response = await pool.post("/chat/completions", BODY)
        data = await response.aread()
        await response.aclose()
        pool.close()
        return data

    assert json.loads(_run_loop(main()))["object"] == "chat.completion"
    assert upstream.connections == 2
