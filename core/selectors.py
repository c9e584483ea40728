"""Reads shared by pages and the API. Every project-scoped read goes through
`project_access_get`, so a guessed id from another project reaches nothing."""

import hashlib
import socket
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.db.models import Q, QuerySet
from django.http import Http404
from django.utils import timezone

from core.db import fetch_one, on_postgresql
from core.models import ApiKey, Membership, Project, Role, RoleSet, User


@dataclass(frozen=True)
class ProjectAccess:
    """A project as one user may reach it, with the roles they hold there."""

    project: Project
    roles: frozenset[str]

    def has(self, *roles: str) -> bool:
        return bool(self.roles.intersection(roles))

    def require(self, *roles: str) -> "ProjectAccess":
        """Raise PermissionDenied (403) unless the user holds one of `roles`."""
        if not self.has(*roles):
            wanted = " or ".join(roles)
            raise PermissionDenied(f"This needs the {wanted} role in {self.project.name}.")
        return self


def project_access_get(*, project_id: int | str, user: User | AnonymousUser) -> ProjectAccess:
    """The caller's access to a project: 404 if they are not a member (so a stranger
    cannot tell a project exists), else their roles."""
    if not user.is_authenticated:
        raise Http404("No such project.")
    try:
        pk = int(project_id)
    except (TypeError, ValueError):
        raise Http404("No such project.") from None
    memberships = list(
        Membership.objects.filter(project_id=pk, user_id=user.pk).select_related("project")
    )
    if not memberships:
        raise Http404("No such project.")
    return ProjectAccess(
        project=memberships[0].project, roles=frozenset(m.role for m in memberships)
    )


_KEY_ACCESS_SQL = """
SELECT k.id, k.created_at, k.last_used_at, {user_columns},
       (SELECT array_agg(m.role) FROM portal_membership m
        WHERE m.user_id = u.id AND m.project_id = %(project)s),
       {project_columns}
FROM portal_apikey k
JOIN portal_user u ON u.id = k.user_id
LEFT JOIN portal_project p ON p.id = %(project)s
WHERE k.key_hash = %(key_hash)s AND k.revoked_at IS NULL AND k.expires_at > %(now)s
""".format(  # noqa: S608 - column names only; values are parameters
    user_columns=", ".join(f'u."{f.column}"' for f in User._meta.concrete_fields),
    project_columns=", ".join(f'p."{f.column}"' for f in Project._meta.concrete_fields),
)


@dataclass(frozen=True)
class TokenAccess:
    user: User
    key_id: int
    key_created: datetime
    key_last_used: datetime | None
    access: ProjectAccess | None  # None: not a member of the project asked about


def token_access_get(*, key: str, project_id: int | None) -> TokenAccess | None:
    """The owner of a live (unexpired, unrevoked) API key and their access to one project,
    in one query (the key's user, then what project_access_get would answer; no project
    for project_id None). None: no such live key.

    For endpoints called many times a minute per user, where two ORM queries, compiled
    afresh each time, cost more than the work of the request."""
    now = timezone.now()
    if project_id is None or not on_postgresql():
        return _token_access_by_orm(key=key, project_id=project_id, now=now)
    row = fetch_one(
        _KEY_ACCESS_SQL,
        {"key_hash": api_key_hash(key), "project": project_id, "now": now},
    )
    if row is None:
        return None
    user_fields = [f.attname for f in User._meta.concrete_fields]
    project_fields = [f.attname for f in Project._meta.concrete_fields]
    n = len(user_fields)
    user = User.from_db(connection.alias, user_fields, row[3 : 3 + n])
    roles, project_row = row[3 + n], row[4 + n :]
    access = None
    if roles and project_row[0] is not None:
        project = Project.from_db(connection.alias, project_fields, project_row)
        access = ProjectAccess(project=project, roles=frozenset(roles))
    return TokenAccess(
        user=user, key_id=row[0], key_created=row[1], key_last_used=row[2], access=access
    )


def _token_access_by_orm(*, key: str, project_id: int | None, now: datetime) -> TokenAccess | None:
    """token_access_get without a project (one query), or on the embedded SQLite demo."""
    found = (
        ApiKey.objects.select_related("user")
        .filter(key_hash=api_key_hash(key), revoked_at__isnull=True, expires_at__gt=now)
        .first()
    )
    if found is None:
        return None
    access = None
    if project_id is not None:
        try:
            access = project_access_get(project_id=project_id, user=found.user)
        except Http404:
            access = None
    return TokenAccess(
        user=found.user,
        key_id=found.pk,
        key_created=found.created_at,
        key_last_used=found.last_used_at,
        access=access,
    )


def api_key_hash(raw: str) -> str:
    """What is stored for a key: its SHA-256 (services make keys; this only looks them up)."""
    return hashlib.sha256(raw.encode()).hexdigest()


