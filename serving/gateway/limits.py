"""Per-key requests-per-minute and tokens-per-minute limits, in fixed one-minute windows.

With Redis (REDIS_URL) the counters are shared by every gateway process: one pipelined
round trip per request (INCR the request count, read the token count), and one INCRBY of
the tokens the engine reported once the answer is complete, so a request that runs past the
token limit finishes and the next one is refused. Without Redis (the embedded demo) the
counters live in the process. A key with both limits at 0 costs no round trip at all.
If Redis fails, requests are let through (logged): limits must not take serving down.
"""

import logging
import time

import redis.asyncio as aioredis
from django.conf import settings

from serving.gateway.errors import GatewayError
from serving.selectors import GatewayKey

log = logging.getLogger(__name__)
WINDOW_S = 60


def _refused(kind: str, limit: int, used: int, window: int) -> GatewayError:
    retry = max(1, int((window + 1) * WINDOW_S - time.time()))
    unit = "requests" if kind == "requests" else "tokens"
    return GatewayError(
        429,
        f"Rate limit reached for this key on {unit} per minute: limit {limit}, used {used}. "
        f"Try again in {retry} s.",
        type=kind,
        code="rate_limit_exceeded",
        headers=[(b"retry-after", str(retry).encode())],
    )


class Limits:
    def __init__(self, redis_url: str | None = None, prefix: str | None = None) -> None:
        self.redis_url = settings.REDIS_URL if redis_url is None else redis_url
        self.prefix = settings.SERVING_GATEWAY_REDIS_PREFIX if prefix is None else prefix
        self._redis: aioredis.Redis | None = None
        self._local: dict[str, int] = {}
        self._local_window = -1

    def _client(self) -> aioredis.Redis:
        # Made on first use, inside the server's event loop (the client belongs to it).
        if self._redis is None:
            self._redis = aioredis.from_url(self.redis_url, socket_timeout=0.5)
        return self._redis

    def _names(self, key: GatewayKey, window: int) -> tuple[str, str]:
        return (
            f"{self.prefix}rpm:{key.key_id}:{window}",
            f"{self.prefix}tpm:{key.key_id}:{window}",
        )

    async def admit(self, key: GatewayKey) -> None:
        """Count this request; raise 429 when the key is over either limit this minute."""
        if not key.requests_per_minute and not key.tokens_per_minute:
            return
        window = int(time.time() // WINDOW_S)
        rpm_name, tpm_name = self._names(key, window)
        if not self.redis_url:
            requests, tokens = self._local_admit(rpm_name, tpm_name, window)
        else:
            try:
                pipe = self._client().pipeline(transaction=False)
                pipe.incr(rpm_name)
                pipe.expire(rpm_name, 2 * WINDOW_S)
                pipe.get(tpm_name)
                requests, _, tokens_raw = await pipe.execute()
                tokens = int(tokens_raw or 0)
            except (aioredis.RedisError, OSError):
                log.warning("gateway: Redis unavailable, request let through unmetered")
                return
        if key.requests_per_minute and requests > key.requests_per_minute:
            raise _refused("requests", key.requests_per_minute, requests - 1, window)
        if key.tokens_per_minute and tokens >= key.tokens_per_minute:
            raise _refused("tokens", key.tokens_per_minute, tokens, window)

    async def spend(self, key: GatewayKey, tokens: int) -> None:
        """Add the tokens a finished request used to this minute's count."""
        if not key.tokens_per_minute or tokens <= 0:
            return
        window = int(time.time() // WINDOW_S)
        _, tpm_name = self._names(key, window)
        if not self.redis_url:
            self._local[tpm_name] = self._local.get(tpm_name, 0) + tokens
            return
        try:
            pipe = self._client().pipeline(transaction=False)
            pipe.incrby(tpm_name, tokens)
            pipe.expire(tpm_name, 2 * WINDOW_S)
            await pipe.execute()
        except (aioredis.RedisError, OSError):
            log.warning("gateway: Redis unavailable, %s tokens not counted", tokens)

    def _local_admit(self, rpm_name: str, tpm_name: str, window: int) -> tuple[int, int]:
        if window != self._local_window:
            self._local.clear()
            self._local_window = window
        self._local[rpm_name] = self._local.get(rpm_name, 0) + 1
        return self._local[rpm_name], self._local.get(tpm_name, 0)
