"""Check a dossier: its container, signature, every file's hash and the audit excerpt.

Checks run in a fixed order and stop at the first failure, whose message names the file,
line or byte that does not match. Plain Python: runs with `cryptography` alone.
"""

import io
import json
import struct
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from governance.chain import EVENT_PAYLOAD_FIELDS, GENESIS_HASH, event_hash
from governance.checkpoint import checkpoint_problem, describe
from governance.dossier.bundle import (
    ENVELOPE,
    MANIFEST,
    PREDICATE_TYPE,
    PUBLIC_KEY,
    STATEMENT_TYPE,
    sha256_hex,
    zip_bytes,
)
from governance.dossier.signing import (
    SigningKeyError,
    envelope_verify,
    key_fingerprint,
    public_key_from_pem,
)

AUDIT_EXCERPT = "audit/events.jsonl"
AUDIT_CHECKPOINT = "audit/checkpoint.json"


@dataclass
class VerifyReport:
    ok: bool = False
    problem: str = ""
    passed: list[str] = field(default_factory=list)
    keyid: str = ""
    files: int = 0
    events: int = 0
    predicate: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        if self.ok:
            return f"verified: {self.files} files, {self.events} audit events, key {self.keyid}"
        return f"NOT verified: {self.problem}"


class _Failed(Exception):
    pass


def _entries(data: bytes) -> dict[str, bytes]:
    """Entry name -> stored bytes, read from each local header the directory points to."""
    try:
        infos = zipfile.ZipFile(io.BytesIO(data)).infolist()
    except (
        zipfile.BadZipFile,
        ValueError,
        OSError,
        EOFError,
        NotImplementedError,
        struct.error,
    ) as error:
        raise _Failed(f"the file is not a readable zip ({error})") from None
    entries: dict[str, bytes] = {}
    for info in infos:
        if info.filename in entries:
            raise _Failed(f"{info.filename}: appears twice in the zip directory")
        start = info.header_offset
        header = data[start : start + 30]
        if len(header) < 30 or header[:4] != b"PK\x03\x04":
            raise _Failed(f"{info.filename}: no local header at byte {start}")
        method, name_len, extra_len = struct.unpack("<8xH16xHH", header)
        name = data[start + 30 : start + 30 + name_len]
        if name != info.filename.encode("utf-8"):
            raise _Failed(f"{info.filename}: its local header names {name!r}")
        if method != zipfile.ZIP_STORED or info.compress_type != zipfile.ZIP_STORED:
            raise _Failed(f"{info.filename}: is compressed; dossier entries are stored")
        body = start + 30 + name_len + extra_len
        entries[info.filename] = data[body : body + info.compress_size]
    return entries


def _json(entries: dict[str, bytes], name: str) -> Any:
    try:
        return json.loads(entries[name])
    except KeyError:
        raise _Failed(f"{name}: missing from the bundle") from None
    except ValueError as error:
        raise _Failed(f"{name}: is not valid JSON ({error})") from None


def _check_key(entries, trusted_keys) -> Ed25519PublicKey:
    if PUBLIC_KEY not in entries:
        raise _Failed(f"{PUBLIC_KEY}: missing from the bundle")
    try:
        key = public_key_from_pem(entries[PUBLIC_KEY], where=PUBLIC_KEY)
    except SigningKeyError as error:
        raise _Failed(str(error)) from None
    if trusted_keys is not None:
        trusted = {key_fingerprint(k) for k in trusted_keys}
        if key_fingerprint(key) not in trusted:
            raise _Failed(
                f"{PUBLIC_KEY}: the bundle was signed with key {key_fingerprint(key)}, which is "
                f"not a trusted dossier key ({', '.join(sorted(trusted)) or 'none given'})"
            )
    return key


def _check_subjects(entries: dict[str, bytes], manifest: Any) -> dict[str, Any]:
    if not isinstance(manifest, dict) or manifest.get("_type") != STATEMENT_TYPE:
        raise _Failed(f"{MANIFEST}: is not an in-toto Statement ({STATEMENT_TYPE})")
    if manifest.get("predicateType") != PREDICATE_TYPE:
        raise _Failed(f"{MANIFEST}: predicateType is not {PREDICATE_TYPE}")
    listed: set[str] = set()
    for index, subject in enumerate(manifest.get("subject") or []):
        try:
            name, digest = subject["name"], subject["digest"]["sha256"]
        except (KeyError, TypeError):
            raise _Failed(f"{MANIFEST}: subject {index} has no name or sha256 digest") from None
        if name not in entries:
            raise _Failed(f"{name}: listed in the manifest but missing from the bundle")
        actual = sha256_hex(entries[name])
        if actual != digest:
            raise _Failed(f"{name}: sha256 is {actual}, the manifest says {digest}")
        listed.add(name)
    extra = sorted(set(entries) - listed - {MANIFEST, ENVELOPE})
    if extra:
        raise _Failed(f"{extra[0]}: in the bundle but not in the manifest")
    predicate = manifest.get("predicate")
    if not isinstance(predicate, dict):
        raise _Failed(f"{MANIFEST}: has no predicate")
    return predicate


