"""Stages 2 and 3: agreement decides an item once it has k answers, or sends it to
adjudication, where an expert sets the gold label with a written reason."""

from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from annotation import agreement
from annotation.models import (
    Annotation,
    AnnotationSettings,
    GoldLabel,
    Item,
    LabelSchema,
    Lease,
    SnapshotMember,
    answer_join,
)
from annotation.schemas import agreement_key, validate_answer
from annotation.services.leases import leases_expire
from core.models import Project, User
from core.services.audit import audit_record, content_hash

ADJUDICATION_LEASE = timedelta(minutes=15)


@dataclass(frozen=True)
class AgreementOutcome:
    method: str | None  # a GoldLabel.Method, or None: the item goes to adjudication
    agreeing: list[int]  # positions of the answers that carry the winning label, in order
    votes: int
    distinct: int


def agreement_outcome(
    *, values: list[dict], settings: AnnotationSettings, task_type: str
) -> AgreementOutcome:
    """What the project's rule makes of an item's answers (oldest first)."""
    keys = [agreement_key(task_type, value) for value in values]
    (top_key, votes), *rest = Counter(keys).most_common()
    tied = bool(rest) and rest[0][1] == votes
    method = None
    if votes == len(values) >= settings.labels_per_item:
        method = GoldLabel.Method.UNANIMOUS
    elif (
        settings.agreement_rule == AnnotationSettings.Rule.MAJORITY
        and votes >= settings.majority_min
        and not tied
    ):
        method = GoldLabel.Method.MAJORITY
    agreeing = [i for i, key in enumerate(keys) if key == top_key]
    return AgreementOutcome(method=method, agreeing=agreeing, votes=votes, distinct=len(set(keys)))


def dispute_rule(settings: AnnotationSettings, outcome: AgreementOutcome) -> dict[str, Any]:
    """The rule that sent an item to adjudication, for its audit event: the adjudication
    page names it from there, whatever the project's settings have become since."""
    return {
        "rule": settings.agreement_rule,
        "k": settings.labels_per_item,
        "m": settings.majority_min,
        "votes": outcome.votes,
    }


def item_resolve_by_agreement(
    *, item: Item, settings: AnnotationSettings, task_type: str
) -> GoldLabel | None:
    """Decide a locked item that has its k answers: a gold label if they agree under the
    project's rule, else the adjudication queue. Caller holds the item's row lock."""
    annotations = list(
        Annotation.objects.filter(item=item, undone=False).order_by("submitted_at", "pk")
    )
    outcome = agreement_outcome(
        values=[a.value for a in annotations], settings=settings, task_type=task_type
    )
    method, votes = outcome.method, outcome.votes
    if method is None:
        Item.objects.filter(pk=item.pk).update(state=Item.State.DISPUTED)
        audit_record(
            actor=None,
            action="annotation.item.disputed",
            target=item,
            data={
                "labels": len(annotations),
                "distinct": outcome.distinct,
                **dispute_rule(settings, outcome),
            },
        )
        return None
    agreeing = [annotations[i] for i in outcome.agreeing]
    # `value` is the answer property over choice and free_text; the plugin sees fields only.
    gold = GoldLabel.objects.create(  # type: ignore[misc]
        project_id=item.project_id,
        item=item,
        value=agreeing[0].value,
        method=method,
        annotation_ids=[a.pk for a in agreeing],
    )
    Item.objects.filter(pk=item.pk).update(state=Item.State.RESOLVED)
    audit_record(
        actor=None,
        action="annotation.gold.agreement",
        target=gold,
        data={"item": item.pk, "method": method, "votes": votes, "labels": len(annotations)},
    )
    return gold


