"""Stage 1: leasing items to annotators and taking their answers.

Concurrency: candidates are claimed with SELECT ... FOR UPDATE SKIP LOCKED, so two
annotators asking at once get different items without waiting on each other. Each item
carries `assigned_count` (active leases + submitted answers), which is what the k-limit is
checked against; expiry gives slots back. Locks are taken lease first, then item."""

import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from functools import lru_cache
from typing import Any, Final, Literal

from django.conf import settings as django_settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, F, OuterRef, QuerySet
from django.utils import timezone

from annotation.models import (
    Annotation,
    AnnotationSettings,
    Guideline,
    Item,
    LabelSchema,
    Lease,
    answer_split,
)
from annotation.schemas import validate_answer
from annotation.services import queue_sql as sql
from annotation.services.configuration import annotation_settings_get
from annotation.services.leases import leases_expire
from annotation.services.resolution import (
    agreement_outcome,
    dispute_rule,
    item_resolve_by_agreement,
)
from core.db import commit_without_flush, fetch_one, on_postgresql, run_alone
from core.fields import encrypt_json
from core.models import Project, User
from core.services.audit import (
    EventDraft,
    audit_append_sql,
    audit_record,
    content_hash,
    event_draft,
)
from core.time_spent import TimeSpent, time_spent_decide


@dataclass(frozen=True)
class QueueConfig:
    settings: AnnotationSettings
    schema_id: int | None
    guideline_id: int | None


_CONFIG_SQL = """
SELECT s.id,
       (SELECT id FROM annotation_labelschema WHERE project_id = %(p)s
        ORDER BY version DESC LIMIT 1),
       (SELECT id FROM annotation_guideline WHERE project_id = %(p)s
        ORDER BY version DESC LIMIT 1),
       s.labels_per_item, s.agreement_rule, s.majority_min, s."order", s.random_seed,
       s.lease_seconds, s.gold_rate, s.pseudonym_salt
FROM annotation_annotationsettings s WHERE s.project_id = %(p)s
"""


def _queue_config(project: Project) -> QueueConfig:
    """Settings and the current schema and guideline ids in one round trip (raw SQL: this
    runs twice per annotated item, and compiling the ORM query cost more than running it)."""
    with connection.cursor() as cursor:
        cursor.execute(_CONFIG_SQL, {"p": project.pk})
        row = cursor.fetchone()
    if row is None:
        annotation_settings_get(project=project)
        return _queue_config(project)
    settings = AnnotationSettings(
        pk=row[0],
        project=project,
        labels_per_item=row[3],
        agreement_rule=row[4],
        majority_min=row[5],
        order=row[6],
        random_seed=row[7],
        lease_seconds=row[8],
        gold_rate=row[9],
        pseudonym_salt=row[10],
    )
    return QueueConfig(settings=settings, schema_id=row[1], guideline_id=row[2])


# Schema and guideline rows are immutable (a change is a new version), so a process may keep
# them once read.
@lru_cache(maxsize=1024)
def _schema(schema_id: int) -> LabelSchema:
    return LabelSchema.objects.get(pk=schema_id)


@lru_cache(maxsize=1024)
def _guideline(guideline_id: int | None) -> Guideline | None:
    return Guideline.objects.get(pk=guideline_id) if guideline_id else None


@dataclass(frozen=True)
class LeaseOffer:
    lease: Lease
    item: Item
    schema: LabelSchema
    guideline: Guideline | None


def _current_schema(project: Project) -> LabelSchema:
    schema = LabelSchema.objects.filter(project=project).order_by("-version").first()
    if schema is None:
        raise ValidationError({"schema": "this project has no label schema yet"})
    return schema


def _current_guideline(project: Project) -> Guideline | None:
    return Guideline.objects.filter(project=project).order_by("-version").first()


# Expiry sweeps run at most every PORTAL_LEASE_SWEEP_SECONDS per project and process: an
# overdue lease then holds its slot a moment longer, and most requests skip a write.
_last_sweep: dict[int, float] = {}


def _sweep_due(project: Project) -> bool:
    every = django_settings.PORTAL_LEASE_SWEEP_SECONDS
    return every <= 0 or time.monotonic() - _last_sweep.get(project.pk, float("-inf")) >= every


