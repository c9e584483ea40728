"""Signed checkpoints of the audit chain. Checking one is the standalone `dossier_verify`
package's code, so that a dossier verifier outside the portal checks them exactly as the
portal does; signing is here.

A checkpoint says "the audit log held `tree_size` events and the last one's hash was
`head_hash`" at `timestamp`, signed with Ed25519: a signed tree head in the sense of
RFC 9162 and Trillian, over our hash chain instead of a Merkle tree. The chain alone is
an unkeyed hash that anyone with write access can recompute; a checkpoint kept outside
the database pins it, because a rebuilt chain cannot reproduce a signed head hash.

The signature is over DSSE's pre-authentication encoding of the checkpoint's canonical
JSON with a payload type of its own, so a checkpoint signature can never pass for a
dossier signature made with the same key, nor the other way round."""

import base64
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from dossier_verify.checkpoint import (
    CHECKPOINT_FORMAT,
    PAYLOAD_TYPE,
    SIGNED_FIELDS,
    checkpoint_message,
    checkpoint_problem,
    describe,
)

from core.signing import key_fingerprint, public_key_pem

__all__ = [
    "CHECKPOINT_FORMAT",
    "PAYLOAD_TYPE",
    "SIGNED_FIELDS",
    "checkpoint_message",
    "checkpoint_problem",
    "checkpoint_sign",
    "describe",
]


def checkpoint_sign(
    key: Ed25519PrivateKey, *, tree_size: int, head_hash: str, timestamp: str
) -> dict[str, Any]:
    """A checkpoint entry: the signed fields, the key id, its public key and the signature."""
    entry: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "tree_size": tree_size,
        "head_hash": head_hash,
        "timestamp": timestamp,
    }
    signature = key.sign(checkpoint_message(entry))
    public = key.public_key()
    return entry | {
        "key_id": key_fingerprint(public),
        "public_key": public_key_pem(public).decode("ascii"),
        "signature": base64.b64encode(signature).decode("ascii"),
    }