@transaction.atomic
def adjudication_lease_next(*, project: Project, adjudicator: User) -> Lease | None:
    """The adjudicator's current disputed item, or the next one nobody else holds.
    Items they labelled themselves are never given to them to judge. A lease left to run
    out is expired here, so its item is offered again (to them too)."""
    now = timezone.now()
    # Their own overdue leases go first: leasing an item again while its old lease is still
    # marked active would break the one-active-lease-per-user-and-item constraint.
    leases_expire(project=project, now=now, holder=adjudicator)
    current = (
        Lease.objects.filter(
            project=project,
            annotator=adjudicator,
            state=Lease.State.ACTIVE,
            kind=Lease.Kind.ADJUDICATE,
            expires_at__gt=now,
        )
        .select_related("item")
        .first()
    )
    if current is not None:
        return current
    held = Lease.objects.filter(
        item=OuterRef("pk"),
        kind=Lease.Kind.ADJUDICATE,
        state=Lease.State.ACTIVE,
        expires_at__gt=now,
    )
    mine = Lease.objects.filter(
        item=OuterRef("pk"), annotator=adjudicator, state=Lease.State.ACTIVE
    )
    own = Annotation.objects.filter(item=OuterRef("pk"), annotator=adjudicator)
    item = (
        Item.objects.filter(project=project, state=Item.State.DISPUTED)
        .exclude(Exists(held))
        .exclude(Exists(mine))
        .exclude(Exists(own))
        .order_by("id")
        .select_for_update(skip_locked=True, of=("self",))
        .first()
    )
    if item is None:
        return None
    # Someone else's lease on it ran out: closed now, so that resolving the item later does
    # not record it as submitted.
    leases_expire(project=project, now=now, item_id=item.pk)
    return Lease.objects.create(
        project=project,
        item=item,
        annotator=adjudicator,
        kind=Lease.Kind.ADJUDICATE,
        created_at=now,
        expires_at=now + ADJUDICATION_LEASE,
    )


@transaction.atomic
def adjudication_resolve(
    *,
    project: Project,
    item_id: int,
    adjudicator: User,
    value: dict | None,
    reason: str,
    take: int | None = None,
) -> GoldLabel:
    """Set the gold label of a disputed item, with the adjudicator's reason: `value`, or
    with `take` the answer at that position of the item's standing answers (oldest first)
    as it stands."""
    reason = reason.strip()
    if not reason:
        raise ValidationError({"reason": "write why this is the right label"})
    item = Item.objects.select_for_update().filter(pk=item_id, project=project).first()
    if item is None:
        raise ValidationError({"item": "no such item in this project"})
    if item.state != Item.State.DISPUTED:
        raise ValidationError(
            {
                "item": f"this item is {item.get_state_display().lower()}, "
                "not waiting for adjudication"
            }
        )
    if Annotation.objects.filter(item=item, annotator=adjudicator).exists():
        raise PermissionDenied("You labelled this item; another adjudicator must decide it.")
    schema = LabelSchema.objects.filter(project=project).order_by("-version").first()
    if schema is None:
        raise ValidationError({"schema": "this project has no label schema yet"})
    if take is not None:
        standing = list(Annotation.objects.filter(item=item, undone=False).order_by("pk"))
        if not 0 <= take < len(standing):
            raise ValidationError({"take": "this item has no such answer to take"})
        value = standing[take].value
    clean = validate_answer(schema.task_type, schema.config, item.payload, value or {})
    # `value` is the answer property over choice and free_text; the plugin sees fields only.
    gold = GoldLabel.objects.create(  # type: ignore[misc]
        project=project,
        item=item,
        value=clean,
        method=GoldLabel.Method.ADJUDICATED,
        decided_by=adjudicator,
        reason=reason,
        annotation_ids=list(
            Annotation.objects.filter(item=item, undone=False).values_list("pk", flat=True)
        ),
    )
    Item.objects.filter(pk=item.pk).update(state=Item.State.RESOLVED)
    Lease.objects.filter(item=item, kind=Lease.Kind.ADJUDICATE, state=Lease.State.ACTIVE).update(
        state=Lease.State.SUBMITTED
    )
    audit_record(
        actor=adjudicator,
        action="annotation.gold.adjudicate",
        target=gold,
        project_id=project.pk,
        data={
            "item": item.pk,
            "value_sha256": content_hash(clean),
            "reason_sha256": content_hash(reason),
            "took": take,
        },
    )
    return gold


