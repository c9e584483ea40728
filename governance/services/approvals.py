"""Sign-offs and the promotion path candidate -> canary -> production, with rollback.

Promotion asks two things: evaluation's gate (its `model_version_promote` refuses a version
whose latest gate run failed or is missing) and this module's sign-offs (the project's
approval policy). Rollback restores the version that held production before the current one.
"""

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from evaluation import services as evaluation_services
from evaluation.selectors import gate_run_latest
from governance.models import ApprovalPolicy, SignOff, SignOffRole, StageChange, UseDeclaration
from governance.selectors import approval_status
from governance.services import audit_record, content_hash
from portal.models import Membership, Project, Role, User
from training.selectors import ModelVersion, model_version_in_stage
from training.services.registry import (
    model_version_lock,
    model_version_set_stage,
    model_versions_lock_in_stage,
)

# The project role a signer must hold for each kind of sign-off.
SIGNOFF_ROLE_NEEDS = {
    SignOffRole.ENGINEERING_LEAD: Role.ENGINEER,
    SignOffRole.COMPLIANCE: Role.COMPLIANCE,
}
# The one order versions move in; anything else is refused.
NEXT_STAGE = {
    ModelVersion.Stage.CANDIDATE: ModelVersion.Stage.CANARY,
    ModelVersion.Stage.CANARY: ModelVersion.Stage.PRODUCTION,
}
PROMOTERS = (Role.ENGINEER, Role.ADMIN)
POLICY_EDITORS = (Role.ADMIN,)
MAX_REQUIRED = 5


def _roles_of(user: User, project_id: int) -> set[str]:
    return set(
        Membership.objects.filter(user_id=user.pk, project_id=project_id).values_list(
            "role", flat=True
        )
    )


def _require(user: User, project_id: int, roles: tuple[str, ...], doing: str) -> None:
    if not _roles_of(user, project_id).intersection(roles):
        raise PermissionDenied(f"{doing} needs the {' or '.join(roles)} role in this project.")


@transaction.atomic
def approval_policy_set(*, actor: User, project: Project, required: dict) -> ApprovalPolicy:
    _require(actor, project.pk, POLICY_EDITORS, "Changing the approval policy")
    clean: dict[str, int] = {}
    for role, count in (required or {}).items():
        if role not in SignOffRole.values:
            raise ValidationError(
                {"required": f"{role!r} is not a sign-off role ({', '.join(SignOffRole.values)})"}
            )
        if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= MAX_REQUIRED:
            raise ValidationError(
                {"required": f"{role}: the count must be a whole number from 0 to {MAX_REQUIRED}"}
            )
        clean[role] = count
    policy, _ = ApprovalPolicy.objects.select_for_update().get_or_create(project=project)
    before = dict(policy.required)
    policy.required = clean
    policy.updated_by = actor
    policy.save()
    audit_record(
        actor=actor,
        action="governance.approval_policy.set",
        target=policy,
        project_id=project.pk,
        data={"before": before, "after": clean},
    )
    return policy


@transaction.atomic
def signoff_record(
    *, actor: User, version: ModelVersion, role: str, decision: str, comment: str
) -> SignOff:
    """Record `actor`'s decision on `version` as `role`. Preconditions checked here: the
    actor holds the project role the sign-off needs and has not signed this version."""
    if role not in SignOffRole.values:
        raise ValidationError({"role": f"{role!r} is not one of {', '.join(SignOffRole.values)}"})
    if decision not in SignOff.Decision.values:
        raise ValidationError({"decision": "Choose approve or reject."})
    _require(actor, version.project_id, (SIGNOFF_ROLE_NEEDS[SignOffRole(role)],), "This sign-off")
    comment = (comment or "").strip()
    if not comment:
        raise ValidationError({"comment": "A sign-off needs a comment saying what was checked."})
    version = model_version_lock(version_id=version.pk)
    if version.stage == ModelVersion.Stage.ARCHIVED:
        raise ValidationError(f"{version} is archived; there is nothing to sign off.")
    earlier = SignOff.objects.filter(model_version=version, user=actor).first()
    if earlier is not None:
        raise ValidationError(
            f"You already signed {version} ({earlier.get_decision_display().lower()} as "
            f"{earlier.get_role_display()}, {earlier.created_at:%Y-%m-%d %H:%M})."
        )
    signoff = SignOff.objects.create(
        project_id=version.project_id,
        model_version=version,
        role=role,
        decision=decision,
        user=actor,
        comment=comment,
    )
    audit_record(
        actor=actor,
        action="governance.signoff.record",
        target=signoff,
        data={
            "model_version": version.pk,
            "role": role,
            "decision": decision,
            "comment_sha256": content_hash(comment),
        },
    )
    return signoff


def _stage_set(*, actor, version, stage, kind, reason="", gate_run_id=None) -> ModelVersion:
    """Move a version through training's registry and keep the history rollback reads."""
    before = version.stage
    if kind == StageChange.Kind.PROMOTE:
        version = evaluation_services.model_version_promote(
            actor=actor, version=version, stage=stage
        )
    else:
        version = model_version_set_stage(actor=actor, version=version, stage=stage)
    StageChange.objects.create(
        project_id=version.project_id,
        model_version=version,
        from_stage=before,
        to_stage=stage,
        kind=kind,
        reason=reason,
        gate_run_id=gate_run_id,
        actor=actor,
    )
    return version