def _leases_expire_now_and_then(*, project: Project, now: datetime) -> None:
    if _sweep_due(project):
        _last_sweep[project.pk] = time.monotonic()
        leases_expire(project=project, now=now)


def _offer(lease: Lease) -> LeaseOffer:
    schema = _schema(lease.schema_id) if lease.schema_id else _current_schema(lease.project)
    # A lease records the guideline its annotator was shown (None: there was none yet).
    guideline = (
        _guideline(lease.guideline_id) if lease.schema_id else _current_guideline(lease.project)
    )
    return LeaseOffer(lease=lease, item=lease.item, schema=schema, guideline=guideline)


def _queue_order(order: str) -> list:
    if order == AnnotationSettings.Order.RANDOM:
        return ["random_key", "id"]
    if order == AnnotationSettings.Order.PRIORITY:
        return [F("priority").desc(), "id"]
    return ["id"]


def _label_lease(
    *,
    project: Project,
    item: Item,
    annotator: User,
    schema_id: int,
    guideline_id: int | None,
    created_at: datetime,
    expires_at: datetime,
    pk: int | None = None,
) -> Lease:
    """An active label lease: one the database already holds (`pk` given) or one to save."""
    lease = Lease(
        pk=pk,
        project=project,
        item=item,
        annotator=annotator,
        kind=Lease.Kind.LABEL,
        state=Lease.State.ACTIVE,
        created_at=created_at,
        expires_at=expires_at,
        schema_id=schema_id,
        guideline_id=guideline_id,
    )
    if pk is not None:
        lease._state.adding = False
        lease._state.db = connection.alias
    return lease


def _claim(
    *,
    project: Project,
    annotator: User,
    k: int,
    order: str,
    schema_id: int,
    guideline_id: int | None,
    now: datetime,
    expires: datetime,
) -> Lease | None:
    """A newly claimed item under a new lease, or None when nothing is left to claim."""
    claim = _claim_postgresql if on_postgresql() else _claim_portable
    return claim(
        project=project,
        annotator=annotator,
        k=k,
        order=order,
        schema_id=schema_id,
        guideline_id=guideline_id,
        now=now,
        expires=expires,
    )


def _claim_postgresql(
    *,
    project: Project,
    annotator: User,
    k: int,
    order: str,
    schema_id: int,
    guideline_id: int | None,
    now: datetime,
    expires: datetime,
    run: Callable[[str, dict], tuple | None] = fetch_one,
) -> Lease | None:
    """_claim in one statement (SKIP LOCKED). `run` runs it: on its own (the fast path) or
    in the caller's transaction."""
    row = run(
        sql.claim_sql(order),
        {
            "project": project.pk,
            "k": k,
            "user": annotator.pk,
            "now": now,
            "expires": expires,
            "schema": schema_id,
            "guideline": guideline_id,
        },
    )
    if row is None:
        return None
    return _label_lease(
        pk=row[0],
        project=project,
        item=sql.item_from_row(row[1:-1]),
        annotator=annotator,
        schema_id=schema_id,
        guideline_id=guideline_id,
        created_at=now,
        expires_at=expires,
    )


def _claim_portable(
    *,
    project: Project,
    annotator: User,
    k: int,
    order: str,
    schema_id: int,
    guideline_id: int | None,
    now: datetime,
    expires: datetime,
) -> Lease | None:
    """_claim in plain ORM steps, for the embedded SQLite demo: its transactions begin
    IMMEDIATE, one writer at a time, so nobody claims between the read and the writes."""
    item = (
        Item.objects.filter(
            project=project,
            state=Item.State.OPEN,
            is_gold=False,
            assigned_count__lt=k,
        )
        .exclude(Exists(_seen_by(annotator)))
        .order_by(*_queue_order(order))
        .first()
    )
    if item is None:
        return None
    Item.objects.filter(pk=item.pk).update(assigned_count=F("assigned_count") + 1)
    item.refresh_from_db(fields=["assigned_count"])
    lease = _label_lease(
        project=project,
        item=item,
        annotator=annotator,
        schema_id=schema_id,
        guideline_id=guideline_id,
        created_at=now,
        expires_at=expires,
    )
    lease.save(force_insert=True)
    return lease


