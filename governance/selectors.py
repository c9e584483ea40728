"""Reads for the compliance screens and the API. Every read is scoped to the projects where
the caller holds a role that may see it, so a guessed id reaches nothing."""

import datetime
from dataclasses import dataclass, field

from django.db.models import QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_date
from dossier_verify.keyset import CURRENT, RETIRED, TrustedKey

from core import keys
from core.models import AuditEvent, Membership, Project, RoleSet, User
from core.signing import key_fingerprint, public_key_from_pem
from evaluation.selectors import GateRun, gate_run_latest
from governance.models import (
    ApprovalPolicy,
    Dossier,
    DossierDownload,
    PublishedKey,
    SignOff,
    SignOffRole,
    StageChange,
    UseDeclaration,
)
from training import selectors as training_selectors
from training.selectors import ModelVersion

# Filters the audit API accepts; anything else is refused rather than passed to the ORM.
AUDIT_FILTER_FIELDS = ("action", "actor_username", "target_type", "target_id")
# The audit screen's filters (project, actor, action, time).
AUDIT_SCREEN_FILTERS = ("project", "actor", "action", "since", "until")


def audit_event_list_for_project(
    *, project: Project, filters: dict[str, str] | None = None
) -> QuerySet[AuditEvent]:
    events = AuditEvent.objects.filter(project=project)
    for name, value in (filters or {}).items():
        if name not in AUDIT_FILTER_FIELDS:
            raise ValueError(f"cannot filter audit events by {name!r}")
        events = events.filter(**{name: value})
    return events.order_by("-seq")


def project_ids_for_user(*, user: User, roles: tuple[str, ...]) -> list[int]:
    return sorted(
        set(
            Membership.objects.filter(user_id=user.pk, role__in=roles).values_list(
                "project_id", flat=True
            )
        )
    )


def audit_projects_for_user(*, user: User) -> QuerySet[Project]:
    ids = project_ids_for_user(user=user, roles=RoleSet.AUDITORS)
    return Project.objects.filter(pk__in=ids).order_by("name")


def _day(value: str, name: str) -> datetime.date:
    try:
        day = parse_date(value)
    except ValueError:
        day = None
    if day is None:
        raise ValueError(f"{name}: {value!r} is not a date (use YYYY-MM-DD)")
    return day


def audit_event_list_for_user(*, user: User, filters: dict[str, str]) -> QuerySet[AuditEvent]:
    """Events of the projects where `user` is compliance or admin, newest first. Raises
    ValueError naming a filter that cannot be applied."""
    allowed = project_ids_for_user(user=user, roles=RoleSet.AUDITORS)
    events = AuditEvent.objects.filter(project_id__in=allowed)
    for name, value in filters.items():
        if name not in AUDIT_SCREEN_FILTERS:
            raise ValueError(f"{name}: unknown filter; use {', '.join(AUDIT_SCREEN_FILTERS)}")
        if not value:
            continue
        if name == "project":
            if not value.isdigit() or int(value) not in allowed:
                raise ValueError(f"project: {value!r} is not a project whose audit log you read")
            events = events.filter(project_id=int(value))
        elif name == "actor":
            events = events.filter(actor_username=value)
        elif name == "action":
            events = events.filter(action__startswith=value)
        elif name == "since":
            events = events.filter(created_at__date__gte=_day(value, name))
        elif name == "until":
            events = events.filter(created_at__date__lte=_day(value, name))
    return events.select_related("project").order_by("-seq")


def approval_policy_for(project: Project) -> ApprovalPolicy:
    """The project's policy, or the default (one engineering lead, one compliance officer)
    unsaved when none was set."""
    return ApprovalPolicy.objects.filter(project=project).first() or ApprovalPolicy(project=project)


@dataclass
class ApprovalStatus:
    required: dict[str, int]
    approvals: dict[str, int]
    rejections: list[SignOff] = field(default_factory=list)
    signoffs: list[SignOff] = field(default_factory=list)

    @property
    def missing(self) -> list[str]:
        return [
            f"{need - self.approvals.get(role, 0)} × {SignOffRole(role).label}"
            for role, need in sorted(self.required.items())
            if self.approvals.get(role, 0) < need
        ]

    @property
    def satisfied(self) -> bool:
        return not self.missing and not self.rejections


def approval_status(*, version: ModelVersion) -> ApprovalStatus:
    policy = approval_policy_for(version.project)
    signoffs = list(SignOff.objects.filter(model_version=version).select_related("user"))
    approvals: dict[str, int] = {}
    for s in signoffs:
        if s.decision == SignOff.Decision.APPROVE:
            approvals[s.role] = approvals.get(s.role, 0) + 1
    return ApprovalStatus(
        required={k: v for k, v in policy.required.items() if v},
        approvals=approvals,
        rejections=[s for s in signoffs if s.decision == SignOff.Decision.REJECT],
        signoffs=signoffs,
    )


