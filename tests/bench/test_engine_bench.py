import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from serving.engine_supervisor import engine_command
from tests.support import servers

REQUESTS = 8
CLIENTS = 2
MAX_TOKENS = 64


def _stream_tokens(base_url: str, model: str) -> int:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Tell me a story."}],
        "max_tokens": MAX_TOKENS,
        "stream": True,
    }
    tokens = 0
    with httpx.stream("POST", f"{base_url}/chat/completions", json=body, timeout=120) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                usage = json.loads(line[6:]).get("usage")
                tokens = usage["completion_tokens"] if usage else tokens
    return tokens


def test_engine_tokens_per_s(tiny_model_dir, server_log_dir, report):
    port = servers.free_port()
    argv = engine_command(str(tiny_model_dir), host="127.0.0.1", port=port, device="cpu")
    engine = servers.ChildProcess("engine-bench", argv, dict(os.environ), server_log_dir)
    try:
        servers.wait_until_up(engine, f"http://127.0.0.1:{port}/health", timeout=180)
        base_url = f"http://127.0.0.1:{port}/v1"
        _stream_tokens(base_url, str(tiny_model_dir))  # warm-up

        start = time.perf_counter()
        with ThreadPoolExecutor(CLIENTS) as pool:
            counts = list(
                pool.map(lambda _: _stream_tokens(base_url, str(tiny_model_dir)), range(REQUESTS))
            )
        elapsed = time.perf_counter() - start
    finally:
        engine.stop()

    report("engine_tokens_per_s", sum(counts) / elapsed, "tokens/s")
    assert all(count >= 1 for count in counts)
