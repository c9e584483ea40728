"""The gateway's ASGI app: `POST /v1/chat/completions`, `POST /v1/completions` (plain, or
streamed as server-sent events relayed event by event), `GET /v1/models` and
`POST /v1/feedback`, authenticated with deployment keys (`Authorization: Bearer sk-tp-…`).

A request is: key (cached) → body (at most SERVING_GATEWAY_MAX_BODY_BYTES) → route
(cached) → limits (Redis) → arm (sticky split) → input guardrails → engine (a pool of
kept-alive connections per engine, upstream.py) → output guardrails → answer → telemetry,
limits' token count and the shadow copy, all after the answer is complete.

Guardrail refusals follow OpenAI's (Azure OpenAI's) content filter: a refused prompt is a
400 with code "content_filter"; a refused answer is a normal 200 completion whose text is
replaced by a refusal and whose finish_reason is "content_filter". A streamed answer with
output guardrails active is held back to the end of each sentence or line, checked, then
sent: the client still sees text as it is made, one sentence late; a pattern that spans two
sentences is not seen, and text already sent cannot be recalled when a later sentence is
refused (the stream ends there with finish_reason "content_filter"). A classifier guardrail
(guardrails.ClassifierPolicy) is asked about the whole prompt, and about the answer so far
at each release, in its own engine (classify.py).

A canary that fails (5xx, a connection error, a timeout) before any byte reached the client
falls back to stable; the request's telemetry row says arm "canary", fell_back, and the
canary's failure status, so the rollback rules count it against the canary.
"""

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from serving.gateway.classify import ClassifierUnavailable, classify_score, conversation
from serving.gateway.errors import (
    GatewayError,
    UpstreamFailure,
    bad_request,
    invalid_key,
    unknown_model,
)
from serving.gateway.limits import Limits
from serving.gateway.routing import GatewayCache, RouteEntry, end_user_pseudonym, pick_upstream
from serving.gateway.upstream import UpstreamBroken, UpstreamPool, UpstreamResponse
from serving.guardrails import Policy, check_messages, check_text
from serving.selectors import GatewayKey, Route, Upstream
from serving.services.feedback import feedback_record
from serving.services.telemetry import telemetry_record

log = logging.getLogger(__name__)

Send = Callable[[dict[str, Any]], Awaitable[None]]
KEY_PREFIX = "sk-tp-"
KEY_MAX_LENGTH = 128
FEEDBACK_TRIES = 4
REFUSAL = "This answer was withheld by the deployment's content policy."
JSON = (b"content-type", b"application/json")
# Where a held-back streamed text may be cut for checking: after a sentence's end or a line.
SENTENCE_END = re.compile(r"[.!?][\"')\]]*\s|\n")


def _prompt_texts(prompt: Any) -> list[str]:
    """The strings of a completions prompt (a string, or a list of strings or token ids)."""
    return [p for p in (prompt if isinstance(prompt, list) else [prompt]) if isinstance(p, str)]


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


class ClientGone(Exception):  # noqa: N818 - names the condition
    pass


@dataclass
class Call:
    """One completion request as it goes through the gateway, and what telemetry records."""

    key: GatewayKey
    entry: RouteEntry
    endpoint: str  # "chat.completions" | "completions"
    path: str  # "/chat/completions" | "/completions"
    payload: dict[str, Any]
    request_id: str
    started: float
    created_at: Any
    stream: bool
    end_user: str
    flags: list[str] = field(default_factory=list)
    upstream_body: dict[str, Any] = field(default_factory=dict)

    @property
    def route(self) -> Route:
        return self.entry.route

    @property
    def policy(self) -> Policy:
        return self.entry.policy


