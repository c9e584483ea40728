"""Check a dossier: its container, signature, every file's hash and the audit excerpt.

Checks run in a fixed order and stop at the first failure, whose message names the file,
line or byte that does not match. Plain Python: runs with `cryptography` alone, and the
portal's own `verify_dossier` runs this same code.
"""

import hashlib
import io
import json
import struct
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, BinaryIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from dossier_verify.chain import EVENT_PAYLOAD_FIELDS, GENESIS_HASH, event_hash
from dossier_verify.checkpoint import checkpoint_problem, describe
from dossier_verify.container import (
    ENVELOPE,
    MANIFEST,
    PREDICATE_TYPE,
    PUBLIC_KEY,
    STATEMENT_TYPE,
    zip_layout,
)
from dossier_verify.keyset import AUDIT_CHECKPOINT as CHECKPOINT_PURPOSE
from dossier_verify.keyset import DOSSIER as DOSSIER_PURPOSE
from dossier_verify.keyset import KeySetError, TrustedKey, parse_time
from dossier_verify.signing import (
    SigningKeyError,
    envelope_verify,
    key_fingerprint,
    public_key_from_pem,
)

AUDIT_EXCERPT = "audit/events.jsonl"
AUDIT_CHECKPOINT = "audit/checkpoint.json"
BUNDLE_KEY_NOTE = "the key inside the bundle: not checked against a trusted key"


@dataclass
class VerifyReport:
    ok: bool = False
    problem: str = ""
    passed: list[str] = field(default_factory=list)
    keyid: str = ""
    # The trusted key that signed, with its status and validity; None when the key inside
    # the bundle was trusted.
    key: TrustedKey | None = None
    files: int = 0
    events: int = 0
    predicate: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        if self.ok:
            return f"verified: {self.files} files, {self.events} audit events, key {self.keyid}"
        return f"NOT verified: {self.problem}"


class _Failed(Exception):
    pass


Trust = Sequence[Ed25519PublicKey | TrustedKey] | None


def _trusted(keys: Trust, purpose: str) -> list[TrustedKey] | None:
    """Bare public keys are trusted as given: for any time, with no validity period."""
    if keys is None:
        return None
    return [k if isinstance(k, TrustedKey) else TrustedKey.of(k, purpose=purpose) for k in keys]


# Files the verifier reads whole (the manifest lists every file; the others are small).
MAX_SMALL_ENTRY_BYTES = 64 * 1024**2
# One audit event per line; an event holds ids and hashes, not content.
MAX_AUDIT_LINE_BYTES = 16 * 1024**2
_CHUNK = 1 << 20


@dataclass(frozen=True)
class _Entry:
    offset: int  # of its contents in the bundle
    size: int


class _Bundle:
    """A dossier on a seekable binary file, read in pieces: a bundle may be a gigabyte."""

    def __init__(self, file: BinaryIO):
        self.file = file
        self.size = file.seek(0, io.SEEK_END)

    def read_at(self, offset: int, size: int) -> bytes:
        self.file.seek(offset)
        return self.file.read(size)

    def chunks(self, entry: _Entry) -> Iterator[bytes]:
        done = 0
        while done < entry.size:
            chunk = self.read_at(entry.offset + done, min(_CHUNK, entry.size - done))
            if not chunk:
                raise _Failed(f"the file ends inside an entry at byte {entry.offset + done}")
            done += len(chunk)
            yield chunk


def _entries(bundle: _Bundle) -> dict[str, _Entry]:
    """Entry name -> where its stored bytes are, from each local header the directory
    points to."""
    try:
        bundle.file.seek(0)
        infos = zipfile.ZipFile(bundle.file).infolist()
    except (
        zipfile.BadZipFile,
        ValueError,
        OSError,
        EOFError,
        NotImplementedError,
        struct.error,
    ) as error:
        raise _Failed(f"the file is not a readable zip ({error})") from None
    entries: dict[str, _Entry] = {}
    for info in infos:
        if info.filename in entries:
            raise _Failed(f"{info.filename}: appears twice in the zip directory")
        start = info.header_offset
        header = bundle.read_at(start, 30) if start >= 0 else b""
        if len(header) < 30 or header[:4] != b"PK\x03\x04":
            raise _Failed(f"{info.filename}: no local header at byte {start}")
        method, name_len, extra_len = struct.unpack("<8xH16xHH", header)
        name = bundle.read_at(start + 30, name_len)
        if name != info.filename.encode("utf-8"):
            raise _Failed(f"{info.filename}: its local header names {name!r}")
        if method != zipfile.ZIP_STORED or info.compress_type != zipfile.ZIP_STORED:
            raise _Failed(f"{info.filename}: is compressed; dossier entries are stored")
        body = start + 30 + name_len + extra_len
        if body + info.compress_size > bundle.size:
            raise _Failed(f"{info.filename}: runs past the end of the file")
        entries[info.filename] = _Entry(body, info.compress_size)
    return entries


