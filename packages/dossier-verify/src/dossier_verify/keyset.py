"""The keys a verifier trusts, and the published key list they come from.

A portal publishes its public keys, current and retired, at
`/.well-known/dossier-keys.json`: one entry per key and purpose ("dossier" signs
manifests, "audit-checkpoint" signs checkpoints of the audit chain), each with its key id
and validity period. A retired key stays trusted for what it signed while it was in use:
a dossier it signed must not hold audit events, nor a checkpoint signed, after the key was
retired (the verifier checks this; see verify.py).
"""

import json
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from dossier_verify.signing import (
    SigningKeyError,
    key_fingerprint,
    public_key_from_pem,
    public_key_pem,
)

KEYS_FORMAT = "tuning-portal/dossier-keys/v1"
DOSSIER = "dossier"
AUDIT_CHECKPOINT = "audit-checkpoint"
PURPOSES = (DOSSIER, AUDIT_CHECKPOINT)
CURRENT, RETIRED, GIVEN = "current", "retired", "given"
# A key list is a few kilobytes; refuse to read a runaway response whole.
MAX_KEYS_BYTES = 1024**2


class KeySetError(ValueError):
    """A key list or key file that cannot be read or does not hold what it claims."""


@dataclass(frozen=True)
class TrustedKey:
    key: Ed25519PublicKey
    key_id: str
    purpose: str = DOSSIER
    # current, retired, or given (a PEM named on the command line: no validity period)
    status: str = GIVEN
    valid_from: datetime | None = None
    valid_until: datetime | None = None

    @classmethod
    def of(cls, key: Ed25519PublicKey, **fields: Any) -> "TrustedKey":
        return cls(key=key, key_id=key_fingerprint(key), **fields)

    def describe(self) -> str:
        what = f"{self.purpose} key {self.key_id[:16]}…"
        if self.status == GIVEN:
            return f"{what} (given on the command line)"
        since = f" since {_iso(self.valid_from)}" if self.valid_from else ""
        if self.status == RETIRED:
            return f"{what} (retired{since}, valid until {_iso(self.valid_until)})"
        return f"{what} ({self.status}{since})"

    def as_document_entry(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "algorithm": "ed25519",
            "purpose": self.purpose,
            "status": self.status,
            "valid_from": _iso(self.valid_from),
            "valid_until": _iso(self.valid_until),
            "public_key": public_key_pem(self.key).decode("ascii"),
        }


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment else None


def parse_time(value: Any, where: str) -> datetime | None:
    """An ISO 8601 time with its offset (a naive one is read as UTC), or None."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        raise KeySetError(f"{where}: {value!r} is not an ISO 8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def keyset_document(keys: Iterable[TrustedKey]) -> dict[str, Any]:
    """The published key list, newest first within each purpose."""
    return {"format": KEYS_FORMAT, "keys": [key.as_document_entry() for key in keys]}


def keyset_from_document(data: Any, *, where: str = "the key list") -> list[TrustedKey]:
    """Every key in a published key list. A key whose id is not its fingerprint is refused:
    the list is read from a portal the verifier does not control."""
    if not isinstance(data, dict) or data.get("format") != KEYS_FORMAT:
        raise KeySetError(f"{where}: is not a {KEYS_FORMAT} key list")
    if not isinstance(data.get("keys"), list):
        raise KeySetError(f"{where}: has no list of keys")
    found = []
    for index, entry in enumerate(data["keys"]):
        at = f"{where} key {index + 1}"
        if not isinstance(entry, dict):
            raise KeySetError(f"{at}: is not an object")
        try:
            key = public_key_from_pem(str(entry.get("public_key", "")).encode(), where=at)
        except SigningKeyError as error:
            raise KeySetError(str(error)) from None
        if entry.get("key_id") != key_fingerprint(key):
            raise KeySetError(f"{at}: its key_id is not the fingerprint of its public key")
        if entry.get("purpose") not in PURPOSES:
            raise KeySetError(f"{at}: purpose {entry.get('purpose')!r} is not one of {PURPOSES}")
        if entry.get("status") not in (CURRENT, RETIRED):
            raise KeySetError(f"{at}: status {entry.get('status')!r} is not current or retired")
        valid_until = parse_time(entry.get("valid_until"), at)
        if entry["status"] == RETIRED and valid_until is None:
            raise KeySetError(f"{at}: a retired key needs valid_until")
        found.append(
            TrustedKey(
                key=key,
                key_id=entry["key_id"],
                purpose=entry["purpose"],
                status=entry["status"],
                valid_from=parse_time(entry.get("valid_from"), at),
                valid_until=valid_until,
            )
        )
    return found


def keyset_from_bytes(raw: bytes, *, where: str) -> list[TrustedKey]:
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as error:
        raise KeySetError(f"{where}: is not valid JSON ({error})") from None
    return keyset_from_document(data, where=where)


def keyset_from_file(path: Path) -> list[TrustedKey]:
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_KEYS_BYTES + 1)
    except OSError as error:
        raise KeySetError(f"{path}: cannot read: {error.strerror}") from None
    if len(raw) > MAX_KEYS_BYTES:
        raise KeySetError(f"{path}: more than {MAX_KEYS_BYTES} bytes; not a key list")
    return keyset_from_bytes(raw, where=str(path))


def keyset_from_url(url: str, *, timeout: float = 30) -> list[TrustedKey]:
    """Fetch a published key list. Over https the server's certificate vouches for it; a
    key list kept on file (--keys) needs no network at all."""
    if urlsplit(url).scheme not in ("https", "http"):
        raise KeySetError(f"{url}: only https:// (or http://) key list URLs are fetched")
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            raw = response.read(MAX_KEYS_BYTES + 1)
    except OSError as error:  # URLError and HTTPError are OSErrors
        raise KeySetError(f"{url}: cannot fetch the key list: {error}") from None
    if len(raw) > MAX_KEYS_BYTES:
        raise KeySetError(f"{url}: more than {MAX_KEYS_BYTES} bytes; not a key list")
    return keyset_from_bytes(raw, where=url)


def key_from_pem_file(path: Path, *, purpose: str = DOSSIER) -> TrustedKey:
    try:
        pem = path.read_bytes()
    except OSError as error:
        raise KeySetError(f"{path}: cannot read: {error.strerror}") from None
    try:
        return TrustedKey.of(public_key_from_pem(pem, where=str(path)), purpose=purpose)
    except SigningKeyError as error:
        raise KeySetError(str(error)) from None


def for_purpose(keys: Sequence[TrustedKey], purpose: str) -> list[TrustedKey]:
    return [key for key in keys if key.purpose == purpose]
