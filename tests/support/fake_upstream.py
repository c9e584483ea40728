"""An OpenAI-compatible upstream for gateway tests: answers /v1/models, /v1/chat/completions
(plain and streamed) and /v1/completions with a fixed reply, and can be told to fail (500s)
or slow down on cue, as a canary that goes bad would. Runs in a thread of the test process.

The reply names the upstream (`reply` prefix), so a test can tell which arm answered.

It also answers vLLM's `POST /classify` as a classifier engine would: a text containing one
of `flag_words` gets probs [0.02, 0.98] (class 1, the harmful one), any other [0.97, 0.03].
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Server(ThreadingHTTPServer):
    # socketserver listens with a backlog of 5: a burst of new connections (a gateway
    # opening its pool under 8 concurrent streams) overflows it, the kernel drops the SYN
    # and the client retries after its 1 s retransmission timeout. Real engines (uvicorn,
    # vLLM) listen with 2048.
    request_queue_size = 2048


class FakeUpstream:
    def __init__(self, name: str = "upstream", *, words: int = 8, token_delay_s: float = 0.0):
        self.name = name
        self.words = words
        self.token_delay_s = token_delay_s
        self.fail = False  # answer 500 to completions
        self.delay_s = 0.0  # wait this long before answering
        self.requests: list[dict[str, Any]] = []
        self.connections = 0  # TCP connections accepted
        self.close_after = False  # answer with `Connection: close`
        self.flag_words: tuple[str, ...] = ()  # /classify: what class 1 is about
        self._lock = threading.Lock()
        self.server = _Server(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reply_words(self) -> list[str]:
        return [self.name] + [f"w{i}" for i in range(1, self.words)]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: without TCP_NODELAY, Nagle's algorithm
            # and the client's delayed ACK hold the body back ~40 ms, as no real engine does.
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with upstream._lock:
                    upstream.connections += 1

            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if upstream.close_after:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path.rstrip("/") in ("/v1/models", "/health"):
                    self._send(200, {"object": "list", "data": [{"id": upstream.name}]})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with upstream._lock:
                    upstream.requests.append({"path": self.path, "body": body})
                if upstream.delay_s:
                    time.sleep(upstream.delay_s)
                if upstream.fail:
                    self._send(500, {"error": {"message": "upstream broke", "type": "server"}})
                    return
                if self.path.rstrip("/").endswith("/classify"):
                    self._classify(body)
                    return
                chat = self.path.endswith("/chat/completions")
                if not chat and not self.path.endswith("/completions"):
                    self._send(404, {"error": {"message": "not found"}})
                    return
                words = upstream.reply_words()
                prompt = json.dumps(body.get("messages") or body.get("prompt") or "")
                usage = {
                    "prompt_tokens": max(1, len(prompt.split())),
                    "completion_tokens": len(words),
                    "total_tokens": max(1, len(prompt.split())) + len(words),
                }
                if body.get("stream"):
                    self._stream(chat, words, usage, body)
                    return
                text = " ".join(words)
                choice = (
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                    if chat
                    else {"index": 0, "text": text, "finish_reason": "stop"}
                )
                self._send(
                    200,
                    {
                        "id": "up-1",
                        "object": "chat.completion" if chat else "text_completion",
                        "created": int(time.time()),
                        "model": body.get("model", upstream.name),
                        "choices": [choice],
                        "usage": usage,
                    },
                )

            def _classify(self, body: dict) -> None:
                if body.get("messages"):
                    texts = ["\n".join(m["content"] for m in body["messages"])]
                else:
                    raw = body.get("input")
                    texts = [raw] if isinstance(raw, str) else list(raw or [])
                data = []
                for index, text in enumerate(texts):
                    hit = any(word in text for word in upstream.flag_words)
                    probs = [0.02, 0.98] if hit else [0.97, 0.03]
                    data.append({"index": index, "label": "harmful" if hit else "harmless",
                                 "probs": probs, "num_classes": 2})  # fmt: skip
                self._send(
                    200,
                    {"id": "classify-1", "object": "list", "created": int(time.time()),
                     "model": body.get("model"), "data": data,
                     "usage": {"prompt_tokens": 1, "total_tokens": 1}},
                )  # fmt: skip

            def _stream(self, chat: bool, words: list[str], usage: dict, body: dict) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()

                def chunk(payload: dict | str) -> None:
                    text = payload if isinstance(payload, str) else json.dumps(payload)
                    data = f"data: {text}\n\n".encode()
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    self.wfile.flush()

                for i, word in enumerate(words):
                    if upstream.token_delay_s:
                        time.sleep(upstream.token_delay_s)
                    piece = word if i == 0 else " " + word
                    delta = (
                        {"index": 0, "delta": {"content": piece}, "finish_reason": None}
                        if chat
                        else {"index": 0, "text": piece, "finish_reason": None}
                    )
                    chunk(
                        {
                            "id": "up-1",
                            "object": "chat.completion.chunk" if chat else "text_completion",
                            "created": int(time.time()),
                            "model": body.get("model", upstream.name),
                            "choices": [delta],
                        }
                    )
                final: dict[str, Any] = {
                    "id": "up-1",
                    "object": "chat.completion.chunk" if chat else "text_completion",
                    "created": int(time.time()),
                    "model": body.get("model", upstream.name),
                    "choices": [],
                    "usage": usage,
                }
                chunk(final)
                chunk("[DONE]")
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

        return Handler
