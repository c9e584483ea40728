"""Which arm answers a request, and the caches the gateway reads deployments and keys from.

The split is sticky: an end user (the request's `user` field, else the key) falls in one of
100 buckets by a hash of their id, and buckets below the canary's weight go to the canary.
Raising the weight only adds buckets, so a user who saw the canary keeps seeing it.

Deployments and keys are read through the ORM (sync) on a thread, and held in-process for
`ttl` seconds; once stale they are refreshed in the background while the old value serves,
and past `2 * ttl` a request waits for the refresh. So a weight change or a revoked key takes
effect within one to two seconds, and no request waits on the database in steady traffic.
"""

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection

from core.selectors import api_key_hash
from serving.gateway.errors import GatewayError
from serving.guardrails import Policy, compile_policy
from serving.selectors import GatewayKey, Route, Upstream, gateway_key_get, routing_table

log = logging.getLogger(__name__)


def bucket(sticky_id: str) -> int:
    """0..99, stable across processes and restarts (unlike hash())."""
    digest = hashlib.blake2b(sticky_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 100


def pick_upstream(route: Route, sticky_id: str) -> Upstream | None:
    """The arm that answers `sticky_id`: the canary for buckets below its weight when it has
    a ready engine, else stable (None when stable has no ready engine either)."""
    if route.canary is not None and bucket(sticky_id) < route.canary_weight:
        return route.canary
    return route.stable


def end_user_pseudonym(user: str) -> str:
    """A keyed hash of the client's `user` field: the same user is the same pseudonym,
    and the raw id is never stored."""
    if not user:
        return ""
    mac = hmac.new(settings.SECRET_KEY.encode(), user.encode(), hashlib.sha256)
    return mac.hexdigest()[:32]


@dataclass(frozen=True)
class RouteEntry:
    route: Route
    policy: Policy  # compiled once per snapshot, not per request


def _snapshot() -> dict[str, RouteEntry]:
    try:
        return {
            name: RouteEntry(route, compile_policy(route.guardrails, route.classifier))
            for name, route in routing_table().items()
        }
    finally:
        # The ORM ran on an executor thread outside any request: give its connection back
        # (to the pool, where one is configured).
        connection.close()


def _key(raw: str) -> GatewayKey | None:
    try:
        return gateway_key_get(raw=raw)
    finally:
        connection.close()


class _Slot:
    __slots__ = ("at", "task", "value")

    def __init__(self) -> None:
        self.value: Any = None
        self.at = -1e9
        self.task: asyncio.Future | None = None


class GatewayCache:
    MAX_KEYS = 10_000

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.routes_slot = _Slot()
        self.keys: dict[str, _Slot] = {}

    async def routes(self) -> dict[str, RouteEntry]:
        return await self._get(self.routes_slot, _snapshot)

    async def key(self, raw: str) -> GatewayKey | None:
        digest = api_key_hash(raw)
        slot = self.keys.get(digest)
        if slot is None:
            if len(self.keys) >= self.MAX_KEYS:
                self._prune()
            slot = self.keys[digest] = _Slot()
        return await self._get(slot, lambda: _key(raw))

    def _prune(self) -> None:
        # Unknown keys are cached too (a client retrying a bad key must not reach the
        # database each time); drop what is past its hard expiry.
        horizon = time.monotonic() - 2 * self.ttl
        for digest in [d for d, s in self.keys.items() if s.at < horizon and s.task is None]:
            del self.keys[digest]

    async def _get(self, slot: _Slot, load: Callable[[], Any]) -> Any:
        age = time.monotonic() - slot.at
        if age <= self.ttl:
            return slot.value
        if slot.task is None:
            slot.task = asyncio.ensure_future(self._load(slot, load))
        if age <= 2 * self.ttl:
            return slot.value  # stale but recent: the refresh runs in the background
        await asyncio.shield(slot.task)
        if time.monotonic() - slot.at > 2 * self.ttl:
            raise GatewayError(
                503, "The gateway cannot read its deployments now.", type="server_error"
            )
        return slot.value

    async def _load(self, slot: _Slot, load: Callable[[], Any]) -> None:
        loader: Callable[[], Awaitable[Any]] = sync_to_async(load, thread_sensitive=False)
        try:
            slot.value = await loader()
            slot.at = time.monotonic()
        except Exception:
            # The database is away: requests within the hard expiry keep the old value,
            # later ones get a 503 (never a stale key for long: it may have been revoked).
            log.exception("gateway: refreshing from the database failed")
        finally:
            slot.task = None