class GatewayApp:
    def __init__(self) -> None:
        self.cache = GatewayCache(settings.SERVING_GATEWAY_CACHE_S)
        self.limits = Limits()
        self.max_body = settings.SERVING_GATEWAY_MAX_BODY_BYTES
        self.timeout = settings.SERVING_GATEWAY_UPSTREAM_TIMEOUT_S
        self.classifier_timeout = settings.SERVING_GATEWAY_CLASSIFIER_TIMEOUT_S
        self.pools: dict[str, UpstreamPool] = {}
        self.background: set[asyncio.Task] = set()

    # -- ASGI ------------------------------------------------------------------------------

    async def __call__(self, scope, receive, send) -> None:
        path = scope["path"].rstrip("/")
        method = scope["method"]
        handler = {
            ("POST", "/v1/chat/completions"): self.chat,
            ("POST", "/v1/completions"): self.completions,
            ("GET", "/v1/models"): self.models,
            ("POST", "/v1/feedback"): self.feedback,
        }.get((method, path))
        try:
            if handler is None:
                known = {"/v1/chat/completions", "/v1/completions", "/v1/models", "/v1/feedback"}
                if path in known:
                    raise GatewayError(405, f"{method} is not allowed on {path}.")
                raise GatewayError(404, f"Unknown path {path}.", code="unknown_url")
            await handler(scope, receive, send)
        except GatewayError as error:
            await self._send_error(send, error)
        except ClientGone:
            return

    async def _send_error(self, send: Send, error: GatewayError, request_id: str = "") -> None:
        body = error.body()
        headers = [JSON, (b"content-length", str(len(body)).encode()), *error.headers]
        if request_id:
            headers.append((b"x-request-id", request_id.encode()))
        if error.status == 413:
            headers.append((b"connection", b"close"))  # the rest of the body is never read
        await send({"type": "http.response.start", "status": error.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _send_json(self, send: Send, status: int, body: bytes, request_id: str = ""):
        headers = [JSON, (b"content-length", str(len(body)).encode())]
        if request_id:
            headers.append((b"x-request-id", request_id.encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _read_json(self, scope, receive) -> dict[str, Any]:
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body:
                raise self._too_large()
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise self._too_large()
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        try:
            payload = json.loads(b"".join(chunks))
        except (ValueError, UnicodeDecodeError) as error:
            raise bad_request(f"The body is not valid JSON: {error}.") from None
        if not isinstance(payload, dict):
            raise bad_request("The body must be a JSON object.")
        return payload

    def _too_large(self) -> GatewayError:
        return GatewayError(
            413,
            f"The request body is larger than the limit of {self.max_body} bytes.",
            code="request_too_large",
        )

    async def _authenticate(self, scope) -> GatewayKey:
        raw = ""
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer":
                    raw = token.strip()
                break
        # Refused before any lookup: not our key's shape.
        if not raw.startswith(KEY_PREFIX) or len(raw) > KEY_MAX_LENGTH:
            raise invalid_key()
        key = await self.cache.key(raw)
        if key is None:
            raise invalid_key()
        return key

    async def _route_for_key(self, key: GatewayKey) -> RouteEntry | None:
        for entry in (await self.cache.routes()).values():
            if entry.route.deployment_id == key.deployment_id:
                return entry
        return None

    # -- GET /v1/models --------------------------------------------------------------------

    async def models(self, scope, receive, send) -> None:
        key = await self._authenticate(scope)
        entry = await self._route_for_key(key)
        data = []
        if entry is not None:
            route = entry.route
            data.append(
                {"id": route.name, "object": "model", "created": route.created_at,
                 "owned_by": "tuning-portal"}
            )  # fmt: skip
        await self._send_json(send, 200, _dumps({"object": "list", "data": data}))

    # -- POST /v1/feedback -----------------------------------------------------------------

    async def feedback(self, scope, receive, send) -> None:
        key = await self._authenticate(scope)
        payload = await self._read_json(scope, receive)
        request_id = payload.get("request_id")
        if not isinstance(request_id, str) or not request_id:
            raise bad_request("Name the answer: `request_id` is required.", param="request_id")
        score = payload.get("score")
        thumbs = payload.get("thumbs")
        if score is None and thumbs is not None:
            if thumbs not in ("up", "down"):
                raise bad_request('`thumbs` is "up" or "down".', param="thumbs")
            score = 1.0 if thumbs == "up" else -1.0
        if isinstance(score, bool) or not isinstance(score, int | float) or not -1 <= score <= 1:
            raise bad_request(
                'Give `thumbs` ("up" or "down") or a `score` from -1 to 1.', param="score"
            )
        comment = payload.get("comment")
        if comment is not None and not isinstance(comment, str):
            raise bad_request("`comment` is a string.", param="comment")

        def record() -> Any:
            try:
                return feedback_record(
                    deployment_id=key.deployment_id,
                    request_id=request_id,
                    score=float(score),
                    comment=comment or "",
                    key_id=key.key_id,
                )
            finally:
                connection.close()

        try:
            # The answer's telemetry row is written in batches a fraction of a second after
            # the answer (by whichever process served it): a prompt thumbs-up may come first.
            for attempt in range(FEEDBACK_TRIES):
                try:
                    saved = await sync_to_async(record, thread_sensitive=False)()
                    break
                except LookupError:
                    if attempt == FEEDBACK_TRIES - 1:
                        raise
                    await asyncio.sleep(0.25)
        except LookupError:
            raise GatewayError(
                404,
                f"No answer `{request_id}` of this key's deployment.",
                param="request_id",
                code="request_not_found",
            ) from None
        except ValidationError as error:
            field_name, messages = next(iter(error.message_dict.items()))
            raise bad_request(" ".join(messages), param=field_name) from None
        body = {"object": "feedback", "id": saved.pk, "request_id": request_id,
                "score": saved.score}  # fmt: skip
        await self._send_json(send, 200, _dumps(body))

    # -- POST /v1/chat/completions, /v1/completions ----------------------------------------

    async def chat(self, scope, receive, send) -> None:
        await self._complete(scope, receive, send, "chat.completions", "/chat/completions")

    async def completions(self, scope, receive, send) -> None:
        await self._complete(scope, receive, send, "completions", "/completions")

    async def _complete(self, scope, receive, send, endpoint: str, path: str) -> None:
        started = time.perf_counter()
        created_at = timezone.now()
        key = await self._authenticate(scope)
        payload = await self._read_json(scope, receive)
        model = payload.get("model")
        if not isinstance(model, str) or not model:
            raise bad_request("`model` is required.", param="model")
        entry = (await self.cache.routes()).get(model)
        if entry is None or entry.route.deployment_id != key.deployment_id:
            raise unknown_model(model)
        chat = endpoint == "chat.completions"
        if chat:
            messages = payload.get("messages")
            if not isinstance(messages, list) or not messages:
                raise bad_request("`messages` is required: a non-empty list.", param="messages")
            if not all(isinstance(m, dict) and "role" in m for m in messages):
                raise bad_request("Each message is an object with a `role`.", param="messages")
        else:
            prompt = payload.get("prompt")
            if not isinstance(prompt, str | list) or prompt in ("", []):
                raise bad_request("`prompt` is required: a string or a list.", param="prompt")
        stream = payload.get("stream", False)
        if not isinstance(stream, bool):
            raise bad_request("`stream` is true or false.", param="stream")
        user = payload.get("user")
        if user is not None and not isinstance(user, str):
            raise bad_request("`user` is a string.", param="user")
        await self.limits.admit(key)

        prefix = "chatcmpl-" if chat else "cmpl-"
        call = Call(
            key=key,
            entry=entry,
            endpoint=endpoint,
            path=path,
            payload=payload,
            request_id=prefix + uuid.uuid4().hex,
            started=started,
            created_at=created_at,
            stream=stream,
            end_user=end_user_pseudonym(user or ""),
        )
        upstream = pick_upstream(entry.route, user or f"key:{key.key_id}")
        if upstream is None:
            raise GatewayError(
                503, f"No engine of `{model}` is ready.", type="server_error", code="no_engine"
            )

        # Input guardrails: the engine only ever sees what they let through.
        body = dict(payload)
        if call.policy.active:
            if chat:
                body["messages"], verdict = check_messages(call.policy, payload["messages"])
            else:
                body["prompt"], verdict = self._check_prompt(call.policy, payload["prompt"])
            call.flags.extend(verdict.flags)
            if not verdict.refused and call.policy.classifies("input"):
                asked = (
                    {"messages": conversation(body["messages"])}
                    if chat
                    else {"input": _prompt_texts(body["prompt"])}
                )
                verdict.refused = await self.classify(call, "input", asked)
            if verdict.refused:
                error = bad_request(
                    "The prompt was refused by the deployment's content policy.",
                    param="messages" if chat else "prompt",
                    code="content_filter",
                )
                await self._send_error(send, error, call.request_id)
                self._record(call, upstream, status=400, error="content_filter: input")
                return
        call.upstream_body = body
        if stream:
            await self._relay_stream(call, upstream, send)
        else:
            await self._relay_plain(call, upstream, send)

    @staticmethod
    def _check_prompt(policy: Policy, prompt: Any) -> tuple[Any, Any]:
        if isinstance(prompt, str):
            verdict = check_text(policy, prompt, where="input")
            return verdict.text, verdict
        # A list of prompts (strings) or of token ids: check the strings.
        total = check_text(policy, "", where="input")
        out = []
        for item in prompt:
            if isinstance(item, str):
                verdict = check_text(policy, item, where="input")
                total.refused |= verdict.refused
                total.flags.extend(f for f in verdict.flags if f not in total.flags)
                item = verdict.text
            out.append(item)
        return out, total

    async def classify(self, call: Call, where: str, asked: dict[str, Any]) -> bool:
        """Ask the deployment's classifier about `asked` (an `input` list or `messages`);
        record its flag; True when the policy refuses the text."""
        policy = call.policy.classifier
        if policy is None or not asked.get("input") and not asked.get("messages"):
            return False
        if policy.upstream is None:
            self._flag(call, f"{where}:classifier:unavailable")
            return False
        # vLLM serves /classify at its root, beside /v1.
        pool = self._pool(policy.upstream.base_url.removesuffix("/v1"), self.classifier_timeout)
        try:
            score = await classify_score(
                pool, policy.upstream.served_model, asked, timeout=self.classifier_timeout
            )
        except ClassifierUnavailable as error:
            log.warning("gateway: classifier of %s unavailable: %s", call.route.name, error)
            self._flag(call, f"{where}:classifier:unavailable")
            return False
        if score < policy.threshold:
            return False
        self._flag(call, f"{where}:classifier")
        return policy.action == "refuse"

    @staticmethod
    def _flag(call: Call, flag: str) -> None:
        if flag not in call.flags:
            call.flags.append(flag)

    # -- engines ---------------------------------------------------------------------------

    def _pool(self, base_url: str, timeout: float) -> UpstreamPool:
        """The kept-alive connections to the server at `base_url`, made on first use."""
        pool = self.pools.get(base_url)
        if pool is None:
            pool = self.pools[base_url] = UpstreamPool(
                base_url, timeout=timeout, connect_timeout=min(5.0, timeout)
            )
        return pool

    def _request_body(self, call: Call, upstream: Upstream, *, stream: bool) -> bytes:
        body = {**call.upstream_body, "model": upstream.served_model, "stream": stream}
        if stream:
            # Usage arrives in a last chunk only when asked for; the client's own choice
            # decides whether that chunk is passed on.
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        else:
            body.pop("stream_options", None)
        return _dumps(body)

    async def _open(self, call: Call, upstream: Upstream, *, stream: bool) -> UpstreamResponse:
        """The engine's response, its headers read (and its body too when not streamed);
        UpstreamFailure for a 5xx, a connection error or a timeout."""
        try:
            response = await self._pool(upstream.base_url, self.timeout).post(
                call.path, self._request_body(call, upstream, stream=stream)
            )
            if not stream or response.status_code >= 400:
                await response.aread()
        except TimeoutError:
            raise UpstreamFailure(504, "timed out") from None
        except (OSError, UpstreamBroken) as error:
            raise UpstreamFailure(502, type(error).__name__) from None
        if response.status_code >= 500:
            await response.aclose()
            raise UpstreamFailure(
                502, f"answered {response.status_code}", upstream_status=response.status_code
            )
        return response

    async def _open_with_fallback(
        self, call: Call, upstream: Upstream, *, stream: bool
    ) -> tuple[UpstreamResponse | None, Upstream, UpstreamFailure | None, UpstreamFailure | None]:
        """(response, arm that answered, the canary's failure if it fell back, the final
        failure if nothing answered)."""
        try:
            return await self._open(call, upstream, stream=stream), upstream, None, None
        except UpstreamFailure as failure:
            stable = call.route.stable
            if upstream.arm != "canary" or stable is None:
                return None, upstream, None, failure
            try:
                return await self._open(call, stable, stream=stream), stable, failure, None
            except UpstreamFailure as second:
                return None, stable, failure, second

    async def _relay_plain(self, call: Call, upstream: Upstream, send: Send) -> None:
        response, answered, canary_failure, failure = await self._open_with_fallback(
            call, upstream, stream=False
        )
        if response is None:
            failure = failure or UpstreamFailure(502, "no answer")
            await self._send_error(send, failure.as_error(), call.request_id)
            self._record_failure(call, upstream, answered, canary_failure, failure)
            return
        status = response.status_code
        await response.aclose()
        try:
            data = response.json()
        except ValueError:
            data = None
        if status >= 400 or not isinstance(data, dict):
            # The engine refused the request (a bad parameter): its answer, in our shape.
            error = self._engine_error(status, data)
            await self._send_error(send, error, call.request_id)
            self._record(call, upstream, status=error.status, error=error.message[:200],
                         fell_back=canary_failure is not None)  # fmt: skip
            return

        data["id"] = call.request_id
        data["model"] = call.route.name
        texts = []
        for choice in data.get("choices") or []:
            holder, name = self._text_slot(choice)
            text = holder.get(name) if holder is not None else None
            if not isinstance(text, str):
                continue
            if call.policy.active:
                verdict = check_text(call.policy, text, where="output")
                call.flags.extend(f for f in verdict.flags if f not in call.flags)
                if not verdict.refused and call.policy.classifies("output"):
                    verdict.refused = await self.classify(
                        call, "output", self._answer_asked(call, verdict.text)
                    )
                if verdict.refused:
                    text = REFUSAL
                    choice["finish_reason"] = "content_filter"
                else:
                    text = verdict.text
                holder[name] = text
            texts.append(text)
        usage = data.get("usage") or {}
        await self._send_json(send, 200, _dumps(data), call.request_id)
        await self._finish(
            call,
            upstream,
            answered,
            canary_failure,
            usage=usage,
            ttft_ms=None,
            text="".join(texts),
        )

    @staticmethod
    def _answer_asked(call: Call, answer: str) -> dict[str, Any]:
        """What the classifier is asked about an answer: the conversation it ends (chat),
        or the prompt followed by it (completions)."""
        if call.endpoint == "chat.completions":
            return {"messages": conversation(call.upstream_body.get("messages") or [], answer)}
        prompts = _prompt_texts(call.upstream_body.get("prompt"))
        return {"input": [(prompts[0] if prompts else "") + answer]}

    @staticmethod
    def _text_slot(choice: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
        if isinstance(choice.get("message"), dict):
            return choice["message"], "content"
        if isinstance(choice.get("delta"), dict):
            return choice["delta"], "content"
        return choice, "text"

    @staticmethod
    def _engine_error(status: int, data: Any) -> GatewayError:
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return GatewayError(
                status if 400 <= status < 500 else 502,
                error["message"],
                type=str(error.get("type") or "invalid_request_error"),
                param=error.get("param"),
                code=error.get("code"),
            )
        if 400 <= status < 500:
            return GatewayError(status, f"The model's engine refused the request ({status}).")
        return GatewayError(502, "The model's engine sent an answer that is not JSON.",
                            type="server_error", code="upstream_error")  # fmt: skip

    async def _relay_stream(self, call: Call, upstream: Upstream, send: Send) -> None:
        response, answered, canary_failure, failure = await self._open_with_fallback(
            call, upstream, stream=True
        )
        if response is None:
            failure = failure or UpstreamFailure(502, "no answer")
            await self._send_error(send, failure.as_error(), call.request_id)
            self._record_failure(call, upstream, answered, canary_failure, failure)
            return
        if response.status_code >= 400:
            try:
                data = response.json()
            except ValueError:
                data = None
            await response.aclose()
            error = self._engine_error(response.status_code, data)
            await self._send_error(send, error, call.request_id)
            self._record(call, upstream, status=error.status, error=error.message[:200],
                         fell_back=canary_failure is not None)  # fmt: skip
            return

        relay = StreamRelay(call, send, self)
        error = ""
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-cache"),
                    (b"x-request-id", call.request_id.encode()),
                    (b"x-accel-buffering", b"no"),
                ],
            }
        )
        try:
            async for chunk in response.aiter_bytes():
                # Read on after [DONE] to the end of the engine's message (the connection
                # goes back to the pool); a refused stream stops reading at once.
                if not await relay.feed(chunk) and not relay.done:
                    break
            await relay.close()
        except UpstreamBroken as failure:
            error = f"stream broke: {type(failure).__name__}"
            await relay.fail("The model's engine stopped answering mid-stream.")
        except OSError:
            error = "client went away"
        finally:
            await response.aclose()
        with_usage = relay.usage
        await self._finish(
            call,
            upstream,
            answered,
            canary_failure,
            usage=with_usage,
            ttft_ms=relay.ttft_ms,
            text=relay.text(),
            error=error,
        )

    # -- after the answer ------------------------------------------------------------------

    async def _finish(
        self,
        call: Call,
        upstream: Upstream,
        answered: Upstream,
        canary_failure: UpstreamFailure | None,
        *,
        usage: dict[str, Any],
        ttft_ms: float | None,
        text: str,
        error: str = "",
    ) -> None:
        tokens_in = int(usage.get("prompt_tokens") or 0)
        tokens_out = int(usage.get("completion_tokens") or 0)
        if canary_failure is not None:
            self._record(
                call,
                upstream,
                status=canary_failure.recorded_status,
                error=f"canary {canary_failure.reason}; stable answered"[:200],
                fell_back=True,
                tokens=(tokens_in, tokens_out),
                ttft_ms=ttft_ms,
                text=text,
            )
        else:
            self._record(
                call, answered, status=200, error=error, tokens=(tokens_in, tokens_out),
                ttft_ms=ttft_ms, text=text,
            )  # fmt: skip
        await self.limits.spend(call.key, tokens_in + tokens_out)
        if call.route.shadow is not None:
            self._spawn(self._shadow(call, call.route.shadow))

    def _record_failure(
        self,
        call: Call,
        upstream: Upstream,
        answered: Upstream,
        canary_failure: UpstreamFailure | None,
        failure: UpstreamFailure,
    ) -> None:
        if canary_failure is not None:
            reason = f"canary {canary_failure.reason}; stable {failure.reason}"
            self._record(call, upstream, status=canary_failure.recorded_status,
                         error=reason, fell_back=True)  # fmt: skip
        else:
            self._record(call, answered, status=failure.recorded_status, error=failure.reason)

    def _record(
        self,
        call: Call,
        upstream: Upstream,
        *,
        status: int,
        error: str = "",
        fell_back: bool = False,
        tokens: tuple[int, int] = (0, 0),
        ttft_ms: float | None = None,
        text: str | None = None,
        arm: str | None = None,
        request_id: str | None = None,
        started: float | None = None,
    ) -> None:
        route = call.route
        latency_ms = (time.perf_counter() - (started or call.started)) * 1000
        cost = (tokens[0] + tokens[1]) / 1000 * route.price_per_1k_tokens
        cost += latency_ms / 1000 * route.price_per_gpu_hour / 3600
        content = None
        if route.logging_policy != "off":
            content = {"request": {**call.upstream_body, "model": route.name}, "response": text}
        telemetry_record(
            {
                "request_id": request_id or call.request_id,
                "deployment_id": route.deployment_id,
                "model_version_id": upstream.model_version_id,
                "key_id": call.key.key_id,
                "arm": arm or upstream.arm,
                "endpoint": call.endpoint,
                "stream": call.stream,
                "status": status,
                "error": error[:200],
                "fell_back": fell_back,
                "latency_ms": latency_ms,
                "ttft_ms": ttft_ms,
                "tokens_in": tokens[0],
                "tokens_out": tokens[1],
                "cost": cost,
                "guardrail_flags": list(call.flags),
                "end_user": call.end_user,
                "created_at": call.created_at,
            },
            content=content,
            logging_policy=route.logging_policy,
            sample_percent=route.logging_sample_percent,
            retention_days=route.retention_days,
        )

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self.background.add(task)  # held, or the loop may drop it half-way
        task.add_done_callback(self.background.discard)

    async def _shadow(self, call: Call, shadow: Upstream) -> None:
        """The same request to the shadow arm, answered to nobody, recorded as arm shadow."""
        started = time.perf_counter()
        request_id = f"{call.request_id}-shadow"
        shadow_call = Call(**{**call.__dict__, "stream": False, "flags": list(call.flags)})
        try:
            response = await self._open(shadow_call, shadow, stream=False)
        except UpstreamFailure as failure:
            self._record(shadow_call, shadow, status=failure.recorded_status,
                         error=failure.reason, request_id=request_id, started=started)  # fmt: skip
            return
        await response.aclose()
        try:
            data = response.json()
        except ValueError:
            data = {}
        usage = (data.get("usage") if isinstance(data, dict) else None) or {}
        text = ""
        for choice in (data.get("choices") if isinstance(data, dict) else None) or []:
            holder, name = self._text_slot(choice)
            if holder is not None and isinstance(holder.get(name), str):
                text += holder[name]
        if text and call.policy.active:
            verdict = check_text(call.policy, text, where="output")
            shadow_call.flags.extend(f for f in verdict.flags if f not in shadow_call.flags)
        self._record(
            shadow_call,
            shadow,
            status=response.status_code,
            tokens=(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)),
            text=text,
            request_id=request_id,
            started=started,
        )


class StreamRelay:
    """Relays an engine's server-sent events to the client one event at a time: each gets
    the gateway's request id and the deployment's model name; the usage chunk the gateway
    asked for is kept for telemetry and passed on only if the client asked for it. With
    output guardrails active, text is held back to a sentence's end and checked first."""

    def __init__(self, call: Call, send: Send, gateway: "GatewayApp") -> None:
        self.call = call
        self.send = send
        self.gateway = gateway
        self.pending = b""
        self.usage: dict[str, Any] = {}
        self.parts: list[str] = []
        self.ttft_ms: float | None = None
        options = call.payload.get("stream_options")
        self.client_wants_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        self.guarded = call.policy.active
        self.held = ""  # text not yet checked (guarded streams only)
        self.template: dict[str, Any] | None = None  # a chunk to build released text on
        self.stopped = False  # nothing more goes to the client
        self.done = False  # the engine said [DONE]

    def text(self) -> str:
        return "".join(self.parts)

    async def feed(self, chunk: bytes) -> bool:
        """Relay the complete events in `chunk`; False once the stream is over."""
        if self.stopped:
            return False
        self.pending += chunk
        while b"\n\n" in self.pending:
            event, self.pending = self.pending.split(b"\n\n", 1)
            if not await self._event(event.strip(b"\r")):
                return False
        return True

    async def _write(self, data: bytes) -> None:
        await self.send({"type": "http.response.body", "body": data, "more_body": True})

    async def _event(self, event: bytes) -> bool:
        data = b"".join(
            line[5:].lstrip() for line in event.split(b"\n") if line.startswith(b"data:")
        )
        if not data:
            return True
        if data == b"[DONE]":
            await self._release(final=True)
            await self._write(b"data: [DONE]\n\n")
            self.stopped = self.done = True
            return False
        try:
            message = json.loads(data)
        except ValueError:
            return True  # not ours to repair; a client would choke on it too
        if not isinstance(message, dict):
            return True
        if message.get("usage"):
            self.usage = message["usage"]
            if not self.client_wants_usage:
                message.pop("usage")
                if not message.get("choices"):
                    return True
        message["id"] = self.call.request_id
        message["model"] = self.call.route.name
        if self.guarded:
            return await self._guarded(message)
        for choice in message.get("choices") or []:
            holder, name = GatewayApp._text_slot(choice)
            piece = holder.get(name) if holder is not None else None
            if isinstance(piece, str) and piece:
                if self.ttft_ms is None:
                    self.ttft_ms = (time.perf_counter() - self.call.started) * 1000
                self.parts.append(piece)
        await self._write(b"data: " + _dumps(message) + b"\n\n")
        return True

    async def _guarded(self, message: dict[str, Any]) -> bool:
        finishing = False
        for choice in message.get("choices") or []:
            holder, name = GatewayApp._text_slot(choice)
            piece = holder.get(name) if holder is not None else None
            if isinstance(piece, str) and piece:
                self.held += piece
                holder[name] = ""
                if self.template is None:
                    self.template = json.loads(_dumps(message))
            finishing |= choice.get("finish_reason") is not None
        if not await self._release(final=finishing):
            return False
        # What else the event carried (the role, a finish reason, usage) goes on as is.
        if any(
            (c.get("delta") or {}).get("role") or c.get("finish_reason") is not None
            for c in message.get("choices") or []
        ) or (message.get("usage") and self.client_wants_usage):
            await self._write(b"data: " + _dumps(message) + b"\n\n")
        return True

    async def _release(self, *, final: bool) -> bool:
        """Check and send held text up to its last sentence end (all of it when final);
        False when the policy refused it and the stream was ended."""
        if not self.guarded or not self.held:
            return True
        cut = len(self.held) if final else 0
        if not final:
            for match in SENTENCE_END.finditer(self.held):
                cut = match.end()
        if not cut:
            return True
        piece, self.held = self.held[:cut], self.held[cut:]
        verdict = check_text(self.call.policy, piece, where="output")
        self.call.flags.extend(f for f in verdict.flags if f not in self.call.flags)
        if not verdict.refused and self.call.policy.classifies("output"):
            # The answer so far, with this piece, in its conversation: released only if the
            # classifier lets it through.
            asked = GatewayApp._answer_asked(self.call, self.text() + verdict.text)
            verdict.refused = await self.gateway.classify(self.call, "output", asked)
        if verdict.refused:
            await self._write(b"data: " + _dumps(self._chunk(None, "content_filter")) + b"\n\n")
            await self._write(b"data: [DONE]\n\n")
            self.stopped = True
            return False
        if self.ttft_ms is None:
            self.ttft_ms = (time.perf_counter() - self.call.started) * 1000
        self.parts.append(verdict.text)
        await self._write(b"data: " + _dumps(self._chunk(verdict.text, None)) + b"\n\n")
        return True

    def _chunk(self, text: str | None, finish: str | None) -> dict[str, Any]:
        chat = self.call.endpoint == "chat.completions"
        base = self.template or {
            "id": self.call.request_id,
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()),
            "model": self.call.route.name,
        }
        if chat:
            choice = {"index": 0, "delta": {"content": text} if text else {},
                      "finish_reason": finish}  # fmt: skip
        else:
            choice = {"index": 0, "text": text or "", "finish_reason": finish}
        return {**base, "choices": [choice]}

    async def close(self) -> None:
        if not self.stopped:
            await self._release(final=True)
        await self.send({"type": "http.response.body", "body": b"", "more_body": False})

    async def fail(self, message: str) -> None:
        error = {"message": message, "type": "server_error", "param": None,
                 "code": "upstream_error"}  # fmt: skip
        await self._write(b"data: " + _dumps({"error": error}) + b"\n\n")
        await self.send({"type": "http.response.body", "body": b"", "more_body": False})
