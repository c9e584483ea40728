"""The audit chain's hashing rules. The portal hashes every audit event with these same
functions (core.chain), so a verifier outside it computes exactly what it computed."""

import hashlib
import json
from typing import Any

GENESIS_HASH = "0" * 64
# The fields of an event that its hash covers, in the order events.jsonl writes them.
EVENT_PAYLOAD_FIELDS = (
    "seq",
    "created_at",
    "actor_id",
    "actor_username",
    "project_id",
    "action",
    "target_type",
    "target_id",
    "data",
)


def canonical_json(value: Any) -> bytes:
    """The one byte form of a JSON value that every hash in the portal is computed over."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    ).encode("utf-8")


def event_hash(prev_hash: str, payload: dict[str, Any]) -> str:
    """sha256 over the previous event's hash and this event's canonical payload."""
    return hashlib.sha256(prev_hash.encode("ascii") + canonical_json(payload)).hexdigest()
