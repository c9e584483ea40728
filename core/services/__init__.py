"""Every write to users, projects, memberships and site settings; each is audited."""

import secrets
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models, transaction
from django.utils import timezone
from django.utils.text import slugify

from core import realtime, tasks
from core.models import ApiKey, Membership, Project, Role, RoleSet, SiteSettings, User
from core.selectors import api_key_hash
from core.services.audit import audit_record, content_hash


@transaction.atomic
def user_create(
    *,
    username: str,
    password: str,
    email: str = "",
    first_name: str = "",
    last_name: str = "",
    is_staff: bool = False,
    created_by: User | None,
    validate: bool = True,
) -> User:
    """Create an account. `validate=False` skips the password rules (demo and fixtures)."""
    if User.objects.filter(username__iexact=username).exists():
        raise ValidationError({"username": f"The username {username!r} is taken."})
    user = User(
        username=username,
        email=email,
        first_name=first_name,
        last_name=last_name,
        is_staff=is_staff,
        is_superuser=is_staff,
    )
    if validate:
        try:
            validate_password(password, user)
        except ValidationError as error:
            raise ValidationError({"password": error.messages}) from None
    user.set_password(password)
    user.full_clean(exclude=["password"])
    user.save()
    audit_record(
        actor=created_by,
        action="user.create",
        target=user,
        # People are named by id: the username is on the user row, which can be erased.
        data={"user": user.pk, "is_staff": is_staff},
    )
    return user


@transaction.atomic
def user_signup(*, username: str, password: str, email: str) -> User:
    """Self sign-up; refused unless an admin has opened it."""
    if not site_settings_get().signup_open:
        raise PermissionDenied("Sign-up is closed; ask an administrator for an account.")
    user = user_create(username=username, password=password, email=email, created_by=None)
    audit_record(actor=user, action="user.signup", target=user)
    return user


def _require_staff(user: User, doing: str) -> None:
    if not user.is_staff:
        raise PermissionDenied(f"Only portal administrators {doing}.")


# What an administrator may change on an account besides its password and active flag.
USER_PROFILE_FIELDS = ("email", "first_name", "last_name", "is_staff")


@transaction.atomic
def user_update(
    *, user: User, changed_by: User, is_active: bool | None = None, **changes: Any
) -> User:
    """Change an account's profile fields (`USER_PROFILE_FIELDS`) and, given `is_active`,
    activate or deactivate it (`user_set_active`). Staff only; nobody takes their own
    administrator flag away (the portal would be left with no one to give it back). The
    log names which fields changed, not the personal values."""
    _require_staff(changed_by, "change accounts")
    unknown = sorted(set(changes) - set(USER_PROFILE_FIELDS))
    if unknown:
        raise ValidationError({unknown[0]: "is not an account field an admin changes"})
    user = User.objects.select_for_update().get(pk=user.pk)
    if user.pk == changed_by.pk and changes.get("is_staff") is False:
        raise ValidationError({"is_staff": "You cannot take your own administrator flag away."})
    changed = [f for f, v in changes.items() if getattr(user, f) != v]
    for field in changed:
        setattr(user, field, changes[field])
    if "is_staff" in changed:
        user.is_superuser = user.is_staff  # as user_create sets them: one flag
        changed.append("is_superuser")
    user.full_clean(exclude=["password"])
    if changed:
        user.save(update_fields=changed)
        audit_record(
            actor=changed_by,
            action="user.update",
            target=user,
            data={"user": user.pk, "fields": sorted(changed), "is_staff": user.is_staff},
        )
    if is_active is not None:
        user = user_set_active(user=user, active=is_active, changed_by=changed_by)
    return user


@transaction.atomic
def user_set_active(*, user: User, active: bool, changed_by: User) -> User:
    """Activate or deactivate an account; deactivating revokes its API keys. Nobody
    deactivates their own account (they would lock themselves out mid-request)."""
    _require_staff(changed_by, "activate or deactivate accounts")
    if not active and user.pk == changed_by.pk:
        raise ValidationError({"is_active": "You cannot deactivate your own account."})
    user = User.objects.select_for_update().get(pk=user.pk)
    if user.is_active == active:
        return user
    user.is_active = active
    user.save(update_fields=["is_active"])
    audit_record(actor=changed_by, action="user.set_active", target=user, data={"active": active})
    if not active:
        api_keys_revoke_for_user(user=user, revoked_by=changed_by, reason="deactivated")
    return user


@transaction.atomic
def user_password_change(*, user: User, new_password: str) -> None:
    """Set a new password and revoke every API key of the account: whoever learnt the old
    password may have made keys with it."""
    validate_password(new_password, user)
    user.set_password(new_password)
    user.save(update_fields=["password"])
    audit_record(actor=user, action="user.password_change", target=user)
    api_keys_revoke_for_user(user=user, revoked_by=user, reason="password_change")