def _gold_turn(settings: AnnotationSettings, annotator: User, served: int) -> bool:
    """Whether this request serves a gold item: a per-annotator seeded draw, so the mix
    is reproducible and an annotator cannot predict it from the item order."""
    if settings.gold_rate <= 0:
        return False
    draw = random.Random(f"{settings.random_seed}:{annotator.pk}:{served}").random()  # noqa: S311
    return draw < settings.gold_rate


def _seen_by(annotator: User) -> QuerySet[Lease]:
    """Leases (of any kind but expired) that this annotator holds or held on an item."""
    return Lease.objects.filter(item=OuterRef("pk"), annotator=annotator).exclude(
        state=Lease.State.EXPIRED
    )


def item_lease_next(*, project: Project, annotator: User) -> LeaseOffer | None:
    """The annotator's next item under a fresh lease, or their current one; None when the
    queue holds nothing they may label. Never an item they labelled or skipped, never an
    item whose active leases plus answers have reached k.

    On PostgreSQL this is one read and, when a new item is needed, one claiming statement;
    gold turns and the embedded SQLite demo take the locked path below."""
    if on_postgresql():
        offer = _lease_next_fast(project=project, annotator=annotator)
        if offer is not _SLOW_PATH:
            return offer
    return _item_lease_next_locked(project=project, annotator=annotator)


@transaction.atomic
def _item_lease_next_locked(*, project: Project, annotator: User) -> LeaseOffer | None:
    # A lease lost in a crash only returns its item to the pool.
    commit_without_flush()
    now = timezone.now()
    current = (
        Lease.objects.filter(
            project=project,
            annotator=annotator,
            kind=Lease.Kind.LABEL,
            state=Lease.State.ACTIVE,
        )
        .select_related("item", "project")
        .order_by("-created_at")
        .first()
    )
    if current is not None and current.expires_at > now:
        return _offer(current)
    if current is not None:
        # The annotator let it run out: it goes back to the pool now, for them too, not at
        # the next sweep.
        leases_expire(project=project, now=now, holder=annotator)
    config = _queue_config(project)
    settings = config.settings
    if config.schema_id is None:
        raise ValidationError({"schema": "this project has no label schema yet"})
    _leases_expire_now_and_then(project=project, now=now)
    expires = now + timedelta(seconds=settings.lease_seconds)
    if settings.gold_rate > 0 and _gold_turn(
        settings, annotator, Lease.objects.filter(project=project, annotator=annotator).count()
    ):
        gold = (
            Item.objects.filter(project=project, is_gold=True)
            .exclude(Exists(_seen_by(annotator)))
            .order_by("id")
            .select_for_update(skip_locked=True, of=("self",))
            .first()
        )
        if gold is not None:
            lease = _label_lease(
                project=project,
                item=gold,
                annotator=annotator,
                schema_id=config.schema_id,
                guideline_id=config.guideline_id,
                created_at=now,
                expires_at=expires,
            )
            lease.save(force_insert=True)
            return _offer(lease)
    claimed = _claim(
        project=project,
        annotator=annotator,
        k=settings.labels_per_item,
        order=settings.order,
        schema_id=config.schema_id,
        guideline_id=config.guideline_id,
        now=now,
        expires=expires,
    )
    return None if claimed is None else _offer(claimed)


def _lock_own_lease(*, lease_id: int, annotator: User, project: Project) -> Lease:
    lease = (
        Lease.objects.select_for_update()
        .filter(pk=lease_id, project=project, kind=Lease.Kind.LABEL)
        .first()
    )
    if lease is None:
        raise ValidationError({"lease": "no such lease in this project"})
    if lease.annotator_id != annotator.pk:
        raise PermissionDenied("This item is leased to someone else.")
    return lease


