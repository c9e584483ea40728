"""Lease expiry: an overdue lease gives its item back.

Each queue's own path expires the leases in its way (the caller's own, and those on the item
it takes), and the beat sweep (portal.housekeeping) expires the rest, so that a lease left
open never blocks its holder or its item for longer than one sweep. One audit event per
expiring pass lists the leases it expired."""

from collections import Counter
from datetime import datetime

from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from annotation.models import Item, Lease
from core.models import Project, User
from core.services.audit import audit_record


def _expire(overdue: QuerySet[Lease], *, project: Project) -> list[tuple[int, int, str]]:
    """Mark `overdue` (a locking queryset of one project's leases) expired and give label
    slots back; returns (lease, item, kind) for each. Caller holds a transaction."""
    expired = list(overdue.values_list("pk", "item_id", "kind"))
    if not expired:
        return []
    Lease.objects.filter(pk__in=[pk for pk, _, _ in expired]).update(state=Lease.State.EXPIRED)
    label_items = [item_id for _, item_id, kind in expired if kind == Lease.Kind.LABEL]
    for item_id in sorted(label_items):  # sorted: a fixed lock order between expirers
        Item.objects.filter(pk=item_id, is_gold=False, assigned_count__gt=0).update(
            assigned_count=F("assigned_count") - 1
        )
    kinds = Counter(kind for _, _, kind in expired)
    audit_record(
        actor=None,
        action="annotation.lease.expire",
        target=project,
        project_id=project.pk,
        data={
            "leases": sorted(pk for pk, _, _ in expired),
            "items": sorted({item_id for _, item_id, _ in expired}),
            **{kind: kinds[kind] for kind in Lease.Kind.values},
        },
    )
    return expired


def leases_expire(
    *,
    project: Project,
    now: datetime | None = None,
    holder: User | None = None,
    item_id: int | None = None,
) -> int:
    """Expire overdue leases of a project (of every kind), or only those `holder` holds or
    those on `item_id`, and give their slots back; returns how many.

    Runs inside the caller's transaction; cheap when nothing is overdue (partial index).
    A holder's own leases are waited for: they must be gone before the holder leases again
    (one active lease per user and item). Others that a concurrent expirer has locked are
    left to it."""
    now = now or timezone.now()
    overdue = Lease.objects.filter(project=project, state=Lease.State.ACTIVE, expires_at__lte=now)
    if item_id is not None:
        overdue = overdue.filter(item_id=item_id)
    if holder is not None:
        overdue = overdue.filter(annotator=holder).order_by("pk").select_for_update()
    else:
        overdue = overdue.select_for_update(skip_locked=True)
    return len(_expire(overdue, project=project))


def leases_expire_all(*, now: datetime | None = None) -> dict[str, int]:
    """Expire every project's overdue leases, one transaction per project (the beat
    sweep); returns how many of each kind."""
    now = now or timezone.now()
    overdue = Lease.objects.filter(state=Lease.State.ACTIVE, expires_at__lte=now)
    counts: Counter[str] = Counter()
    for project_id in overdue.order_by().values_list("project_id", flat=True).distinct():
        with transaction.atomic():
            project = Project.objects.get(pk=project_id)
            locked = overdue.filter(project=project).select_for_update(skip_locked=True)
            counts.update(kind for _, _, kind in _expire(locked, project=project))
    return {kind: counts[kind] for kind in Lease.Kind.values}
