from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.drainage import set_override
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.request import Request

from core.models import User
from core.selectors import TokenAccess, token_access_get
from core.services import api_key_touch


class AuthenticatedRequest(Request):
    """DRF's Request as the API views see it, for annotations only (never instantiated):
    every API view requires a signed-in caller (DEFAULT_PERMISSION_CLASSES), so its user is
    a User, never AnonymousUser. The API modules import it under the name `Request`."""

    user: User


# Longer than any key we issue; refused before hashing so a huge header costs nothing.
API_KEY_MAX_LENGTH = 128


class ApiKeyAuthentication(TokenAuthentication):
    """`Authorization: Token <key>` (DRF's header, so existing clients keep working) checked
    against the portal's hashed API keys: 401 for an unknown, expired or revoked key or an
    inactive user. `request.auth` is the key's id."""

    def authenticate_credentials(self, key):
        return self._accept(self._lookup(key, project_id=None))

    def _lookup(self, key: str, project_id: int | None) -> TokenAccess:
        found = None
        if len(key) <= API_KEY_MAX_LENGTH:
            found = token_access_get(key=key, project_id=project_id)
        if found is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        if not found.user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        return found

    def _accept(self, found: TokenAccess):
        # last_used_at is written at most once a minute, so most calls stay a single read.
        last = found.key_last_used
        if last is None or (timezone.now() - last).total_seconds() > 60:
            api_key_touch(key_id=found.key_id)
        return found.user, found.key_id


class ProjectTokenAuthentication(ApiKeyAuthentication):
    """API-key authentication for views under /projects/<project_id>/ that also reads the
    caller's roles in that project, in the same query. The view then takes them from
    `project_access_for_request` instead of asking again."""

    def authenticate(self, request):
        self._project_id = (request.parser_context or {}).get("kwargs", {}).get("project_id")
        self._request = request
        return super().authenticate(request)

    def authenticate_credentials(self, key):
        if self._project_id is None:
            return super().authenticate_credentials(key)
        found = self._lookup(key, project_id=int(self._project_id))
        self._request.portal_project_access = (int(self._project_id), found.access)
        return self._accept(found)


# To API clients these are the same "tokenAuth" scheme as DRF's TokenAuthentication.
set_override(ApiKeyAuthentication, "suppress_collision_warning", True)
set_override(ProjectTokenAuthentication, "suppress_collision_warning", True)


def project_access_for_request(request, project_id: int):
    """What ProjectTokenAuthentication found for this project: a ProjectAccess, None (not a
    member), or False when it found nothing (another way of authenticating was used)."""
    found = getattr(request, "portal_project_access", None)
    if found is None or found[0] != int(project_id):
        return False
    return found[1]