@transaction.atomic
def model_version_promote_approved(
    *, actor: User, version: ModelVersion, stage: str, reason: str = ""
) -> ModelVersion:
    """Promote one step (candidate -> canary -> production) once the latest gate run passed
    and the required sign-offs are in. Promoting to production archives the version that
    held it, which rollback can restore."""
    _require(actor, version.project_id, PROMOTERS, "Promoting a model version")
    version = model_version_lock(version_id=version.pk)
    expected = NEXT_STAGE.get(ModelVersion.Stage(version.stage))
    if stage != expected:
        path = " → ".join(ModelVersion.Stage.values[:3])
        raise ValidationError(
            f"{version} is {version.stage}; it can only move to {expected or 'nothing'} "
            f"(versions move {path})."
        )
    status = approval_status(version=version)
    if status.rejections:
        who = ", ".join(f"{s.get_role_display()} ({s.comment})" for s in status.rejections)
        raise ValidationError(f"{version} cannot go to {stage}: rejected by {who}.")
    if status.missing:
        raise ValidationError(
            f"{version} cannot go to {stage}: sign-offs missing: {', '.join(status.missing)}."
        )
    gate = gate_run_latest(model_version_id=version.pk)
    previous = []
    if stage == ModelVersion.Stage.PRODUCTION:
        previous = model_versions_lock_in_stage(
            project_id=version.project_id,
            stage=ModelVersion.Stage.PRODUCTION,
            exclude_id=version.pk,
        )
    version = _stage_set(
        actor=actor,
        version=version,
        stage=stage,
        kind=StageChange.Kind.PROMOTE,
        reason=reason,
        gate_run_id=gate.pk if gate else None,
    )
    for old in previous:
        _stage_set(
            actor=actor,
            version=old,
            stage=ModelVersion.Stage.ARCHIVED,
            kind=StageChange.Kind.ARCHIVE,
            reason=f"replaced in production by {version}",
        )
    audit_record(
        actor=actor,
        action="governance.version.promote",
        target=version,
        data={
            "stage": stage,
            "gate_run": gate.pk if gate else None,
            "signoffs": [s.pk for s in status.signoffs],
            "archived": [v.pk for v in previous],
            "reason_sha256": content_hash(reason),
        },
    )
    return version


def rollback_target(*, project: Project) -> tuple[ModelVersion | None, ModelVersion | None]:
    """(the version in production now, the one that held production before it)."""
    current = model_version_in_stage(project=project, stage=ModelVersion.Stage.PRODUCTION)
    if current is None:
        return None, None
    earlier = (
        StageChange.objects.filter(project=project, to_stage=ModelVersion.Stage.PRODUCTION)
        .exclude(model_version=current)
        .select_related("model_version")
        .order_by("-created_at", "-id")
    )
    for change in earlier:
        if change.model_version.stage == ModelVersion.Stage.ARCHIVED:
            return current, change.model_version
    return current, None


@transaction.atomic
def model_version_rollback(*, actor: User, project: Project, reason: str) -> ModelVersion:
    """One action: archive the production version and restore the previous one. The
    restored version passed its gate and sign-offs when it was promoted."""
    _require(actor, project.pk, PROMOTERS, "Rolling back production")
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Say why production is being rolled back."})
    model_versions_lock_in_stage(project_id=project.pk, stage=ModelVersion.Stage.PRODUCTION)
    current, previous = rollback_target(project=project)
    if current is None:
        raise ValidationError("No version is in production; there is nothing to roll back.")
    if previous is None:
        raise ValidationError(f"{current} is the first production version; none to go back to.")
    _stage_set(
        actor=actor,
        version=current,
        stage=ModelVersion.Stage.ARCHIVED,
        kind=StageChange.Kind.ROLLBACK,
        reason=reason,
    )
    restored = _stage_set(
        actor=actor,
        version=previous,
        stage=ModelVersion.Stage.PRODUCTION,
        kind=StageChange.Kind.ROLLBACK,
        reason=reason,
    )
    audit_record(
        actor=actor,
        action="governance.version.rollback",
        target=restored,
        data={"from": current.pk, "to": restored.pk, "reason_sha256": content_hash(reason)},
    )
    return restored


DECLARERS = (Role.ENGINEER, Role.ADMIN)


@transaction.atomic
def use_declaration_set(
    *,
    actor: User,
    version: ModelVersion,
    intended_use: str,
    license: str,
    commercial_use: bool,
    limitations: str = "",
    out_of_scope: str = "",
) -> UseDeclaration:
    """Declare what a version is for and under which license it ships; the dossier's
    intended-use section and license check read it."""
    _require(actor, version.project_id, DECLARERS, "Declaring a version's intended use")
    errors = {}
    if not (intended_use or "").strip():
        errors["intended_use"] = "Describe the intended use."
    if not (license or "").strip():
        errors["license"] = 'Give an SPDX license id, or "proprietary".'
    if errors:
        raise ValidationError(errors)
    declaration, created = UseDeclaration.objects.select_for_update().update_or_create(
        model_version=version,
        defaults={
            "project_id": version.project_id,
            "intended_use": intended_use.strip(),
            "limitations": (limitations or "").strip(),
            "out_of_scope": (out_of_scope or "").strip(),
            "license": license.strip(),
            "commercial_use": bool(commercial_use),
            "updated_by": actor,
        },
    )
    audit_record(
        actor=actor,
        action="governance.use_declaration.set",
        target=declaration,
        data={
            "model_version": version.pk,
            "license": declaration.license,
            "commercial_use": declaration.commercial_use,
            "created": created,
        },
    )
    return declaration