def _revive_if_expired(
    lease: Lease, item: Item, settings: AnnotationSettings, now: datetime
) -> None:
    """A late answer is still taken if the item has room for it."""
    if lease.state == Lease.State.ACTIVE and lease.expires_at >= now:
        return
    if lease.state == Lease.State.ACTIVE:  # overdue but not yet swept
        leases_expire(project=lease.project, now=now)
        lease.refresh_from_db()
        item.refresh_from_db()
    if lease.state != Lease.State.EXPIRED:
        raise ValidationError({"lease": f"this item was already {lease.state}"})
    if not item.is_gold and (
        item.state != Item.State.OPEN or item.assigned_count >= settings.labels_per_item
    ):
        raise ValidationError(
            {"lease": "your lease expired and the item went to someone else; take the next one"}
        )
    if not item.is_gold:
        Item.objects.filter(pk=item.pk).update(assigned_count=F("assigned_count") + 1)
    lease.state = Lease.State.ACTIVE


def annotation_submit(
    *,
    project: Project,
    lease_id: int,
    annotator: User,
    value: dict,
    submission_id: uuid.UUID,
    seconds_spent: float | None = None,
) -> Annotation:
    """Store an answer. Idempotent on `submission_id`: a retry returns the stored answer.
    When the item reaches k answers, agreement decides it in the same transaction.

    On PostgreSQL the usual case (an active lease, not about to expire) is one read and
    one writing statement; late answers and the embedded SQLite demo take the locked
    path below."""
    if on_postgresql():
        for _ in range(_SUBMIT_ATTEMPTS):
            annotation = _annotation_submit_fast(
                project=project,
                lease_id=lease_id,
                annotator=annotator,
                value=value,
                submission_id=submission_id,
                seconds_spent=seconds_spent,
            )
            if annotation is _SLOW_PATH:
                break
            if annotation is not _RETRY:
                return annotation
    return _annotation_submit_locked(
        project=project,
        lease_id=lease_id,
        annotator=annotator,
        value=value,
        submission_id=submission_id,
        seconds_spent=seconds_spent,
    )


@transaction.atomic
def _annotation_submit_locked(
    *,
    project: Project,
    lease_id: int,
    annotator: User,
    value: dict,
    submission_id: uuid.UUID,
    seconds_spent: float | None = None,
) -> Annotation:
    # One statement locks the lease and its item (lease first, as everywhere here).
    lease = (
        Lease.objects.select_for_update()
        .select_related("item")
        .filter(pk=lease_id, project=project, kind=Lease.Kind.LABEL)
        .first()
    )
    if lease is None:
        raise ValidationError({"lease": "no such lease in this project"})
    if lease.annotator_id != annotator.pk:
        raise PermissionDenied("This item is leased to someone else.")
    if lease.state == Lease.State.SUBMITTED:
        existing = Annotation.objects.filter(submission_id=submission_id).first()
        if existing is not None and existing.lease_id == lease.pk:
            return existing  # a retry of the submission that went through
        raise ValidationError({"lease": "this item was already submitted"})
    item = lease.item
    now = timezone.now()
    config = _queue_config(project)
    settings = config.settings
    _revive_if_expired(lease, item, settings, now)
    schema = _schema(lease.schema_id) if lease.schema_id else _current_schema(project)
    clean = validate_answer(schema.task_type, schema.config, item.payload, value)
    spent = time_spent_decide(
        claimed=seconds_spent, handed_out_at=lease.created_at, answered_at=now, shown=item.payload
    )
    # `value` is the answer property over choice and free_text; the plugin sees fields only.
    annotation = Annotation.objects.create(  # type: ignore[misc]
        project=project,
        item=item,
        annotator=annotator,
        value=clean,
        schema=schema,
        guideline_id=lease.guideline_id if lease.schema_id else config.guideline_id,
        submission_id=submission_id,
        lease=lease,
        started_at=lease.created_at,
        submitted_at=now,
        seconds_spent=spent.seconds,
        seconds_source=spent.source,
        too_fast=spent.too_fast,
    )
    Lease.objects.filter(pk=lease.pk).update(state=Lease.State.SUBMITTED)
    if not item.is_gold:
        Item.objects.filter(pk=item.pk).update(label_count=F("label_count") + 1)
    audit_record(
        actor=annotator,
        action="annotation.submit",
        target=annotation,
        project_id=project.pk,
        data={
            "item": item.pk,
            "value_sha256": content_hash(clean),
            "schema_version": schema.version,
        },
    )
    if not item.is_gold and item.label_count + 1 >= settings.labels_per_item:
        item.label_count += 1
        item_resolve_by_agreement(item=item, settings=settings, task_type=schema.task_type)
    return annotation