def check_audit_excerpt(raw: bytes, anchor: Any) -> int:
    """Recompute every event's hash; consecutive events must link, and the last one must be
    the chain head the manifest records. Returns the number of events."""
    previous: dict[str, Any] | None = None
    count = 0
    for number, line in enumerate(raw.splitlines(), start=1):
        where = f"{AUDIT_EXCERPT} line {number}"
        try:
            event = json.loads(line)
            payload = {name: event[name] for name in EVENT_PAYLOAD_FIELDS}
            prev_hash, stated = event["prev_hash"], event["hash"]
        except (ValueError, KeyError, TypeError) as error:
            raise _Failed(f"{where}: not an audit event ({error})") from None
        if event_hash(prev_hash, payload) != stated:
            raise _Failed(f"{where} (event #{payload['seq']}): content does not match its hash")
        if payload["seq"] == 1 and prev_hash != GENESIS_HASH:
            raise _Failed(f"{where}: the first event of the chain must follow the genesis hash")
        if previous is not None:
            if payload["seq"] <= previous["seq"]:
                raise _Failed(f"{where}: events are not in chain order")
            if payload["seq"] == previous["seq"] + 1 and prev_hash != previous["hash"]:
                raise _Failed(f"{where} (event #{payload['seq']}): does not link to the one before")
        previous = {"seq": payload["seq"], "hash": stated}
        count += 1
    if not isinstance(anchor, dict):
        raise _Failed(f"{MANIFEST}: predicate has no audit_chain_head")
    if previous is None:
        if anchor.get("seq") not in (None, 0):
            raise _Failed(f"{AUDIT_EXCERPT}: empty, but the manifest names head #{anchor['seq']}")
        return 0
    if previous != {"seq": anchor.get("seq"), "hash": anchor.get("hash")}:
        raise _Failed(
            f"{AUDIT_EXCERPT}: ends at event #{previous['seq']} ({previous['hash'][:12]}…), "
            f"but the manifest's audit_chain_head is #{anchor.get('seq')}"
        )
    return count


def check_audit_checkpoint(
    raw: bytes, excerpt: bytes, trusted_keys: Sequence[Ed25519PublicKey] | None
) -> str:
    """The embedded checkpoint of the whole chain must be signed by a trusted key (None: the
    key it carries), and if the excerpt holds the event at its tree size, name its hash."""
    try:
        entry = json.loads(raw)
    except ValueError as error:
        raise _Failed(f"{AUDIT_CHECKPOINT}: is not valid JSON ({error})") from None
    problem = checkpoint_problem(entry, trusted_keys)
    if problem:
        raise _Failed(f"{AUDIT_CHECKPOINT}: the {describe(entry)} is not valid: {problem}")
    for line in excerpt.splitlines():
        event = json.loads(line)  # check_audit_excerpt has parsed each line already
        if event["seq"] == entry["tree_size"] and event["hash"] != entry["head_hash"]:
            raise _Failed(
                f"{AUDIT_CHECKPOINT}: the {describe(entry)} does not match event "
                f"#{event['seq']} of {AUDIT_EXCERPT} ({event['hash'][:12]}…)"
            )
    return f"{describe(entry)} signed by key {entry['key_id'][:16]}…"


def verify_bundle(
    data: bytes,
    *,
    trusted_keys: Sequence[Ed25519PublicKey] | None = None,
    trusted_checkpoint_keys: Sequence[Ed25519PublicKey] | None = None,
) -> VerifyReport:
    """Verify a dossier. `trusted_keys` None trusts the key inside the bundle (say so when
    reporting); the portal passes its own key. The same for `trusted_checkpoint_keys` and
    the audit checkpoint's key."""
    report = VerifyReport()
    try:
        entries = _entries(data)
        report.passed.append("zip directory readable")
        key = _check_key(entries, trusted_keys)
        report.keyid = key_fingerprint(key)
        if MANIFEST not in entries or ENVELOPE not in entries:
            raise _Failed(f"{MANIFEST if MANIFEST not in entries else ENVELOPE}: missing")
        check = envelope_verify(entries[ENVELOPE], entries[MANIFEST], key)
        if not check.ok:
            raise _Failed(f"{ENVELOPE}: {check.reason}")
        report.passed.append("manifest signature valid")
        predicate = _check_subjects(entries, _json(entries, MANIFEST))
        report.predicate = predicate
        report.files = len(entries)
        report.passed.append(f"sha256 of {len(entries) - 2} files match the manifest")
        if AUDIT_EXCERPT in entries:
            report.events = check_audit_excerpt(
                entries[AUDIT_EXCERPT], predicate.get("audit_chain_head")
            )
            report.passed.append(f"{report.events} audit events hash and link")
        if AUDIT_CHECKPOINT in entries:
            report.passed.append(
                check_audit_checkpoint(
                    entries[AUDIT_CHECKPOINT],
                    entries.get(AUDIT_EXCERPT, b""),
                    trusted_checkpoint_keys,
                )
            )
        rebuilt = zip_bytes(entries)
        if rebuilt != data:
            at = next(
                (i for i, (a, b) in enumerate(zip(rebuilt, data, strict=False)) if a != b),
                min(len(rebuilt), len(data)),
            )
            raise _Failed(
                f"the zip container differs from its canonical form at byte {at} "
                "(zip metadata outside the signed files was changed)"
            )
        report.passed.append("zip container canonical")
    except _Failed as failure:
        report.problem = str(failure)
        return report
    report.ok = True
    return report