@dataclass
class VersionRow:
    version: ModelVersion
    gate: GateRun | None
    approvals: ApprovalStatus
    dossier: Dossier | None


def version_rows_for_user(*, user: User, query: str = "") -> list[VersionRow]:
    """Model versions of the caller's governance projects with their gate, approvals and
    latest dossier, for the compliance home page."""
    allowed = project_ids_for_user(user=user, roles=RoleSet.OVERSIGHT)
    versions = training_selectors.model_version_list_for_projects(
        project_ids=allowed, query=query, limit=200
    )
    return [_row(v) for v in versions]


# How many versions the home page lists per project, newest first; the compliance screens
# list them all.
HOME_VERSIONS_PER_PROJECT = 10


def signoff_rows_for_user(*, user: User) -> dict[int, list[VersionRow]]:
    """Per project where `user` is a compliance officer: its newest model versions that are
    not archived, with their gate and sign-off state, for the home page."""
    allowed = project_ids_for_user(user=user, roles=RoleSet.COMPLIANCE)
    rows: dict[int, list[VersionRow]] = {pk: [] for pk in allowed}
    for project_id in allowed:
        versions = training_selectors.model_version_list_live(
            project_id=project_id, limit=HOME_VERSIONS_PER_PROJECT
        )
        rows[project_id] = [_row(v) for v in versions]
    return rows


def _row(version: ModelVersion) -> VersionRow:
    gate = gate_run_latest(model_version_id=version.pk)
    dossier = Dossier.objects.filter(model_version=version).order_by("-created_at", "-id").first()
    return VersionRow(version, gate, approval_status(version=version), dossier)


def version_get_for_user(*, user: User, version_id: int) -> VersionRow | None:
    allowed = project_ids_for_user(user=user, roles=RoleSet.OVERSIGHT)
    version = training_selectors.model_version_get_in_projects(
        version_id=version_id, project_ids=allowed
    )
    return _row(version) if version else None


def stage_changes_for_version(*, version: ModelVersion) -> QuerySet[StageChange]:
    return StageChange.objects.filter(model_version=version).select_related("actor")


def use_declaration_for(*, version: ModelVersion) -> UseDeclaration | None:
    return UseDeclaration.objects.filter(model_version=version).first()


def dossier_get_for_user(*, user: User, dossier_id: int) -> Dossier | None:
    allowed = project_ids_for_user(user=user, roles=RoleSet.OVERSIGHT)
    return (
        Dossier.objects.filter(pk=dossier_id, project_id__in=allowed)
        .select_related("model_version")
        .first()
    )


def dossier_get(*, project: Project, dossier_id: int) -> Dossier | None:
    """A dossier build of `project`, for callers whose access to it is already checked."""
    return Dossier.objects.filter(project=project, pk=dossier_id).first()


def dossier_list_for_version(*, version: ModelVersion) -> QuerySet[Dossier]:
    return Dossier.objects.filter(model_version=version).order_by("-created_at", "-id")


def download_list_for_user(*, user: User) -> QuerySet[DossierDownload]:
    allowed = project_ids_for_user(user=user, roles=RoleSet.AUDITORS)
    return (
        DossierDownload.objects.filter(project_id__in=allowed)
        .select_related("user", "model_version", "project")
        .order_by("-created_at", "-id")
    )


def published_key_list() -> list[TrustedKey]:
    """Every public key this portal signs or has signed with, per purpose the current one
    first: public by design (an auditor without an account verifies with them), so not
    scoped to a user. A recorded key that is no longer the configured one stopped signing
    by now at the latest, so it is published as retired until now."""
    now = timezone.now()
    configured = {
        PublishedKey.Purpose.DOSSIER: keys.signing_key().public_key(),
        PublishedKey.Purpose.AUDIT_CHECKPOINT: keys.audit_checkpoint_key().public_key(),
    }
    published = []
    for purpose, current in configured.items():
        current_id = key_fingerprint(current)
        rows = list(PublishedKey.objects.filter(purpose=purpose).order_by("-valid_from", "-id"))
        recorded = next((row for row in rows if row.key_id == current_id), None)
        published.append(
            TrustedKey.of(
                current,
                purpose=purpose.value,
                status=CURRENT,
                valid_from=recorded.valid_from if recorded else None,
            )
        )
        published.extend(
            TrustedKey(
                key=public_key_from_pem(row.public_key_pem.encode(), where=str(row)),
                key_id=row.key_id,
                purpose=purpose.value,
                status=RETIRED,
                valid_from=row.valid_from,
                valid_until=row.valid_until or now,
            )
            for row in rows
            if row.key_id != current_id
        )
    return published