def _read_small(bundle: _Bundle, entries: dict[str, _Entry], name: str) -> bytes:
    entry = entries[name]
    if entry.size > MAX_SMALL_ENTRY_BYTES:
        raise _Failed(f"{name}: {entry.size} bytes, more than {MAX_SMALL_ENTRY_BYTES} allowed")
    return bundle.read_at(entry.offset, entry.size)


def _json(data: bytes, name: str) -> Any:
    try:
        return json.loads(data)
    except ValueError as error:
        raise _Failed(f"{name}: is not valid JSON ({error})") from None
    except RecursionError:
        raise _Failed(f"{name}: is not valid JSON (nested too deeply)") from None


def _check_key(
    bundle: _Bundle, entries: dict[str, _Entry], trusted_keys: list[TrustedKey] | None
) -> tuple[Ed25519PublicKey, TrustedKey | None]:
    if PUBLIC_KEY not in entries:
        raise _Failed(f"{PUBLIC_KEY}: missing from the bundle")
    try:
        key = public_key_from_pem(_read_small(bundle, entries, PUBLIC_KEY), where=PUBLIC_KEY)
    except SigningKeyError as error:
        raise _Failed(str(error)) from None
    if trusted_keys is None:
        return key, None
    keyid = key_fingerprint(key)
    match = next((k for k in trusted_keys if k.key_id == keyid), None)
    if match is None:
        trusted = sorted({k.key_id for k in trusted_keys})
        raise _Failed(
            f"{PUBLIC_KEY}: the bundle was signed with key {keyid}, which is "
            f"not a trusted dossier key ({', '.join(trusted) or 'none given'})"
        )
    return key, match


def _check_subjects(
    bundle: _Bundle, entries: dict[str, _Entry], manifest: Any
) -> tuple[dict[str, Any], dict[str, int]]:
    """The predicate, and the crc32 of each file the manifest lists (hashed in chunks)."""
    if not isinstance(manifest, dict) or manifest.get("_type") != STATEMENT_TYPE:
        raise _Failed(f"{MANIFEST}: is not an in-toto Statement ({STATEMENT_TYPE})")
    if manifest.get("predicateType") != PREDICATE_TYPE:
        raise _Failed(f"{MANIFEST}: predicateType is not {PREDICATE_TYPE}")
    crcs: dict[str, int] = {}
    for index, subject in enumerate(manifest.get("subject") or []):
        try:
            name, digest = subject["name"], subject["digest"]["sha256"]
        except (KeyError, TypeError):
            raise _Failed(f"{MANIFEST}: subject {index} has no name or sha256 digest") from None
        if name not in entries:
            raise _Failed(f"{name}: listed in the manifest but missing from the bundle")
        sha, crc = hashlib.sha256(), 0
        for chunk in bundle.chunks(entries[name]):
            sha.update(chunk)
            crc = zlib.crc32(chunk, crc)
        actual = sha.hexdigest()
        if actual != digest:
            raise _Failed(f"{name}: sha256 is {actual}, the manifest says {digest}")
        crcs[name] = crc
    extra = sorted(set(entries) - set(crcs) - {MANIFEST, ENVELOPE})
    if extra:
        raise _Failed(f"{extra[0]}: in the bundle but not in the manifest")
    predicate = manifest.get("predicate")
    if not isinstance(predicate, dict):
        raise _Failed(f"{MANIFEST}: has no predicate")
    return predicate, crcs


def _lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The lines of a stream of chunks, without their line ends; each at most
    MAX_AUDIT_LINE_BYTES."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from complete
        if len(pending) > MAX_AUDIT_LINE_BYTES:
            raise _Failed(f"{AUDIT_EXCERPT}: a line is longer than {MAX_AUDIT_LINE_BYTES} bytes")
    if pending:
        yield pending