def _answer_params(prefix: str, value: dict) -> dict[str, str | None]:
    """An answer as the raw statements write it: choice as JSON, free text encrypted."""
    choice, free_text = answer_split(value)
    return {
        f"{prefix}choice": None if choice is None else json.dumps(choice),
        f"{prefix}free_text": None if free_text is None else encrypt_json(free_text),
    }


# The fast paths (PostgreSQL only: queue_sql's statements) answer one of these when they
# leave the case to the locked path.
class _Detour(Enum):
    SLOW_PATH = "slow path"
    RETRY = "retry"


_SLOW_PATH: Final = _Detour.SLOW_PATH
_RETRY: Final = _Detour.RETRY
_SUBMIT_ATTEMPTS = 3
# A lease this close to expiry goes the locked way: the sweeper may be expiring it, and it
# locks lease before item where the submitting statement locks item with lease.
_EXPIRY_MARGIN = timedelta(seconds=5)


def _lease_next_fast(
    *, project: Project, annotator: User
) -> LeaseOffer | None | Literal[_Detour.SLOW_PATH]:
    now = timezone.now()
    row = fetch_one(sql.NEXT_READ_SQL, {"project": project.pk, "user": annotator.pk})
    if row is None:  # no settings row yet: the locked path creates it
        return _SLOW_PATH
    k, order, lease_seconds, gold_rate, schema_id, guideline_id = row[:6]
    lease_id, created_at, expires_at, lease_schema_id, lease_guideline_id = row[6:11]
    if lease_id is not None and expires_at <= now:
        return _SLOW_PATH  # their lease ran out: the locked path expires it first
    if lease_id is not None:
        lease = _label_lease(
            pk=lease_id,
            project=project,
            item=sql.item_from_row(row[11:]),
            annotator=annotator,
            schema_id=lease_schema_id,
            guideline_id=lease_guideline_id,
            created_at=created_at,
            expires_at=expires_at,
        )
        return _offer(lease)
    if schema_id is None:
        raise ValidationError({"schema": "this project has no label schema yet"})
    if gold_rate > 0:
        return _SLOW_PATH
    # Checked here too, so that a request with no sweep due opens no transaction.
    if _sweep_due(project):
        with transaction.atomic():
            _leases_expire_now_and_then(project=project, now=now)
    claimed = _claim_postgresql(
        project=project,
        annotator=annotator,
        k=k,
        order=order,
        schema_id=schema_id,
        guideline_id=guideline_id,
        now=now,
        expires=now + timedelta(seconds=lease_seconds),
        run=run_alone,
    )
    return None if claimed is None else _offer(claimed)


# Not frozen: a frozen dataclass costs microseconds per instance on the hot path.
@dataclass(slots=True)
class _SubmitRead:
    """One row of SUBMIT_READ_SQL (fields in its column order): the lease, its item and
    the project's settings as a submit found them, without locks."""

    owner: int
    state: str
    item_id: int
    schema_id: int | None
    guideline_id: int | None
    started_at: datetime
    expires_at: datetime
    payload: str
    is_gold: bool
    item_state: str
    label_count: int
    k: int | None
    rule: str | None
    majority_min: int | None
    used_by_lease: int | None
    others: Any
    annotation_id: int
    gold_id: int | None


@dataclass(slots=True)
class _Answer:
    """A checked answer on the fast path, with who gave it, where and when."""

    project: Project
    annotator: User
    lease_id: int
    submission_id: uuid.UUID
    clean: dict
    schema: LabelSchema
    spent: TimeSpent
    now: datetime


