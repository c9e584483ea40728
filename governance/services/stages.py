"""Stage changes: the one way a model version's stage moves after training created it a
candidate.

Versions move candidate -> canary -> production. A promotion needs the version's latest
regression gate run to have passed and the project's required sign-offs; promoting to
production archives the version that held it. A rollback restores the version that held
production before the current one (it passed its gate and sign-offs when it was promoted)
and archives the current one. Each change takes its locks once, writes its StageChange rows
(the history rollback and the dossier read) and exactly one audit event.
"""

from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q

from core.models import Project, RoleSet, User
from core.services.audit import audit_record, content_hash
from evaluation.selectors import gate_refusal, gate_run_latest
from governance.models import StageChange
from governance.selectors import approval_status
from governance.services.approvals import require_role
from training.models import ModelVersion  # the one place a version's stage is written
from training.selectors import model_version_in_stage

Stage = ModelVersion.Stage
# The one order versions move in; anything else is refused.
NEXT_STAGE = {Stage.CANDIDATE: Stage.CANARY, Stage.CANARY: Stage.PRODUCTION}


@dataclass
class _Move:
    """One version's step: its StageChange row is written once the audit event is in."""

    version: ModelVersion
    to_stage: str
    kind: str
    reason: str = ""
    gate_run_id: int | None = None
    from_stage: str = field(init=False)

    def __post_init__(self) -> None:
        self.from_stage = self.version.stage


def rollback_target(*, project: Project) -> tuple[ModelVersion | None, ModelVersion | None]:
    """(the version in production now, the one that held production before it)."""
    current = model_version_in_stage(project=project, stage=Stage.PRODUCTION)
    if current is None:
        return None, None
    earlier = (
        StageChange.objects.filter(project=project, to_stage=Stage.PRODUCTION)
        .exclude(model_version=current)
        .select_related("model_version")
        .order_by("-created_at", "-id")
    )
    for change in earlier:
        if change.model_version.stage == Stage.ARCHIVED:
            return current, change.model_version
    return current, None


@transaction.atomic
def model_version_stage_change(
    *, actor: User, version: ModelVersion, to_stage: str, reason: str = ""
) -> ModelVersion:
    """Move `version` to `to_stage` and return it, moved. The only transitions:

    - candidate -> canary, canary -> production: a promotion (gate passed, sign-offs in);
      into production it archives the version that held it;
    - archived -> production: a rollback, allowed only for the version that held production
      just before the current one, which is archived; it needs a reason.

    The actor needs the engineer or admin role. A refusal raises ValidationError (or
    PermissionDenied) and changes nothing."""
    rolling_back = to_stage == Stage.PRODUCTION and version.stage == Stage.ARCHIVED
    doing = "Rolling back production" if rolling_back else "Promoting a model version"
    require_role(actor, version.project_id, RoleSet.MANAGERS, doing)
    reason = (reason or "").strip()
    # Stage changes of one project take turns on the project's row: who may enter production
    # depends on which version holds it now, and locking version rows alone would miss a
    # version another transaction promoted after this statement's snapshot was taken.
    # NO KEY: rows that merely reference the project are still inserted meanwhile.
    list(Project.objects.select_for_update(no_key=True).filter(pk=version.project_id))
    locked = ModelVersion.objects.select_for_update().filter(project_id=version.project_id)
    rows = list(locked.filter(Q(pk=version.pk) | Q(stage=Stage.PRODUCTION)).order_by("pk"))
    version = next(v for v in rows if v.pk == version.pk)
    holders = [v for v in rows if v.pk != version.pk and v.stage == Stage.PRODUCTION]

    if version.stage == Stage.ARCHIVED and to_stage == Stage.PRODUCTION:
        moves, action, data = _rollback(version, holders, reason)
    else:
        moves, action, data = _promotion(version, to_stage, holders, reason)

    for move in moves:
        move.version.stage = move.to_stage
    ModelVersion.objects.bulk_update([m.version for m in moves], ["stage"])
    event = audit_record(actor=actor, action=action, target=version, data=data)
    StageChange.objects.bulk_create(
        StageChange(
            project_id=m.version.project_id,
            model_version=m.version,
            from_stage=m.from_stage,
            to_stage=m.to_stage,
            kind=m.kind,
            reason=m.reason,
            gate_run_id=m.gate_run_id,
            actor=actor,
            audit_seq=event.seq,
        )
        for m in moves
    )
    return version


