import hashlib
import json
from dataclasses import dataclass
from typing import Any

from django.db import connection, models, transaction
from django.utils import timezone

from core.chain import GENESIS_HASH, canonical_json
from core.chain_sql import EventDraft, append_sql, drafts_settle, event_draft
from core.db import on_postgresql
from core.models import AuditChainHead, AuditEvent, audit_target_type

# For services that append their events inside their own single-statement writes.
audit_append_sql = append_sql
__all__ = ["EventDraft", "audit_append_sql", "content_hash", "drafts_settle", "event_draft"]


def content_hash(value: Any) -> str:
    """The sha256 (hex) of free text, or of a JSON value's canonical form, for audit data.

    Events name content (labels, answers, reasons, comments, prompts, people) by id and by
    this hash, never by the content itself: erasing a record by destroying its encrypted copy
    then leaves nothing in the append-only log to rewrite, and the hash still proves which
    content an event was about to anyone who holds it."""
    raw = value.encode("utf-8") if isinstance(value, str) else canonical_json(value)
    return hashlib.sha256(raw).hexdigest()


def _target_identity(target: models.Model | None) -> tuple[str, str]:
    if target is None:
        return "", ""
    return audit_target_type(target), str(target.pk)


def _project_id_of(target: models.Model | None) -> int | None:
    """Projects own most objects; an event is filed under the project of its target."""
    if target is None:
        return None
    if audit_target_type(target) == "portal.project":
        return target.pk
    return getattr(target, "project_id", None)


def audit_record(
    *,
    actor: Any,
    action: str,
    target: models.Model | None = None,
    data: dict[str, Any] | None = None,
    project_id: int | None = None,
) -> AuditEvent:
    """Append one event to the hash chain, inside the caller's transaction.

    Appends are serialised by the chain-head row lock, which is held until the caller
    commits: call this last in a service so the lock is held briefly. Inside a caller's
    transaction no savepoint is taken (two round trips saved on every audited write).
    """
    if not transaction.get_connection().in_atomic_block:
        with transaction.atomic():
            return _append(
                actor=actor, action=action, target=target, data=data, project_id=project_id
            )
    return _append(actor=actor, action=action, target=target, data=data, project_id=project_id)


def _append(
    *,
    actor: Any,
    action: str,
    target: models.Model | None,
    data: dict[str, Any] | None,
    project_id: int | None,
) -> AuditEvent:
    if on_postgresql():
        return _append_in_one_statement(
            actor=actor, action=action, target=target, data=data, project_id=project_id
        )
    head = AuditChainHead.objects.select_for_update().filter(pk=1).first()
    if head is None:  # the first event ever (or the first after a test flush)
        AuditChainHead.objects.bulk_create([AuditChainHead(pk=1)], ignore_conflicts=True)
        head = AuditChainHead.objects.select_for_update().get(pk=1)
    target_type, target_id = _target_identity(target)
    user = actor if getattr(actor, "is_authenticated", False) else None
    event = AuditEvent(
        seq=head.seq + 1,
        created_at=timezone.now(),
        actor=user,
        actor_username=user.get_username() if user else "",
        project_id=project_id if project_id is not None else _project_id_of(target),
        action=action,
        target_type=target_type,
        target_id=target_id,
        # Round-trip through canonical JSON so what is stored is exactly what was hashed.
        data=json.loads(canonical_json(data or {})),
        prev_hash=head.hash,
    )
    event.hash = event.compute_hash()
    event.save(force_insert=True)
    AuditChainHead.objects.filter(pk=1).update(seq=event.seq, hash=event.hash)
    return event


def _append_in_one_statement(
    *,
    actor: Any,
    action: str,
    target: models.Model | None,
    data: dict[str, Any] | None,
    project_id: int | None,
) -> AuditEvent:
    """The same append as one statement: the head row is locked, read, moved on and
    released by the database without a round trip in between (see chain_sql)."""
    draft = event_draft(
        actor=actor,
        action=action,
        created_at=timezone.now(),
        target=target,
        data=data,
        project_id=project_id,
    )
    clauses, params = append_sql([draft])
    statement = f"WITH {clauses} SELECT id, seq, prev_hash, hash FROM audit_rows"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        rows = cursor.fetchall()
        if not rows:  # the first event ever (or the first after a test flush)
            AuditChainHead.objects.bulk_create([AuditChainHead(pk=1)], ignore_conflicts=True)
            cursor.execute(statement, params)
            rows = cursor.fetchall()
    return drafts_settle([draft], rows)[0]


# The name the foundation issue gives the same function.
record_event = audit_record


@dataclass(frozen=True)
class ChainBreak:
    seq: int
    event_id: int | None
    reason: str

    def __str__(self) -> str:
        where = f"event #{self.seq} (id {self.event_id})" if self.event_id else f"#{self.seq}"
        return f"{where}: {self.reason}"


@dataclass(frozen=True)
class ChainReport:
    checked: int
    head_hash: str
    first_break: ChainBreak | None

    @property
    def ok(self) -> bool:
        return self.first_break is None


def audit_chain_verify(*, chunk_size: int = 5000) -> ChainReport:
    """Walk the whole chain in order; report the first event whose hash or link is wrong.

    Appends may go on while the walk runs. An append moves the head in the transaction
    that inserts its event, so the head read first names a prefix that is wholly committed:
    the walk checks exactly that prefix and ends at the head it read. Afterwards the last
    event is read before the head is read again; heads only grow, so an event beyond the
    later head can only have been inserted around the append path."""
    head = AuditChainHead.objects.filter(pk=1).values_list("seq", "hash").first()
    events = AuditEvent.objects.order_by("seq")
    if head is not None:
        events = events.filter(seq__lte=head[0])
    expected_prev = GENESIS_HASH
    expected_seq = 1
    checked = 0
    for event in events.iterator(chunk_size=chunk_size):
        if event.seq != expected_seq:
            return ChainReport(
                checked,
                expected_prev,
                ChainBreak(expected_seq, None, f"missing; the next event is #{event.seq}"),
            )
        if event.prev_hash != expected_prev:
            return ChainReport(
                checked,
                expected_prev,
                ChainBreak(event.seq, event.pk, "prev_hash does not match the event before it"),
            )
        if event.compute_hash() != event.hash:
            return ChainReport(
                checked,
                expected_prev,
                ChainBreak(event.seq, event.pk, "content does not match its hash"),
            )
        expected_prev = event.hash
        expected_seq += 1
        checked += 1
    if head is not None and tuple(head) != (checked, expected_prev):
        return ChainReport(
            checked,
            expected_prev,
            ChainBreak(
                head[0],
                None,
                f"chain head says #{head[0]} but the log ends at "
                f"#{checked}: events were removed from the end",
            ),
        )
    last_seq = AuditEvent.objects.aggregate(last=models.Max("seq"))["last"] or 0
    later = AuditChainHead.objects.filter(pk=1).values_list("seq", flat=True).first()
    if last_seq > (later if later is not None else checked):
        return ChainReport(
            checked,
            expected_prev,
            ChainBreak(
                last_seq,
                None,
                f"event #{last_seq} lies beyond the chain head "
                f"(#{later if later is not None else checked}): it was inserted around "
                "the append path",
            ),
        )
    return ChainReport(checked, expected_prev, None)