@transaction.atomic
def adjudication_undo(*, project: Project, adjudicator: User) -> Item:
    """Take back the adjudicator's newest gold label in this project: the label goes, its
    item waits for adjudication again and is leased back to them. Refused once a snapshot
    has frozen the label (snapshots are final)."""
    gold = (
        GoldLabel.objects.select_for_update()
        .filter(project=project, decided_by=adjudicator, method=GoldLabel.Method.ADJUDICATED)
        .order_by("-created_at", "-pk")
        .first()
    )
    if gold is None:
        raise ValidationError({"undo": "you have no gold label here to take back"})
    item = Item.objects.select_for_update().get(pk=gold.item_id)
    frozen = (
        SnapshotMember.objects.filter(item=item, snapshot__created_at__gte=gold.created_at)
        .select_related("snapshot")
        .first()
    )
    if frozen is not None:
        raise ValidationError(
            {"undo": f"snapshot {frozen.snapshot} already holds this gold label; it stays"}
        )
    now = timezone.now()
    # Their lease on the next item is let go: the undone item becomes their current one.
    Lease.objects.filter(
        project=project,
        annotator=adjudicator,
        kind=Lease.Kind.ADJUDICATE,
        state=Lease.State.ACTIVE,
    ).update(state=Lease.State.EXPIRED)
    audit_record(
        actor=adjudicator,
        action="annotation.gold.adjudicate.undo",
        target=gold,
        project_id=project.pk,
        data={"item": item.pk, "value_sha256": content_hash(gold.value)},
    )
    gold.delete()
    Item.objects.filter(pk=item.pk).update(state=Item.State.DISPUTED)
    Lease.objects.create(
        project=project,
        item=item,
        annotator=adjudicator,
        kind=Lease.Kind.ADJUDICATE,
        created_at=now,
        expires_at=now + ADJUDICATION_LEASE,
    )
    item.state = Item.State.DISPUTED
    return item


@transaction.atomic
def label_model_apply(*, project: Project, applied_by: User, min_confidence: float = 0.9) -> int:
    """Resolve disputed classification or entity-matching items with Dawid-Skene, where its
    posterior for the winning answer is at least `min_confidence`. Returns how many."""
    schema = LabelSchema.objects.filter(project=project).order_by("-version").first()
    if schema is None or schema.task_type not in ("classification", "entity_matching"):
        raise ValidationError(
            {"task_type": "the label model works on classification and entity matching only"}
        )
    # Classification and matching answers are schema choices only: plain, no decryption.
    rows = [
        (pk, item_id, annotator_id, answer_join(choice, free_text))
        for pk, item_id, annotator_id, choice, free_text in Annotation.objects.filter(
            project=project, undone=False, item__is_gold=False
        ).values_list("pk", "item_id", "annotator_id", "choice", "free_text")
    ]
    if not rows:
        return 0
    items = {item_id: i for i, item_id in enumerate(dict.fromkeys(r[1] for r in rows))}
    annotators = {a: i for i, a in enumerate(dict.fromkeys(r[2] for r in rows))}
    codes: dict = {}
    values_by_code: dict[int, dict | None] = {}
    encoded = []
    for _, _, _, value in rows:
        code = codes.setdefault(agreement_key(schema.task_type, value), len(codes))
        values_by_code.setdefault(code, value)
        encoded.append(code)
    table = agreement.LabelTable(
        item=np.asarray([items[r[1]] for r in rows], dtype=np.int64),
        annotator=np.asarray([annotators[r[2]] for r in rows], dtype=np.int64),
        value=np.asarray(encoded, dtype=np.int64),
        n_categories=len(codes),
    )
    model = agreement.dawid_skene(table)
    disputed = Item.objects.select_for_update().filter(project=project, state=Item.State.DISPUTED)
    resolved = 0
    for item in disputed:
        index = items.get(item.pk)
        if index is None or model.confidence[index] < min_confidence:
            continue
        code = int(model.labels[index])
        value = values_by_code[code]
        key = agreement_key(schema.task_type, value)
        supporting = [
            r[0] for r in rows if r[1] == item.pk and agreement_key(schema.task_type, r[3]) == key
        ]
        # `value` is the answer property over choice and free_text; the plugin sees fields only.
        GoldLabel.objects.create(  # type: ignore[misc]
            project=project,
            item=item,
            value=value,
            method=GoldLabel.Method.LABEL_MODEL,
            decided_by=applied_by,
            annotation_ids=supporting,
            reason=f"Dawid-Skene posterior {model.confidence[index]:.3f}",
        )
        Item.objects.filter(pk=item.pk).update(state=Item.State.RESOLVED)
        resolved += 1
    audit_record(
        actor=applied_by,
        action="annotation.gold.label_model",
        target=project,
        data={"resolved": resolved, "min_confidence": min_confidence},
    )
    return resolved