def api_key_list_for_user(*, user: User) -> QuerySet[ApiKey]:
    """The user's own keys, newest first (revoked and expired ones too, marked so)."""
    return ApiKey.objects.filter(user_id=user.pk).order_by("-created_at", "-id")


def api_key_get_for_user(*, user: User, key_id: int | str) -> ApiKey:
    """One of the user's own keys; 404 for anyone else's, so ids reveal nothing."""
    try:
        return ApiKey.objects.get(pk=int(key_id), user_id=user.pk)
    except (ValueError, TypeError, ApiKey.DoesNotExist):
        raise Http404("No such API key.") from None


def project_get_for_user(
    *, project_id: int | str, user: User, roles: tuple[str, ...] = ()
) -> Project:
    access = project_access_get(project_id=project_id, user=user)
    if roles:
        access.require(*roles)
    return access.project


@dataclass
class ProjectWithRoles:
    project: Project
    roles: list[str] = field(default_factory=list)
    work: dict[str, int] = field(default_factory=dict)
    versions: list[Any] = field(default_factory=list)  # for compliance: versions to sign off

    def has(self, role: str) -> bool:
        return role in self.roles


def project_list_for_user(*, user: User, include_archived: bool = False) -> list[ProjectWithRoles]:
    """The user's projects, each with the roles they hold, in two queries."""
    memberships = Membership.objects.filter(user_id=user.pk).values_list("project_id", "role")
    roles_by_project: dict[int, list[str]] = defaultdict(list)
    order = {role: i for i, role in enumerate(Role.values)}
    for project_id, role in memberships:
        roles_by_project[project_id].append(role)
    projects = Project.objects.filter(pk__in=roles_by_project)
    if not include_archived:
        projects = projects.filter(archived=False)
    return [
        ProjectWithRoles(p, sorted(roles_by_project[p.pk], key=order.__getitem__))
        for p in projects.order_by("name")
    ]


def project_query_for_user(
    *, user: User, include_archived: bool = False
) -> tuple[QuerySet[Project], dict[int, list[str]]]:
    """The user's projects (to page through) and the roles they hold in each (all of them:
    one small query)."""
    found = project_list_for_user(user=user, include_archived=include_archived)
    roles = {entry.project.pk: entry.roles for entry in found}
    return Project.objects.filter(pk__in=roles), roles


def membership_list_for_project(
    *, project: Project, role: str | None = None, user: int | None = None
) -> QuerySet[Membership]:
    """The project's membership rows, by username and role; `role` and `user` (an id)
    narrow them."""
    rows = Membership.objects.filter(project=project)
    if role is not None:
        rows = rows.filter(role=role)
    if user is not None:
        rows = rows.filter(user_id=user)
    return rows.select_related("user", "added_by").order_by("user__username", "role")


def memberships_by_user_for_project(*, project: Project) -> list[tuple[User, list[Membership]]]:
    """Members of a project, each with their membership rows, for the members page."""
    grouped: dict[int, tuple[User, list[Membership]]] = {}
    for m in membership_list_for_project(project=project):
        grouped.setdefault(m.user_id, (m.user, []))[1].append(m)
    return list(grouped.values())


def user_addable_get(*, username: str, by: User) -> User | None:
    """The active account `by` may add to a project by its username: for staff any; for
    others an account in a project where `by` sees the member list, or in no project yet
    (a new account waiting to be placed). None otherwise, the same answer as for a name
    nobody has, so adding members is no way to list the portal's other usernames."""
    users = User.objects.filter(username__iexact=username, is_active=True)
    if not by.is_staff:
        # Those who see a project's member list: who manage or audit it.
        visible = Membership.objects.filter(user_id=by.pk, role__in=RoleSet.OVERSIGHT)
        users = users.filter(
            Q(memberships__project_id__in=visible.values("project_id"))
            | Q(memberships__isnull=True)
        )
    return users.distinct().first()


def user_list_active() -> QuerySet[User]:
    return User.objects.filter(is_active=True).order_by("username")


def user_list(*, is_active: bool | None = None, is_staff: bool | None = None) -> QuerySet[User]:
    """Every account, for portal administrators (the caller checked that)."""
    users = User.objects.all()
    if is_active is not None:
        users = users.filter(is_active=is_active)
    if is_staff is not None:
        users = users.filter(is_staff=is_staff)
    return users.order_by("id")


def user_get(*, user_id: int | str) -> User:
    """One account, for portal administrators; 404 for an id nobody has."""
    try:
        return User.objects.get(pk=int(user_id))
    except (ValueError, TypeError, User.DoesNotExist):
        raise Http404("No such account.") from None


def worker_health() -> dict[str, object]:
    """What a worker sees: its host, its database and how many projects are in it."""
    return {
        "host": socket.gethostname(),
        "database": connection.settings_dict["NAME"],
        "projects": Project.objects.count(),
    }
