"""One way to reach a project from a page or an API endpoint, and one place that says which
roles each may serve.

Pages use `project_page`, API views subclass `ProjectApiView`. Both resolve the project from
the URL's `project_id` through `project_access_get` (404 for a non-member, so a stranger
cannot tell a project exists), check the roles the view declares for the request's method
(403 otherwise) and hand the view the `ProjectAccess`. The declarations are data
(`page_roles`, `ProjectApiView.roles`), so the role-matrix tests read the same table the
views enforce.
"""

from collections.abc import Callable, Iterable, Mapping
from functools import wraps
from typing import Any, ClassVar

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ImproperlyConfigured
from django.http import Http404, HttpRequest, HttpResponse
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from core.authentication import project_access_for_request
from core.selectors import ProjectAccess, project_access_get

# HTTP method -> roles allowed. "*" is the default for methods not named.
MethodRoles = Mapping[str, Iterable[str]]


def _roles_for(declared: MethodRoles, method: str) -> tuple[str, ...]:
    roles = declared.get(method, declared.get("*"))
    if roles is None:
        raise ValueError(f"no roles declared for {method}")
    return tuple(roles)


def _normalise(roles: Iterable[str] | MethodRoles) -> dict[str, tuple[str, ...]]:
    if isinstance(roles, Mapping):
        declared = {
            method.upper() if method != "*" else "*": tuple(r) for method, r in roles.items()
        }
    else:
        declared = {"*": tuple(roles)}
    if "HEAD" not in declared and "GET" in declared:
        declared["HEAD"] = declared["GET"]
    return declared


def project_page(roles: Iterable[str] | MethodRoles) -> Callable:
    """Decorate a page view `view(request, access, ...)` served under a URL with
    `<project_id>`: log-in required, the project resolved for the caller, the role checked.

    `roles` is a role set (`RoleSet.OVERSIGHT`) or a per-method mapping
    (`{"GET": RoleSet.OVERSIGHT, "POST": RoleSet.ENGINEERS}`).
    """
    declared = _normalise(roles)

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @login_required
        @wraps(view)
        def page(request: HttpRequest, project_id: int, *args: Any, **kwargs: Any) -> HttpResponse:
            access = project_access_get(project_id=project_id, user=request.user)
            access.require(*_roles_for(declared, request.method or "GET"))
            return view(request, access, *args, **kwargs)

        page.page_roles = declared  # type: ignore[attr-defined]
        return page

    return decorate


def _api_project_access(request: Request, project_id: int | str) -> ProjectAccess:
    access = project_access_for_request(request, int(project_id))
    if access is None:  # the token's owner is no member: as project_access_get answers
        raise Http404("No such project.")
    if access is False:
        access = project_access_get(project_id=project_id, user=request.user)
    return access


def api_access(request: Request, project_id: int | str, *roles: str) -> ProjectAccess:
    """The caller's access to a project in an API view, reusing what the project token
    authentication already read in its query when it ran."""
    return _api_project_access(request, project_id).require(*roles)


class ProjectRole(BasePermission):
    """DRF permission for views under /projects/<project_id>/: the view's `roles` for the
    request's method. The resolved access is kept on `request.project_access`."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        project_id = view.kwargs.get("project_id")
        if project_id is None:
            raise ImproperlyConfigured(f"{type(view).__name__} has no project_id in its URL")
        method = request.method or "GET"
        declared = _declared_roles(type(view))
        roles = declared.get(method, declared.get("*"))
        if roles is None:
            if method != "OPTIONS" and hasattr(view, method.lower()):
                raise ImproperlyConfigured(f"{type(view).__name__} declares no roles for {method}")
            # A method with no handler (DRF answers 405 next), or OPTIONS (whose metadata
            # asks this again per method): members only, so a stranger learns nothing.
            request.project_access = _api_project_access(request, project_id)  # type: ignore[attr-defined]
            return True
        request.project_access = api_access(request, project_id, *roles)  # type: ignore[attr-defined]
        return True


def _declared_roles(view_class: type) -> dict[str, tuple[str, ...]]:
    # Normalised once per class: the queue endpoints run this on every item.
    found = view_class.__dict__.get("_declared_roles")
    if found is None:
        found = _normalise(getattr(view_class, "roles", {}))
        view_class._declared_roles = found  # type: ignore[attr-defined]
    return found


class ProjectApiView(APIView):
    """Base for API views under /projects/<project_id>/. Subclasses declare `roles` (a role
    set, or a mapping of HTTP method to role set) and read `self.access` in handlers."""

    roles: ClassVar[Iterable[str] | MethodRoles] = ()

    def get_permissions(self):
        return [*super().get_permissions(), ProjectRole()]

    @property
    def access(self) -> ProjectAccess:
        return self.request.project_access  # type: ignore[attr-defined]
