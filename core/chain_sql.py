"""Appending to the audit chain inside one SQL statement.

The chain head's row lock serialises every audited write in the portal, and it is held
until the writing transaction commits. Read, hash in Python, insert, update head: that is
three round trips under the lock, each one waiting for its web thread to get the GIL back.
Here the database fills in what only the head knows (seq, prev_hash, and the hash over
them) with `sha256()`, so an append is part of one statement; run in autocommit, the lock
lives only inside the server, for well under a millisecond.

The bytes hashed are exactly `core.chain.event_hash`'s: Python renders the event's
canonical JSON with a placeholder seq and cuts it around that number; SQL splices the
real seq back in."""

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import models

from core.chain import canonical_json
from core.models import AuditEvent, audit_target_type

# Never a real seq (the chain would need 10**17 events), so it marks the one place to cut.
_SEQ_MARK = 99_999_999_999_999_999
_SEQ_FIELD = f'"seq":{_SEQ_MARK},'.encode()


@dataclass(frozen=True)
class EventDraft:
    """An audit event with everything but its place in the chain."""

    event: AuditEvent  # unsaved; seq, prev_hash and hash are set once the row exists
    head: bytes  # canonical JSON up to and including `"seq":`
    tail: bytes  # canonical JSON from the `,` after the seq to the end


def event_draft(
    *,
    actor: Any,
    action: str,
    created_at: datetime,
    target: models.Model | None = None,
    target_type: str = "",
    target_id: str = "",
    data: dict[str, Any] | None = None,
    project_id: int | None = None,
) -> EventDraft:
    """Precondition: the target's pk is known (pre-allocated when the row is written in the
    same statement; pass target_type and target_id then instead of target)."""
    if target is not None:
        target_type, target_id = audit_target_type(target), str(target.pk)
        if project_id is None:
            project_id = (
                target.pk
                if target_type == "portal.project"
                else getattr(target, "project_id", None)
            )
    user = actor if getattr(actor, "is_authenticated", False) else None
    event = AuditEvent(
        seq=_SEQ_MARK,
        created_at=created_at,
        actor=user,
        actor_username=user.get_username() if user else "",
        project_id=project_id,
        action=action,
        target_type=target_type,
        target_id=str(target_id),
        # Round-trip through canonical JSON so what is stored is exactly what was hashed.
        data=json.loads(canonical_json(data or {})),
    )
    payload = canonical_json(event.payload())
    cut = payload.find(_SEQ_FIELD)
    if cut < 0 or payload.find(_SEQ_FIELD, cut + 1) >= 0:
        raise ValueError("the event payload must hold its seq exactly once")
    split = cut + len(b'"seq":')
    return EventDraft(
        event=event, head=payload[:split], tail=payload[split + len(str(_SEQ_MARK)) :]
    )


def append_sql(drafts: list[EventDraft], *, gate: str | None = None) -> tuple[str, dict]:
    """WITH-clauses (no leading WITH) that append `drafts` to the chain in order, and the
    parameters they use. The appended rows are readable as `audit_rows(id, seq,
    prev_hash, hash)`. With `gate`, the name of an earlier WITH-query, nothing is
    appended (and the head is not locked) unless that query returns a row.

    Appends nothing when the chain head row is missing; the caller creates it and
    retries (see audit_record)."""
    if not drafts:
        raise ValueError("nothing to append")
    gate_clause = f" AND EXISTS (SELECT 1 FROM {gate})" if gate else ""  # noqa: S608
    params: dict[str, Any] = {}
    clauses = [
        "audit_head AS (SELECT seq, hash FROM governance_auditchainhead "  # noqa: S608
        f"WHERE id = 1{gate_clause} FOR UPDATE)"
    ]
    previous = "audit_head"
    for n, draft in enumerate(drafts):
        params[f"audit_{n}_head"] = draft.head
        params[f"audit_{n}_tail"] = draft.tail
        clauses.append(
            f"audit_e{n} AS (SELECT p.seq + 1 AS seq, p.hash AS prev_hash, "  # noqa: S608
            "encode(sha256(convert_to(p.hash, 'UTF8') || "
            f"%(audit_{n}_head)s::bytea || convert_to((p.seq + 1)::text, 'UTF8') || "
            f"%(audit_{n}_tail)s::bytea), 'hex') AS hash FROM {previous} p)"
        )
        previous = f"audit_e{n}"
    selects = []
    for n, draft in enumerate(drafts):
        event = draft.event
        params.update(
            {
                f"audit_{n}_created_at": event.created_at,
                f"audit_{n}_actor": event.actor_id,
                f"audit_{n}_username": event.actor_username,
                f"audit_{n}_project": event.project_id,
                f"audit_{n}_action": event.action,
                f"audit_{n}_target_type": event.target_type,
                f"audit_{n}_target_id": event.target_id,
                f"audit_{n}_data": canonical_json(event.data).decode(),
            }
        )
        selects.append(
            f"SELECT e.seq, %(audit_{n}_created_at)s::timestamptz, "  # noqa: S608
            f"%(audit_{n}_actor)s::bigint, "
            f"%(audit_{n}_username)s, %(audit_{n}_project)s::bigint, %(audit_{n}_action)s, "
            f"%(audit_{n}_target_type)s, %(audit_{n}_target_id)s, %(audit_{n}_data)s::jsonb, "
            f"e.prev_hash, e.hash FROM audit_e{n} e"
        )
    clauses.append(
        "audit_rows AS (INSERT INTO governance_auditevent (seq, created_at, actor_id, "
        "actor_username, project_id, action, target_type, target_id, data, prev_hash, hash) "
        + " UNION ALL ".join(selects)
        + " RETURNING id, seq, prev_hash, hash)"
    )
    clauses.append(
        "audit_moved AS (UPDATE governance_auditchainhead h SET seq = last.seq, "  # noqa: S608
        f"hash = last.hash FROM {previous} last WHERE h.id = 1 RETURNING h.id)"
    )
    return ",\n".join(clauses), params


def drafts_settle(drafts: list[EventDraft], rows: list[tuple[int, int, str, str]]) -> list:
    """Fill the drafts' events in from `audit_rows`, in chain order."""
    by_seq = sorted(rows, key=lambda row: row[1])
    events = []
    for draft, (pk, seq, prev_hash, hash_) in zip(drafts, by_seq, strict=True):
        event = draft.event
        event.pk, event.seq, event.prev_hash, event.hash = pk, seq, prev_hash, hash_
        event._state.adding = False
        event._state.db = "default"
        events.append(event)
    return events