def _promotion(
    version: ModelVersion, to_stage: str, holders: list[ModelVersion], reason: str
) -> tuple[list[_Move], str, dict[str, Any]]:
    """Caller holds the project's lock and the rows of `version` and `holders` (the
    versions in production)."""
    expected = NEXT_STAGE.get(Stage(version.stage))
    if to_stage != expected:
        path = " → ".join(Stage.values[:3])
        raise ValidationError(
            f"{version} is {version.stage}; it can only move to {expected or 'nothing'} "
            f"(versions move {path})."
        )
    status = approval_status(version=version)
    if status.rejections:
        who = ", ".join(f"{s.get_role_display()} ({s.comment})" for s in status.rejections)
        raise ValidationError(f"{version} cannot go to {to_stage}: rejected by {who}.")
    if status.missing:
        raise ValidationError(
            f"{version} cannot go to {to_stage}: sign-offs missing: {', '.join(status.missing)}."
        )
    gate = gate_run_latest(model_version_id=version.pk)
    refusal = gate_refusal(version=version, stage=to_stage, run=gate)
    if refusal:
        raise ValidationError(refusal)
    archived = holders if to_stage == Stage.PRODUCTION else []
    moves = [
        _Move(
            version=version,
            to_stage=to_stage,
            kind=StageChange.Kind.PROMOTE,
            reason=reason,
            gate_run_id=gate.pk if gate else None,
        )
    ] + [
        _Move(
            version=old,
            to_stage=Stage.ARCHIVED,
            kind=StageChange.Kind.ARCHIVE,
            reason=f"replaced in production by {version}",
        )
        for old in archived
    ]
    data = {
        "stage": to_stage,
        "gate_run": gate.pk if gate else None,
        "signoffs": [s.pk for s in status.signoffs],
        "archived": [v.pk for v in archived],
        "reason_sha256": content_hash(reason),
    }
    return moves, "governance.version.promote", data


def _rollback(
    version: ModelVersion, holders: list[ModelVersion], reason: str
) -> tuple[list[_Move], str, dict[str, Any]]:
    """Caller holds the project's lock and the rows of `version` (archived) and `holders`."""
    if not reason:
        raise ValidationError({"reason": "Say why production is being rolled back."})
    current, previous = rollback_target(project=version.project)
    if current is None:
        raise ValidationError("No version is in production; there is nothing to roll back.")
    if previous is None or previous.pk != version.pk:
        raise ValidationError(
            f"{version} cannot go back to production: only the version that held it before "
            f"{current} can be restored."
        )
    kind = StageChange.Kind.ROLLBACK
    moves = [_Move(version=h, to_stage=Stage.ARCHIVED, kind=kind, reason=reason) for h in holders]
    moves.append(_Move(version=version, to_stage=Stage.PRODUCTION, kind=kind, reason=reason))
    data = {"from": current.pk, "to": version.pk, "reason_sha256": content_hash(reason)}
    return moves, "governance.version.rollback", data


def model_version_rollback(*, actor: User, project: Project, reason: str) -> ModelVersion:
    """Restore the version that held `project`'s production before the current one, which
    is archived: names that version and hands over to model_version_stage_change, which
    checks it again under its locks."""
    require_role(actor, project.pk, RoleSet.MANAGERS, "Rolling back production")
    current, previous = rollback_target(project=project)
    if current is None:
        raise ValidationError("No version is in production; there is nothing to roll back.")
    if previous is None:
        raise ValidationError(f"{current} is the first production version; none to go back to.")
    return model_version_stage_change(
        actor=actor, version=previous, to_stage=Stage.PRODUCTION, reason=reason
    )


@transaction.atomic
def model_version_canary_withdraw(
    *, version: ModelVersion, reason: str, figures: dict[str, Any] | None = None
) -> ModelVersion:
    """Move a canary back to candidate because a deployment's rollback rules took it off
    traffic. The portal acts (no actor): serving calls this through serving.hooks, under
    the same transaction as its rollback decision. A version no longer in canary (another
    deployment withdrew it first, or an engineer moved it) is left as it is."""
    list(Project.objects.select_for_update(no_key=True).filter(pk=version.project_id))
    version = ModelVersion.objects.select_for_update().get(pk=version.pk)
    if version.stage != Stage.CANARY:
        return version
    from_stage = version.stage
    version.stage = Stage.CANDIDATE
    version.save(update_fields=["stage"])
    event = audit_record(
        actor=None,
        action="governance.version.withdraw",
        target=version,
        data={"stage": Stage.CANDIDATE, "reason": reason, "figures": figures or {}},
    )
    StageChange.objects.create(
        project_id=version.project_id,
        model_version=version,
        from_stage=from_stage,
        to_stage=Stage.CANDIDATE,
        kind=StageChange.Kind.WITHDRAW,
        reason=reason,
        actor=None,
        audit_seq=event.seq,
    )
    return version