# A new key is "tp_" + 43 URL-safe characters (256 random bits); SHA-256 of a secret that
# strong needs no salt or slow hash. The first characters stay visible as its prefix.
API_KEY_PREFIX_LENGTH = 11
API_KEY_NAME_MAX = 100


@transaction.atomic
def api_key_create(
    *, user: User, name: str, expires_in_days: int | None = None
) -> tuple[ApiKey, str]:
    """Make an API key for `user`; returns it with its secret, which is never stored and
    cannot be shown again. Expires after PORTAL_API_KEY_DAYS unless asked for fewer or more
    days (at most PORTAL_API_KEY_MAX_DAYS)."""
    name = name.strip()
    if not name:
        raise ValidationError({"name": "Give the key a name (what or who uses it)."})
    if len(name) > API_KEY_NAME_MAX:
        raise ValidationError({"name": f"At most {API_KEY_NAME_MAX} characters."})
    days = settings.PORTAL_API_KEY_DAYS if expires_in_days is None else expires_in_days
    if not 1 <= days <= settings.PORTAL_API_KEY_MAX_DAYS:
        raise ValidationError(
            {"expires_in_days": f"Between 1 and {settings.PORTAL_API_KEY_MAX_DAYS} days."}
        )
    raw = "tp_" + secrets.token_urlsafe(32)
    key = ApiKey.objects.create(
        user=user,
        name=name,
        prefix=raw[:API_KEY_PREFIX_LENGTH],
        key_hash=api_key_hash(raw),
        expires_at=timezone.now() + timedelta(days=days),
    )
    audit_record(
        actor=user,
        action="api_key.create",
        target=key,
        data={"prefix": key.prefix, "name": name, "expires_at": key.expires_at.isoformat()},
    )
    return key, raw


@transaction.atomic
def api_key_revoke(*, key: ApiKey, revoked_by: User) -> ApiKey:
    """Revoke one key at once. Precondition: the caller checked that `revoked_by` may (the
    selectors only hand users their own keys). Revoking a revoked key changes nothing."""
    key = ApiKey.objects.select_for_update().get(pk=key.pk)
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        audit_record(
            actor=revoked_by, action="api_key.revoke", target=key, data={"prefix": key.prefix}
        )
    return key


@transaction.atomic
def api_keys_revoke_for_user(*, user: User, revoked_by: User | None, reason: str) -> int:
    """Revoke every live key of `user` (password changed, account deactivated); returns
    how many were revoked."""
    live = list(
        ApiKey.objects.select_for_update()
        .filter(user=user, revoked_at__isnull=True)
        .values_list("pk", "prefix")
    )
    if not live:
        return 0
    ApiKey.objects.filter(pk__in=[pk for pk, _ in live]).update(revoked_at=timezone.now())
    audit_record(
        actor=revoked_by,
        action="api_key.revoke_all",
        target=user,
        data={"reason": reason, "prefixes": [prefix for _, prefix in live]},
    )
    return len(live)


def api_key_touch(*, key_id: int) -> None:
    """Note that a key was used. At most once a minute per key, so that authenticating an
    API call stays a read; bookkeeping like last_login, not an audited change."""
    ApiKey.objects.filter(pk=key_id).filter(
        models.Q(last_used_at__isnull=True)
        | models.Q(last_used_at__lt=timezone.now() - timedelta(seconds=60))
    ).update(last_used_at=timezone.now())


def _unique_slug(name: str) -> str:
    base = slugify(name)[:70] or "project"
    slug, n = base, 1
    while Project.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


@transaction.atomic
def project_create(
    *,
    name: str,
    description: str = "",
    created_by: User,
    creator_roles: Iterable[str] = RoleSet.CREATOR,
) -> Project:
    """Create a project; its creator becomes its first admin and an engineer in it
    (`RoleSet.CREATOR`), so they can upload its data too. Only staff create projects.
    `creator_roles` (which must include admin) is for the demo, whose logins hold one role
    each."""
    creator_roles = tuple(creator_roles)
    if Role.ADMIN not in creator_roles:
        raise ValueError("a project's creator is its first admin")
    if not created_by.is_staff:
        raise PermissionDenied("Only portal administrators create projects.")
    name = name.strip()
    if not name:
        raise ValidationError({"name": "A project needs a name."})
    project = Project.objects.create(
        name=name, slug=_unique_slug(name), description=description, created_by=created_by
    )
    audit_record(actor=created_by, action="project.create", target=project, data={"name": name})
    for role in creator_roles:
        membership_add(project=project, user=created_by, role=role, added_by=created_by)
    return project


