"""Ed25519 public keys and DSSE envelopes (the signature format in-toto attestations use):
the checking half. The portal's signing half (core.signing) builds on these."""

import base64
import hashlib
import json
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

PAYLOAD_TYPE = "application/vnd.in-toto+json"


class SigningKeyError(ValueError):
    """A key that cannot be read, or is not an Ed25519 key."""


def public_key_from_pem(pem: bytes, *, where: str = "the public key") -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:
        raise SigningKeyError(f"{where} is not a readable PEM public key: {error}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"{where} is a {type(key).__name__}, not an Ed25519 key")
    return key


def public_key_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_fingerprint(key: Ed25519PublicKey) -> str:
    """sha256 of the raw 32-byte public key, hex: the DSSE keyid and what pages show."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding: what is actually signed."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


@dataclass(frozen=True)
class EnvelopeCheck:
    ok: bool
    reason: str = ""
    keyid: str = ""


def envelope_verify(envelope: bytes, payload: bytes, key: Ed25519PublicKey) -> EnvelopeCheck:
    """Check that `envelope` carries exactly `payload` and a valid signature by `key`."""
    try:
        data = json.loads(envelope)
        carried = base64.b64decode(data["payload"], validate=True)
        signatures = data["signatures"]
        payload_type = data["payloadType"]
    except (ValueError, KeyError, TypeError) as error:
        return EnvelopeCheck(False, f"the signature envelope is malformed ({error})")
    if payload_type != PAYLOAD_TYPE:
        return EnvelopeCheck(False, f"the envelope's payloadType is {payload_type!r}")
    if carried != payload:
        return EnvelopeCheck(False, "the signed payload is not the manifest.json in the bundle")
    keyid = key_fingerprint(key)
    for entry in signatures if isinstance(signatures, list) else []:
        if not isinstance(entry, dict) or entry.get("keyid") != keyid:
            continue
        try:
            key.verify(
                base64.b64decode(entry.get("sig", ""), validate=True), pae(payload_type, carried)
            )
        except (InvalidSignature, ValueError):
            return EnvelopeCheck(False, "the manifest's signature is not valid", keyid)
        return EnvelopeCheck(True, "", keyid)
    return EnvelopeCheck(False, f"no signature by key {keyid[:16]}… in the envelope", keyid)
