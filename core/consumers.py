from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.core.exceptions import PermissionDenied
from django.http import Http404

from core.models import RoleSet
from core.realtime import member_group, project_group, user_group
from core.selectors import project_access_get

# Close codes in the 4000 range are ours: the browser script reads them.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_ACCESS_LOST = 4403


def _may_hear_project(*, project_id, user) -> int | None:
    """The project's id if `user` holds a role that hears its events, else None."""
    try:
        access = project_access_get(project_id=project_id, user=user)
    except (Http404, PermissionDenied):
        return None
    return access.project.pk if access.has(*RoleSet.OVERSIGHT) else None


class EventsConsumer(AsyncJsonWebsocketConsumer):
    """One socket per browser tab. It always hears its user's events and, after
    `{"subscribe": <project id>}`, the events of projects where the user holds a role
    that reads them. A socket whose user loses that role is closed."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.user = user
        self.groups_joined: set[str] = set()
        self.projects: set[int] = set()
        await self._join(user_group(user.pk))
        await self.accept()

    async def _join(self, group: str) -> None:
        await self.channel_layer.group_add(group, self.channel_name)
        self.groups_joined.add(group)

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", ()):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content, **kwargs) -> None:
        project_id = content.get("subscribe") if isinstance(content, dict) else None
        if isinstance(project_id, bool) or not isinstance(project_id, int | str):
            await self.send_json({"type": "error", "message": 'Send {"subscribe": project_id}.'})
            return
        # Listen for membership changes before checking, so a removal racing the check
        # still reaches this socket.
        if str(project_id).isdigit():
            await self._join(member_group(self.user.pk, int(project_id)))
        pk = await database_sync_to_async(_may_hear_project)(project_id=project_id, user=self.user)
        if pk is None:
            await self.send_json({"type": "error", "message": "No such project."})
            return
        self.projects.add(pk)
        await self._join(project_group(pk))
        await self.send_json({"type": "subscribed", "project": pk})

    async def portal_event(self, message) -> None:
        await self.send_json(message["event"])

    async def portal_membership(self, message) -> None:
        project_id = message["event"]["project"]
        if project_id not in self.projects:
            return
        still = await database_sync_to_async(_may_hear_project)(
            project_id=project_id, user=self.user
        )
        if still is None:
            await self.close(code=CLOSE_ACCESS_LOST)
