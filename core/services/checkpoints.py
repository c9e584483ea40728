"""Signed checkpoints of the audit chain, and the verifier that holds the chain to them.

`audit_checkpoint_sign` (Celery beat runs it) signs the chain's size and head hash, writes
the checkpoint to the database and appends it to a JSON Lines file outside the database.
`audit_log_verify` walks the chain and then requires every checkpoint it can find, in the
file and in the database, to carry a valid signature and to name a head hash the chain
still has at that size. Rebuilding the log from scratch, which needs nothing but the
(unkeyed) hash rules, therefore fails at the first checkpoint after the change.

Signing appends no audit event: the checkpoint table is itself an append-only, signed
log, and an event per checkpoint would move the head the checkpoint has just signed."""

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from core import keys
from core.chain import GENESIS_HASH, canonical_json
from core.checkpoint import checkpoint_problem, checkpoint_sign, describe
from core.models import AuditCheckpoint, AuditEvent
from core.services.audit import ChainReport, audit_chain_verify

CHECKPOINT_FILE = "checkpoints.jsonl"


class CheckpointRefused(Exception):
    """The chain does not extend the last checkpoint: signing it would bless a rewrite."""


def checkpoint_file() -> Path:
    return Path(settings.PORTAL_AUDIT_CHECKPOINT_DIR) / CHECKPOINT_FILE


def _append_outside(entry: dict[str, Any]) -> None:
    """One line, one write with O_APPEND (atomic next to a concurrent signer), fsynced."""
    path = checkpoint_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
    line = canonical_json(entry) + b"\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        written = os.write(fd, line)
        if written != len(line):
            raise OSError(f"{path}: wrote {written} of {len(line)} bytes of a checkpoint")
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class _Found:
    entry: dict[str, Any]
    sources: list[str] = field(default_factory=list)


def _identity(entry: dict[str, Any]) -> tuple:
    return tuple(str(entry.get(k)) for k in ("tree_size", "head_hash", "timestamp", "signature"))


def _read_file(path: Path) -> tuple[list[tuple[str, Any]], list[str]]:
    """(where, parsed entry) for each line of the checkpoint file, and unreadable lines."""
    entries: list[tuple[str, Any]] = []
    problems: list[str] = []
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return entries, problems
    except OSError as error:
        return entries, [f"{path}: cannot read: {error.strerror}"]
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                entries.append((f"{path} line {number}", json.loads(line)))
            except ValueError as error:
                problems.append(f"{path} line {number}: not a JSON checkpoint ({error})")
    return entries, problems


def _collect(extra: Iterable[tuple[str, Any]]) -> tuple[list[_Found], list[str], int]:
    """Every checkpoint from the file, the database and `extra`, each once with all the
    places it was found; problems with unreadable entries; how many database checkpoints
    the file lacks."""
    found: dict[tuple, _Found] = {}
    problems: list[str] = []
    outside, unreadable = _read_file(checkpoint_file())
    problems.extend(unreadable)
    in_file: set[tuple] = set()
    for where, entry in [*outside, *extra]:
        if not isinstance(entry, dict):
            problems.append(f"{where}: not a checkpoint object")
            continue
        key = _identity(entry)
        if where.startswith(str(checkpoint_file())):
            in_file.add(key)
        found.setdefault(key, _Found(entry)).sources.append(where)
    missing_outside = 0
    for row in AuditCheckpoint.objects.order_by("tree_size").iterator():
        entry = row.entry()
        key = _identity(entry)
        missing_outside += key not in in_file
        found.setdefault(key, _Found(entry)).sources.append(f"database checkpoint id {row.pk}")
    return list(found.values()), problems, missing_outside


def _latest_trusted(trusted_keys: Sequence[Ed25519PublicKey]) -> dict[str, Any] | None:
    checkpoints, _, _ = _collect(())
    valid = [c.entry for c in checkpoints if checkpoint_problem(c.entry, trusted_keys) is None]
    return max(valid, key=lambda e: e["tree_size"], default=None)


def _extension_problem(since: dict[str, Any] | None, until_seq: int, chunk_size: int) -> str:
    """Why events after checkpoint `since` up to `until_seq` are not a valid extension of
    it (empty when they are)."""
    first = expected_seq = since["tree_size"] + 1 if since else 1
    expected_prev = since["head_hash"] if since else GENESIS_HASH
    events = AuditEvent.objects.filter(seq__gte=expected_seq, seq__lte=until_seq).order_by("seq")
    for event in events.iterator(chunk_size=chunk_size):
        if event.seq != expected_seq:
            return f"event #{expected_seq} is missing"
        if event.prev_hash != expected_prev:
            before = "the event before it"
            if since is not None and event.seq == first:
                before = f"the {describe(since)}"
            return f"event #{event.seq} does not link to {before}"
        if event.compute_hash() != event.hash:
            return f"event #{event.seq}: content does not match its hash"
        expected_prev = event.hash
        expected_seq += 1
    if expected_seq != until_seq + 1:
        return f"event #{expected_seq} is missing"
    return ""


