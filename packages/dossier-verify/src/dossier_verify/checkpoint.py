"""Checking signed checkpoints of the audit chain (the portal signs them: core.checkpoint).

A checkpoint says "the audit log held `tree_size` events and the last one's hash was
`head_hash`" at `timestamp`, signed with Ed25519: a signed tree head in the sense of
RFC 9162 and Trillian, over the hash chain instead of a Merkle tree. The signature is over
DSSE's pre-authentication encoding of the checkpoint's canonical JSON with a payload type
of its own, so a checkpoint signature can never pass for a dossier signature made with the
same key, nor the other way round."""

import base64
import binascii
from collections.abc import Sequence
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from dossier_verify.chain import canonical_json
from dossier_verify.signing import SigningKeyError, key_fingerprint, pae, public_key_from_pem

CHECKPOINT_FORMAT = "tuning-portal/audit-checkpoint/v1"
PAYLOAD_TYPE = "application/vnd.tuning-portal.audit-checkpoint+json"
# The fields the signature covers; the rest of an entry says who signed it and how.
SIGNED_FIELDS = ("format", "tree_size", "head_hash", "timestamp")


def checkpoint_message(entry: dict[str, Any]) -> bytes:
    """The bytes an Ed25519 key signs for `entry`."""
    body = {name: entry[name] for name in SIGNED_FIELDS}
    return pae(PAYLOAD_TYPE, canonical_json(body))


def checkpoint_problem(
    entry: Any, trusted_keys: Sequence[Ed25519PublicKey] | None = None
) -> str | None:
    """Why `entry` is not a valid checkpoint, or None when it is. With `trusted_keys`, the
    signer must be one of them; None trusts the public key the entry carries (say so when
    reporting)."""
    try:
        if entry["format"] != CHECKPOINT_FORMAT:
            return f"its format is {entry['format']!r}, not {CHECKPOINT_FORMAT}"
        tree_size, head_hash = entry["tree_size"], entry["head_hash"]
        key_id, signature = entry["key_id"], base64.b64decode(entry["signature"], validate=True)
        message = checkpoint_message(entry)
    except (KeyError, TypeError, ValueError, binascii.Error) as error:
        return f"it is not a checkpoint entry ({error!r})"
    if not isinstance(tree_size, int) or isinstance(tree_size, bool) or tree_size < 1:
        return f"its tree size {tree_size!r} is not a positive integer"
    if not isinstance(head_hash, str) or len(head_hash) != 64:
        return f"its head hash {head_hash!r} is not a sha256 hex digest"
    if trusted_keys is None:
        try:
            candidates = [public_key_from_pem(str(entry.get("public_key", "")).encode())]
        except SigningKeyError as error:
            return str(error)
    else:
        candidates = list(trusted_keys)
    key = next((k for k in candidates if key_fingerprint(k) == key_id), None)
    if key is None:
        trusted = ", ".join(key_fingerprint(k)[:16] + "…" for k in candidates) or "none"
        return f"it is signed by key {str(key_id)[:16]}…, not a trusted key ({trusted})"
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return f"its signature does not verify with key {key_id[:16]}…"
    return None


def describe(entry: dict[str, Any]) -> str:
    return (
        f"checkpoint of tree size {entry.get('tree_size')} "
        f"(head {str(entry.get('head_hash'))[:12]}…, signed {entry.get('timestamp')})"
    )
