"""Sign-offs, the approval policy that says how many a promotion needs, and use
declarations. Promotion and rollback themselves are governance.services.stages."""

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from core.models import Membership, Project, Role, RoleSet, User
from core.services.audit import audit_record, content_hash
from governance.models import ApprovalPolicy, SignOff, SignOffRole, UseDeclaration
from training.selectors import ModelVersion
from training.services.registry import model_version_lock

# The project role a signer must hold for each kind of sign-off.
SIGNOFF_ROLE_NEEDS = {
    SignOffRole.ENGINEERING_LEAD: Role.ENGINEER,
    SignOffRole.COMPLIANCE: Role.COMPLIANCE,
}
MAX_REQUIRED = 5


def _roles_of(user: User, project_id: int) -> set[str]:
    return set(
        Membership.objects.filter(user_id=user.pk, project_id=project_id).values_list(
            "role", flat=True
        )
    )


def require_role(user: User, project_id: int, roles: tuple[str, ...], doing: str) -> None:
    if not _roles_of(user, project_id).intersection(roles):
        raise PermissionDenied(f"{doing} needs the {' or '.join(roles)} role in this project.")


@transaction.atomic
def approval_policy_set(*, actor: User, project: Project, required: dict) -> ApprovalPolicy:
    require_role(actor, project.pk, RoleSet.ADMINS, "Changing the approval policy")
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
    require_role(
        actor, version.project_id, (SIGNOFF_ROLE_NEEDS[SignOffRole(role)],), "This sign-off"
    )
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
    require_role(actor, version.project_id, RoleSet.MANAGERS, "Declaring a version's intended use")
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
