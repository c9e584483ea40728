from django.db.models import QuerySet

from governance.models import AuditEvent
from portal.models import Project

# Filters the audit API accepts; anything else is refused rather than passed to the ORM.
AUDIT_FILTER_FIELDS = ("action", "actor_username", "target_type", "target_id")


def audit_event_list_for_project(
    *, project: Project, filters: dict[str, str] | None = None
) -> QuerySet[AuditEvent]:
    events = AuditEvent.objects.filter(project=project)
    for name, value in (filters or {}).items():
        if name not in AUDIT_FILTER_FIELDS:
            raise ValueError(f"cannot filter audit events by {name!r}")
        events = events.filter(**{name: value})
    return events.order_by("-seq")
