from django.utils.translation import gettext_lazy as _
from drf_spectacular.drainage import set_override
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token

from portal.selectors import ProjectAccess, token_access_get


class ProjectTokenAuthentication(TokenAuthentication):
    """DRF's token authentication for views under /projects/<project_id>/ that also reads
    the caller's roles in that project, in the same query. The view then takes them
    from `project_access_for_request` instead of asking again.

    Same answers as TokenAuthentication: 401 for an unknown token or an inactive user."""

    def authenticate(self, request):
        self._project_id = (request.parser_context or {}).get("kwargs", {}).get("project_id")
        self._request = request
        return super().authenticate(request)

    def authenticate_credentials(self, key):
        if self._project_id is None:
            return super().authenticate_credentials(key)
        found = token_access_get(key=key, project_id=int(self._project_id))
        if found is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        if not found.user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        self._request.portal_project_access = (int(self._project_id), found.access)
        return found.user, Token(key=key, user=found.user, created=found.token_created)


# To API clients this is the same "tokenAuth" scheme as DRF's TokenAuthentication.
set_override(ProjectTokenAuthentication, "suppress_collision_warning", True)


def project_access_for_request(request, project_id: int) -> ProjectAccess | None | bool:
    """What ProjectTokenAuthentication found for this project: a ProjectAccess, None (not a
    member), or False when it found nothing (another way of authenticating was used)."""
    found = getattr(request, "portal_project_access", None)
    if found is None or found[0] != int(project_id):
        return False
    return found[1]