def check_audit_excerpt(raw: bytes | Iterable[bytes], anchor: Any) -> int:
    """Recompute every event's hash; consecutive events must link, and the last one must be
    the chain head the manifest records. Returns the number of events."""
    return _walk_excerpt(raw, anchor)[0]


def _walk_excerpt(raw: bytes | Iterable[bytes], anchor: Any) -> tuple[int, datetime | None]:
    """check_audit_excerpt, also returning the latest event's time (None when empty)."""
    previous: dict[str, Any] | None = None
    latest: datetime | None = None
    count = 0
    for number, line in enumerate(_lines([raw] if isinstance(raw, bytes) else raw), start=1):
        where = f"{AUDIT_EXCERPT} line {number}"
        try:
            event = json.loads(line)
            payload = {name: event[name] for name in EVENT_PAYLOAD_FIELDS}
            prev_hash, stated = event["prev_hash"], event["hash"]
        except (ValueError, KeyError, TypeError, RecursionError) as error:
            raise _Failed(f"{where}: not an audit event ({error!r})") from None
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
        moment = _time_or_none(payload["created_at"])
        if moment is not None and (latest is None or moment > latest):
            latest = moment
        count += 1
    if not isinstance(anchor, dict):
        raise _Failed(f"{MANIFEST}: predicate has no audit_chain_head")
    if previous is None:
        if anchor.get("seq") not in (None, 0):
            raise _Failed(f"{AUDIT_EXCERPT}: empty, but the manifest names head #{anchor['seq']}")
        return 0, None
    if previous != {"seq": anchor.get("seq"), "hash": anchor.get("hash")}:
        raise _Failed(
            f"{AUDIT_EXCERPT}: ends at event #{previous['seq']} ({previous['hash'][:12]}…), "
            f"but the manifest's audit_chain_head is #{anchor.get('seq')}"
        )
    return count, latest


def _time_or_none(value: Any) -> datetime | None:
    """A signed time as evidence of when a dossier was made at the earliest; one that does
    not parse is no evidence (which only matters for a retired key)."""
    try:
        return parse_time(value, "")
    except KeySetError:
        return None


def check_audit_checkpoint(raw: bytes, excerpt: Iterable[bytes], trusted_keys: Trust) -> str:
    """The embedded checkpoint of the whole chain must be signed by a trusted key (None: the
    key it carries) while that key was valid, and if the excerpt holds the event at its
    tree size, name its hash."""
    return _check_checkpoint(raw, excerpt, _trusted(trusted_keys, CHECKPOINT_PURPOSE))[0]


def _check_checkpoint(
    raw: bytes, excerpt: Iterable[bytes], trusted: list[TrustedKey] | None
) -> tuple[str, datetime | None]:
    try:
        entry = json.loads(raw)
    except ValueError as error:
        raise _Failed(f"{AUDIT_CHECKPOINT}: is not valid JSON ({error})") from None
    problem = checkpoint_problem(entry, None if trusted is None else [k.key for k in trusted])
    if problem:
        raise _Failed(f"{AUDIT_CHECKPOINT}: the {describe(entry)} is not valid: {problem}")
    signed_at = _time_or_none(entry["timestamp"])
    signer = next((k for k in trusted or () if k.key_id == entry["key_id"]), None)
    if signer is not None and _after(signed_at, signer):
        raise _Failed(
            f"{AUDIT_CHECKPOINT}: the {describe(entry)} is signed by {signer.describe()}, "
            "after that key was retired"
        )
    for line in excerpt:
        if not line.strip():
            continue
        event = json.loads(line)  # check_audit_excerpt has parsed each line already
        if event["seq"] == entry["tree_size"] and event["hash"] != entry["head_hash"]:
            raise _Failed(
                f"{AUDIT_CHECKPOINT}: the {describe(entry)} does not match event "
                f"#{event['seq']} of {AUDIT_EXCERPT} ({event['hash'][:12]}…)"
            )
    by = signer.describe() if signer else f"key {entry['key_id'][:16]}…"
    if trusted is None:
        by += " (the key the checkpoint carries: not checked against a trusted key)"
    return f"{describe(entry)} signed by {by}", signed_at


def _after(moment: datetime | None, key: TrustedKey | None) -> bool:
    """Whether `moment` falls after `key` was retired (no evidence counts as after)."""
    if key is None or key.valid_until is None:
        return False
    return moment is None or moment > key.valid_until