@transaction.atomic
def project_update(
    *,
    project: Project,
    updated_by: User,
    name: str | None = None,
    description: str | None = None,
    archived: bool | None = None,
) -> Project:
    project = Project.objects.select_for_update().get(pk=project.pk)
    changes: dict[str, dict[str, Any]] = {}
    for field, value in (("name", name), ("description", description), ("archived", archived)):
        if value is not None and getattr(project, field) != value:
            changes[field] = {"from": getattr(project, field), "to": value}
            setattr(project, field, value)
    if "name" in changes and not project.name.strip():
        raise ValidationError({"name": "A project needs a name."})
    if changes:
        project.save(update_fields=list(changes))
        if "description" in changes:  # free text: the log keeps hashes of it
            changes["description"] = {
                side: content_hash(text) for side, text in changes["description"].items()
            }
        audit_record(actor=updated_by, action="project.update", target=project, data=changes)
    return project


@transaction.atomic
def membership_add(*, project: Project, user: User, role: str, added_by: User) -> Membership:
    """Give `user` a role in `project`; adding a role they hold already changes nothing."""
    if role not in Role.values:
        raise ValidationError({"role": f"{role!r} is not a role ({', '.join(Role.values)})."})
    membership, created = Membership.objects.get_or_create(
        project=project, user=user, role=role, defaults={"added_by": added_by}
    )
    if created:
        audit_record(
            actor=added_by,
            action="membership.add",
            target=membership,
            data={"user": user.pk, "role": role},
        )
        text = f"You were added to {project.name} as {Role(role).label.lower()}."
        transaction.on_commit(lambda: tasks.notify_user_task.delay(user.pk, text, "membership"))
    return membership


@transaction.atomic
def membership_set_roles(
    *, project: Project, user: User, roles: Iterable[str], changed_by: User
) -> list[Membership]:
    """Make `user`'s roles in `project` exactly `roles`."""
    wanted = set(roles)
    for membership in Membership.objects.filter(project=project, user=user):
        if membership.role not in wanted:
            membership_remove(membership=membership, removed_by=changed_by)
    return [
        membership_add(project=project, user=user, role=r, added_by=changed_by)
        for r in sorted(wanted)
    ]


@transaction.atomic
def membership_role_change(*, membership: Membership, role: str, changed_by: User) -> Membership:
    """Turn one membership row into another role of the same person. If they hold `role`
    already, this row is removed and their existing row returned. The last admin of a
    project keeps the admin role."""
    if role not in Role.values:
        raise ValidationError({"role": f"{role!r} is not a role ({', '.join(Role.values)})."})
    membership = Membership.objects.select_for_update().get(pk=membership.pk)
    if membership.role == role:
        return membership
    held = Membership.objects.filter(
        project_id=membership.project_id, user_id=membership.user_id, role=role
    ).first()
    if held is not None:
        membership_remove(membership=membership, removed_by=changed_by)
        return held
    if membership.role == Role.ADMIN:
        _require_another_admin(membership)
    old_role = membership.role
    membership.role = role
    membership.save(update_fields=["role"])
    audit_record(
        actor=changed_by,
        action="membership.change",
        target=membership,
        data={"user": membership.user_id, "from": old_role, "to": role},
    )
    user_id, project_id = membership.user_id, membership.project_id
    transaction.on_commit(
        lambda: realtime.membership_changed(user_id=user_id, project_id=project_id)
    )
    return membership


def _require_another_admin(membership: Membership) -> None:
    """Caller holds `membership`'s row lock; locks the project's admin rows."""
    admins = Membership.objects.select_for_update().filter(
        project_id=membership.project_id, role=Role.ADMIN
    )
    if len(admins) <= 1:
        raise ValidationError({"role": "A project keeps at least one admin."})


@transaction.atomic
def membership_remove(*, membership: Membership, removed_by: User) -> None:
    """Remove one role. The last admin of a project cannot be removed."""
    membership = Membership.objects.select_for_update().get(pk=membership.pk)
    if membership.role == Role.ADMIN:
        _require_another_admin(membership)
    audit_record(
        actor=removed_by,
        action="membership.remove",
        target=membership,
        data={"user": membership.user_id, "role": membership.role},
    )
    membership.delete()
    user_id, project_id = membership.user_id, membership.project_id
    transaction.on_commit(
        lambda: realtime.membership_changed(user_id=user_id, project_id=project_id)
    )


def site_settings_get() -> SiteSettings:
    settings_row, _ = SiteSettings.objects.get_or_create(pk=1)
    return settings_row


@transaction.atomic
def site_settings_set_signup(*, open_: bool, changed_by: User) -> SiteSettings:
    if not changed_by.is_staff:
        raise PermissionDenied("Only portal administrators open or close sign-up.")
    SiteSettings.objects.get_or_create(pk=1)
    row = SiteSettings.objects.select_for_update().get(pk=1)
    row.signup_open = open_
    row.save(update_fields=["signup_open", "updated_at"])
    audit_record(actor=changed_by, action="site.signup", target=row, data={"open": open_})
    return row


def notification_push(*, user_id: int, text: str, kind: str = "info") -> None:
    """Show `text` in every open tab of the user (a toast; the home page also refreshes)."""
    realtime.push_to_user(
        user_id=user_id, event={"type": "notification", "kind": kind, "text": text}
    )