def _annotation_submit_fast(
    *,
    project: Project,
    lease_id: int,
    annotator: User,
    value: dict,
    submission_id: uuid.UUID,
    seconds_spent: float | None,
) -> Annotation | _Detour:
    """The usual submit: one read, then one statement that writes the answer, the item's
    count, a gold label where agreement decides the item, and the audit events. Answers
    _SLOW_PATH where the locked path must decide, _RETRY where the read went stale."""
    now = timezone.now()
    read = _submit_read(project=project, lease_id=lease_id, submission_id=submission_id)
    settled = _submit_settled_without_writing(
        read, lease_id=lease_id, annotator=annotator, submission_id=submission_id, now=now
    )
    if settled is not None:
        return settled
    schema = _schema(read.schema_id)
    shown = sql.payload_value(read.payload)
    answer = _Answer(
        project=project,
        annotator=annotator,
        lease_id=lease_id,
        submission_id=submission_id,
        clean=validate_answer(schema.task_type, schema.config, shown, value),
        schema=schema,
        spent=time_spent_decide(
            claimed=seconds_spent, handed_out_at=read.started_at, answered_at=now, shown=shown
        ),
        now=now,
    )
    gold_sql, params, events = _submit_statement_parts(read, answer)
    try:
        answered = _submit_write(gold_sql=gold_sql, params=params, events=events)
    except IntegrityError:
        # A retry of this very submission raced this one and won.
        existing = _stored_submission(submission_id=submission_id, lease_id=lease_id)
        if existing is None:
            raise
        return existing
    if not answered:
        # The lease or the item changed since the read (or the audit chain has no head
        # row yet, which the locked path creates).
        return _RETRY
    return _annotation_as_written(read, answer)


def _submit_read(*, project: Project, lease_id: int, submission_id: uuid.UUID) -> _SubmitRead:
    """The lease of this project as a submit finds it, with ids drawn for the answer and,
    where this answer completes the item, its gold label."""
    row = fetch_one(
        sql.SUBMIT_READ_SQL,
        {"lease": lease_id, "project": project.pk, "submission": submission_id},
    )
    if row is None:
        raise ValidationError({"lease": "no such lease in this project"})
    return _SubmitRead(*row)


def _submit_settled_without_writing(
    read: _SubmitRead,
    *,
    lease_id: int,
    annotator: User,
    submission_id: uuid.UUID,
    now: datetime,
) -> Annotation | _Detour | None:
    """What the fast submit answers before it writes anything: the stored answer of a
    retry, _SLOW_PATH for the cases the locked path decides, None to go on. Raises for a
    lease of someone else's, one already submitted, or a submission id used elsewhere."""
    if read.owner != annotator.pk:
        raise PermissionDenied("This item is leased to someone else.")
    if read.state == Lease.State.SUBMITTED:
        if read.used_by_lease == lease_id:
            return Annotation.objects.get(submission_id=submission_id)
        raise ValidationError({"lease": "this item was already submitted"})
    if read.used_by_lease is not None:
        raise ValidationError({"submission_id": "was already used for another answer"})
    if (
        read.state != Lease.State.ACTIVE
        or read.expires_at < now + _EXPIRY_MARGIN
        or read.schema_id is None
        or read.k is None
    ):
        return _SLOW_PATH
    return None


def _submit_statement_parts(read: _SubmitRead, answer: _Answer) -> tuple[str, dict, list]:
    """SUBMIT_WRITE_SQL's gold-label insert, parameters and audit events for `answer`.
    Where it is the item's k-th, agreement decides the item in the same statement."""
    others = [
        (pk, sql.answer_value(choice, free_text))
        for pk, choice, free_text in sql.json_value(read.others or "[]")
    ]
    events = [_submit_event(read, answer)]
    params = _submit_params(read, answer, others=others)
    # The slow path took every read whose settings are missing (_submit_settled_without_writing).
    if read.is_gold or read.label_count + 1 < read.k:  # type: ignore[operator]
        return "", params, events
    # A submitted answer is never empty, so none of `others` is None.
    gold_sql, decided, decided_events = _agreement_on_last_answer(
        read,
        answer,
        answers=[*others, (read.annotation_id, answer.clean)],  # type: ignore[list-item]
    )
    params.update(decided)
    return gold_sql, params, events + decided_events