def _first_difference(
    bundle: _Bundle, entries: dict[str, _Entry], crcs: dict[str, int]
) -> int | None:
    """The first byte at which the bundle differs from the canonical container of its
    entries, or None: compared piece by piece, never holding either whole."""
    layout = zip_layout({name: (entry.size, crcs[name]) for name, entry in entries.items()})
    position = 0
    for part in layout:
        if isinstance(part, bytes):
            actual = bundle.read_at(position, len(part))
            if actual != part:
                return position + _common_prefix(part, actual)
            position += len(part)
            continue
        entry = entries[part]
        # Contents away from their canonical place are compared with what is there.
        done = 0
        while entry.offset != position and done < entry.size:
            size = min(_CHUNK, entry.size - done)
            ours = bundle.read_at(entry.offset + done, size)
            theirs = bundle.read_at(position + done, size)
            if ours != theirs:
                return position + done + _common_prefix(ours, theirs)
            done += size
        position += entry.size
    return None if position == bundle.size else position


def _common_prefix(a: bytes, b: bytes) -> int:
    return next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )


def verify_bundle(
    source: bytes | BinaryIO,
    *,
    trusted_keys: Trust = None,
    trusted_checkpoint_keys: Trust = None,
) -> VerifyReport:
    """Verify a dossier, given as bytes or a seekable binary file (read in pieces, so a
    large bundle is never held whole). `trusted_keys` None trusts the key inside the bundle
    (say so when reporting); the portal passes its published keys. The same for
    `trusted_checkpoint_keys` and the audit checkpoint's key.

    A retired key (a TrustedKey with valid_until) is trusted only for a dossier whose
    audit events and checkpoint all come from before it was retired: a dossier cannot
    have been signed before the newest event it holds."""
    bundle = _Bundle(io.BytesIO(source) if isinstance(source, bytes) else source)
    report = VerifyReport()
    try:
        entries = _entries(bundle)
        report.passed.append("zip directory readable")
        key, report.key = _check_key(bundle, entries, _trusted(trusted_keys, DOSSIER_PURPOSE))
        report.keyid = key_fingerprint(key)
        if MANIFEST not in entries or ENVELOPE not in entries:
            raise _Failed(f"{MANIFEST if MANIFEST not in entries else ENVELOPE}: missing")
        manifest = _read_small(bundle, entries, MANIFEST)
        check = envelope_verify(_read_small(bundle, entries, ENVELOPE), manifest, key)
        if not check.ok:
            raise _Failed(f"{ENVELOPE}: {check.reason}")
        signer = report.key.describe() if report.key else BUNDLE_KEY_NOTE
        report.passed.append(f"manifest signature valid ({signer})")
        predicate, crcs = _check_subjects(bundle, entries, _json(manifest, MANIFEST))
        for name in (MANIFEST, ENVELOPE):
            crcs[name] = zlib.crc32(_read_small(bundle, entries, name))
        report.predicate = predicate
        report.files = len(entries)
        report.passed.append(f"sha256 of {len(entries) - 2} files match the manifest")
        newest: datetime | None = None
        if AUDIT_EXCERPT in entries:
            report.events, newest = _walk_excerpt(
                bundle.chunks(entries[AUDIT_EXCERPT]), predicate.get("audit_chain_head")
            )
            report.passed.append(f"{report.events} audit events hash and link")
        if AUDIT_CHECKPOINT in entries:
            excerpt = (
                _lines(bundle.chunks(entries[AUDIT_EXCERPT]))
                if AUDIT_EXCERPT in entries
                else iter(())
            )
            step, signed_at = _check_checkpoint(
                _read_small(bundle, entries, AUDIT_CHECKPOINT),
                excerpt,
                _trusted(trusted_checkpoint_keys, CHECKPOINT_PURPOSE),
            )
            report.passed.append(step)
            if signed_at is not None and (newest is None or signed_at > newest):
                newest = signed_at
        if report.key is not None and _after(newest, report.key):
            raise _Failed(
                f"{PUBLIC_KEY}: signed by {report.key.describe()}, but the dossier holds "
                + (
                    f"audit records up to {newest.isoformat()}"
                    if newest
                    else "no dated audit record to show it was signed before then"
                )
            )
        at = _first_difference(bundle, entries, crcs)
        if at is not None:
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
