"""The dossier's container: a zip whose every byte follows from its files' names and contents.

Our own writer rather than `zipfile`'s: entries sorted by name, stored (not deflated, so no
zlib version can change a byte), one fixed timestamp, fixed permissions, UTF-8 names, no extra
fields and no comment. The verifier rebuilds the container from the entries it read and
compares bytes, so a change to metadata outside the signed files is caught too; the layout
is the `dossier_verify` package's, which the verifier and this writer share.
"""

import hashlib
import json
import zlib
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from dossier_verify.container import (
    ENVELOPE,
    MANIFEST,
    PREDICATE_TYPE,
    PUBLIC_KEY,
    STATEMENT_TYPE,
    BundleError,
    check_name,
    zip_layout,
)

from core.signing import envelope_sign, key_fingerprint, public_key_pem

__all__ = [
    "ENVELOPE",
    "MANIFEST",
    "PREDICATE_TYPE",
    "PUBLIC_KEY",
    "STATEMENT_TYPE",
    "BundleError",
    "bundle_build",
    "check_name",
    "json_bytes",
    "sha256_hex",
    "statement_bytes",
    "zip_bytes",
    "zip_layout",
]


def zip_bytes(files: Mapping[str, bytes]) -> bytes:
    """A stored zip of `files`, entries in sorted order, identical for identical input."""
    layout = zip_layout({name: (len(data), zlib.crc32(data)) for name, data in files.items()})
    return b"".join(files[part] if isinstance(part, str) else part for part in layout)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def json_bytes(value: Any) -> bytes:
    """Readable JSON with sorted keys and a final newline: stable bytes for stable input."""
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def statement_bytes(files: Mapping[str, bytes], predicate: Mapping[str, Any]) -> bytes:
    """manifest.json: an in-toto Statement whose subjects are every other file of the bundle."""
    return json_bytes(
        {
            "_type": STATEMENT_TYPE,
            "subject": [
                {"name": name, "digest": {"sha256": sha256_hex(files[name])}}
                for name in sorted(files)
            ],
            "predicateType": PREDICATE_TYPE,
            "predicate": dict(predicate),
        }
    )


def bundle_build(
    files: Mapping[str, bytes], predicate: Mapping[str, Any], key: Ed25519PrivateKey
) -> bytes:
    """Sign and pack `files` with their manifest, its DSSE envelope and the public key."""
    reserved = {MANIFEST, ENVELOPE, PUBLIC_KEY}.intersection(files)
    if reserved:
        raise BundleError(f"{sorted(reserved)} are written by the bundler, not passed in")
    contents = dict(files)
    contents[PUBLIC_KEY] = public_key_pem(key.public_key())
    predicate = {
        **predicate,
        "signing_key": {"algorithm": "ed25519", "keyid": key_fingerprint(key.public_key())},
    }
    manifest = statement_bytes(contents, predicate)
    contents[MANIFEST] = manifest
    contents[ENVELOPE] = envelope_sign(manifest, key)
    return zip_bytes(contents)