def _submit_event(read: _SubmitRead, answer: _Answer) -> EventDraft:
    """The audit event of the answer itself, naming its pre-drawn id."""
    return event_draft(
        actor=answer.annotator,
        action="annotation.submit",
        created_at=answer.now,
        target_type="annotation.annotation",
        target_id=str(read.annotation_id),
        project_id=answer.project.pk,
        data={
            "item": read.item_id,
            "value_sha256": content_hash(answer.clean),
            "schema_version": answer.schema.version,
        },
    )


def _submit_params(
    read: _SubmitRead, answer: _Answer, *, others: list[tuple[int, dict | None]]
) -> dict[str, Any]:
    """The parameters of an answer that leaves the item's state as it is."""
    return {
        "others": [pk for pk, _ in others],
        "standing": len(others),
        "lease": answer.lease_id,
        "user": answer.annotator.pk,
        "now": answer.now,
        "label_count": read.label_count,
        "item_state": read.item_state,
        "counted": 0 if read.is_gold else 1,
        "new_state": read.item_state,
        "annotation": read.annotation_id,
        "project": answer.project.pk,
        **_answer_params("", answer.clean),
        "schema": read.schema_id,
        # The guideline the annotator was shown (schema and guideline travel together).
        "guideline": read.guideline_id,
        "submission": answer.submission_id,
        "started": read.started_at,
        "seconds": answer.spent.seconds,
        "seconds_source": answer.spent.source,
        "too_fast": answer.spent.too_fast,
    }


def _agreement_on_last_answer(
    read: _SubmitRead, answer: _Answer, *, answers: list[tuple[int, dict]]
) -> tuple[str, dict[str, Any], list]:
    """Precondition: `answer` is the item's k-th. Agreement decides the item: the gold
    label's insert (empty when disputed), the parameters that change and the audit event."""
    # Set: the slow path took every read whose settings are missing.
    settings = AnnotationSettings(  # type: ignore[misc]
        labels_per_item=read.k, agreement_rule=read.rule, majority_min=read.majority_min
    )
    outcome = agreement_outcome(
        values=[v for _, v in answers], settings=settings, task_type=answer.schema.task_type
    )
    if outcome.method is None:
        disputed = event_draft(
            actor=None,
            action="annotation.item.disputed",
            created_at=answer.now,
            target_type="annotation.item",
            target_id=str(read.item_id),
            project_id=answer.project.pk,
            data={
                "labels": len(answers),
                "distinct": outcome.distinct,
                **dispute_rule(settings, outcome),
            },
        )
        return "", {"new_state": Item.State.DISPUTED}, [disputed]
    agreeing = [answers[i] for i in outcome.agreeing]
    params = {
        "new_state": Item.State.RESOLVED,
        "gold": read.gold_id,
        **_answer_params("gold_", agreeing[0][1]),
        "gold_reason": encrypt_json(""),
        "method": outcome.method,
        "gold_ids": json.dumps([pk for pk, _ in agreeing]),
    }
    resolved = event_draft(
        actor=None,
        action="annotation.gold.agreement",
        created_at=answer.now,
        target_type="annotation.goldlabel",
        target_id=str(read.gold_id),
        project_id=answer.project.pk,
        data={
            "item": read.item_id,
            "method": outcome.method,
            "votes": outcome.votes,
            "labels": len(answers),
        },
    )
    return sql.GOLD_INSERT_SQL, params, [resolved]


def _submit_write(*, gold_sql: str, params: dict[str, Any], events: list) -> bool:
    """Run the one writing statement on its own; whether it wrote the answer (False: what
    the read saw has changed, and nothing was written)."""
    audit_sql, audit_params = audit_append_sql(events, gate="answer")
    statement = sql.SUBMIT_WRITE_SQL.format(gold=gold_sql, audit=audit_sql)
    # The statement answers one row whatever it wrote.
    answered, appended = run_alone(statement, {**params, **audit_params})  # type: ignore[misc]
    if answered:
        assert appended == len(events)  # noqa: S101 - `locked` checked the head row exists
    return bool(answered)