def audit_checkpoint_sign(*, chunk_size: int = 5000) -> AuditCheckpoint | None:
    """Sign the chain as it stands: write the checkpoint to the database and append it to
    the file outside it. Returns None for an empty chain, and the latest checkpoint when
    the chain has not grown since.

    Only the events since the latest trusted checkpoint (from the file or the database)
    are walked, and signing is refused, raising CheckpointRefused, when they do not extend
    it: a rebuilt log is never signed."""
    key = keys.audit_checkpoint_key()
    trusted = [key.public_key()]
    head = AuditEvent.objects.order_by("-seq").values_list("seq", "hash").first()
    if head is None:
        return None
    seq, head_hash = head
    latest = _latest_trusted(trusted)
    problem = ""
    if latest is not None and latest["tree_size"] >= seq:
        stored = AuditCheckpoint.objects.filter(tree_size=latest["tree_size"]).first()
        if latest["tree_size"] > seq:
            problem = f"it holds {seq} events, fewer than the {describe(latest)}"
        elif head_hash != latest["head_hash"]:
            problem = f"event #{seq} does not match the {describe(latest)}"
        elif stored is not None:
            return stored
    else:
        problem = _extension_problem(latest, seq, chunk_size)
    if problem:
        raise CheckpointRefused(f"the log does not extend the last checkpoint: {problem}")
    entry = checkpoint_sign(
        key, tree_size=seq, head_hash=head_hash, timestamp=timezone.now().isoformat()
    )
    try:
        with transaction.atomic():
            checkpoint = AuditCheckpoint.objects.create(
                **{k: entry[k] for k in ("tree_size", "head_hash", "timestamp", "key_id")},
                public_key=entry["public_key"],
                signature=entry["signature"],
            )
            # Before commit: a checkpoint that reached only the file is still a true,
            # signed statement; one that reached only the database would be the weaker.
            _append_outside(entry)
    except IntegrityError:  # a concurrent signer took this size first
        return AuditCheckpoint.objects.get(tree_size=seq)
    return checkpoint


def audit_checkpoint_latest() -> dict[str, Any] | None:
    """The newest checkpoint in the database, as the entry a dossier embeds."""
    row = AuditCheckpoint.objects.order_by("-tree_size").first()
    return row.entry() if row else None


@dataclass(frozen=True)
class AuditLogReport:
    chain: ChainReport
    checkpoints: int  # distinct checkpoints that verified
    problems: list[str]  # unreadable or unsigned checkpoints, then ones the log fails
    missing_outside: int  # database checkpoints the file lacks
    file: Path

    @property
    def ok(self) -> bool:
        return self.chain.ok and not self.problems


def audit_log_verify(
    *,
    trusted_keys: Sequence[Ed25519PublicKey] | None = None,
    extra: Iterable[tuple[str, Any]] = (),
) -> AuditLogReport:
    """The chain walk of audit_chain_verify, then every checkpoint (from the file, the
    database and `extra`, e.g. one read from a dossier): its signature must verify with a
    trusted key (default: the portal's checkpoint key) and the event at its tree size
    must have its head hash."""
    if trusted_keys is None:
        trusted_keys = [keys.audit_checkpoint_key().public_key()]
    chain = audit_chain_verify()
    checkpoints, problems, missing_outside = _collect(extra)
    valid: list[_Found] = []
    for found in sorted(checkpoints, key=lambda f: str(f.entry.get("tree_size")).zfill(20)):
        problem = checkpoint_problem(found.entry, trusted_keys)
        if problem:
            problems.append(f"{describe(found.entry)} from {_where(found)}: {problem}")
        else:
            valid.append(found)
    sizes = {f.entry["tree_size"] for f in valid}
    stored = dict(AuditEvent.objects.filter(seq__in=sizes).values_list("seq", "hash"))
    last_seq = AuditEvent.objects.aggregate(last=Max("seq"))["last"] or 0
    for found in valid:
        size, signed = found.entry["tree_size"], found.entry["head_hash"]
        if size > last_seq:
            problem = f"the log holds only {last_seq} events: it was truncated"
        elif size not in stored:
            problem = f"event #{size} is missing from the log"
        elif stored[size] != signed:
            problem = (
                f"event #{size} has hash {stored[size][:12]}…, not the signed "
                f"{signed[:12]}…: the log was rewritten"
            )
        else:
            continue
        problems.append(f"{describe(found.entry)} from {_where(found)} fails: {problem}")
    return AuditLogReport(chain, len(valid), problems, missing_outside, checkpoint_file())


def _where(found: _Found) -> str:
    return " and ".join(found.sources)
