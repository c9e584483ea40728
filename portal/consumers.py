from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.core.exceptions import PermissionDenied
from django.http import Http404

from portal.realtime import project_group, user_group
from portal.selectors import project_access_get

# Close codes in the 4000 range are ours: the browser script reads them.
CLOSE_UNAUTHENTICATED = 4401


class EventsConsumer(AsyncJsonWebsocketConsumer):
    """One socket per browser tab. It always hears its user's events and, after
    `{"subscribe": <project id>}`, the events of projects the user is a member of."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.user = user
        self.groups_joined: set[str] = set()
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
        if project_id is None:
            await self.send_json({"type": "error", "message": 'Send {"subscribe": project_id}.'})
            return
        try:
            access = await database_sync_to_async(project_access_get)(
                project_id=project_id, user=self.user
            )
        except (Http404, PermissionDenied):
            await self.send_json({"type": "error", "message": "No such project."})
            return
        await self._join(project_group(access.project.pk))
        await self.send_json({"type": "subscribed", "project": access.project.pk})

    async def portal_event(self, message) -> None:
        await self.send_json(message["event"])