def _stored_submission(*, submission_id: uuid.UUID, lease_id: int) -> Annotation | None:
    """The answer stored under `submission_id` for this lease, if there is one."""
    existing = Annotation.objects.filter(submission_id=submission_id).first()
    if existing is not None and existing.lease_id == lease_id:
        return existing
    return None


def _annotation_as_written(read: _SubmitRead, answer: _Answer) -> Annotation:
    """The Annotation SUBMIT_WRITE_SQL inserted, built without reading it back."""
    # `value` is the answer property over choice and free_text; the plugin sees fields only.
    annotation = Annotation(  # type: ignore[misc]
        pk=read.annotation_id,
        project=answer.project,
        item_id=read.item_id,
        annotator=answer.annotator,
        value=answer.clean,
        schema=answer.schema,
        guideline_id=read.guideline_id,
        submission_id=answer.submission_id,
        lease_id=answer.lease_id,
        started_at=read.started_at,
        submitted_at=answer.now,
        seconds_spent=answer.spent.seconds,
        seconds_source=answer.spent.source,
        too_fast=answer.spent.too_fast,
        undone=False,
    )
    annotation._state.adding = False
    annotation._state.db = connection.alias
    return annotation


@transaction.atomic
def item_skip(*, project: Project, lease_id: int, annotator: User, reason: str) -> Lease:
    """Give the item back with a reason; it is not offered to this annotator again."""
    reason = reason.strip()
    if not reason:
        raise ValidationError({"reason": "say why you skip this item"})
    lease = _lock_own_lease(lease_id=lease_id, annotator=annotator, project=project)
    if lease.state != Lease.State.ACTIVE:
        raise ValidationError({"lease": f"this item was already {lease.state}"})
    lease.state = Lease.State.SKIPPED
    lease.skip_reason = reason[:500]
    lease.save(update_fields=["state", "skip_reason"])
    Item.objects.filter(pk=lease.item_id, is_gold=False, assigned_count__gt=0).update(
        assigned_count=F("assigned_count") - 1
    )
    audit_record(
        actor=annotator,
        action="annotation.skip",
        target=lease,
        project_id=project.pk,
        data={"item": lease.item_id, "reason_sha256": content_hash(lease.skip_reason)},
    )
    return lease


@transaction.atomic
def annotation_undo(*, project: Project, annotator: User) -> LeaseOffer:
    """Take back the annotator's last answer while its item is still open, and put that
    item back in front of them under its lease."""
    annotation = (
        Annotation.objects.select_for_update()
        .filter(project=project, annotator=annotator, undone=False)
        .order_by("-submitted_at", "-pk")
        .first()
    )
    if annotation is None:
        raise ValidationError({"undo": "nothing to undo"})
    lease = Lease.objects.select_for_update().get(pk=annotation.lease_id)
    item = Item.objects.select_for_update().get(pk=annotation.item_id)
    if item.state != Item.State.OPEN:
        raise ValidationError(
            {"undo": "that item is already decided; ask an adjudicator to change it"}
        )
    now = timezone.now()
    settings = annotation_settings_get(project=project)
    # Hand back whatever item the annotator moved on to, so the undone one is current.
    for other in Lease.objects.select_for_update().filter(
        project=project, annotator=annotator, kind=Lease.Kind.LABEL, state=Lease.State.ACTIVE
    ):
        other.state = Lease.State.EXPIRED
        other.save(update_fields=["state"])
        Item.objects.filter(pk=other.item_id, is_gold=False, assigned_count__gt=0).update(
            assigned_count=F("assigned_count") - 1
        )
    annotation.undone = True
    annotation.save(update_fields=["undone"])
    if not item.is_gold:
        Item.objects.filter(pk=item.pk).update(label_count=F("label_count") - 1)
    lease.state = Lease.State.ACTIVE
    lease.expires_at = now + timedelta(seconds=settings.lease_seconds)
    lease.save(update_fields=["state", "expires_at"])
    audit_record(
        actor=annotator,
        action="annotation.undo",
        target=annotation,
        project_id=project.pk,
        data={"item": item.pk},
    )
    lease.item = Item.objects.get(pk=item.pk)
    return _offer(lease)
