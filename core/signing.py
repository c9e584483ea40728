"""Ed25519 signatures over a dossier's manifest, in a DSSE envelope (the signature format
in-toto attestations use), so standard tooling can check them too. The checking half lives
in the standalone `dossier_verify` package, so the portal and an auditor's verifier read
signatures with the same code."""

import base64
import json

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from dossier_verify.signing import (
    PAYLOAD_TYPE,
    EnvelopeCheck,
    SigningKeyError,
    envelope_verify,
    key_fingerprint,
    pae,
    public_key_from_pem,
    public_key_pem,
)

__all__ = [
    "PAYLOAD_TYPE",
    "EnvelopeCheck",
    "SigningKeyError",
    "envelope_sign",
    "envelope_verify",
    "key_fingerprint",
    "pae",
    "private_key_from_pem",
    "private_key_pem",
    "public_key_from_pem",
    "public_key_pem",
]


def private_key_from_pem(pem: bytes, *, where: str = "the signing key") -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:
        raise SigningKeyError(
            f"{where} is not a readable unencrypted PEM private key: {error}"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{where} is a {type(key).__name__}, not an Ed25519 key")
    return key


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def envelope_sign(payload: bytes, key: Ed25519PrivateKey) -> bytes:
    """A DSSE envelope (JSON bytes, keys sorted so the same input gives the same bytes).
    Ed25519 signatures are deterministic, so the whole envelope is."""
    signature = key.sign(pae(PAYLOAD_TYPE, payload))
    envelope = {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode("ascii"),
        "signatures": [
            {
                "keyid": key_fingerprint(key.public_key()),
                "sig": base64.b64encode(signature).decode("ascii"),
            }
        ],
    }
    return (json.dumps(envelope, indent=2, sort_keys=True) + "\n").encode("utf-8")
