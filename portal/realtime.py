"""Pushes to connected browsers over the Channels layer.

Group names: `user.<id>` for one person, `project.<id>` for everyone watching a
project. Call these from `transaction.on_commit` so nobody is told of a write that
rolled back.
"""

from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def project_group(project_id: int) -> str:
    return f"project.{project_id}"


def _send(group: str, event: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    async_to_sync(layer.group_send)(group, {"type": "portal.event", "event": event})


def push_to_user(*, user_id: int, event: dict[str, Any]) -> None:
    _send(user_group(user_id), event)


def push_to_project(*, project_id: int, event: dict[str, Any]) -> None:
    _send(project_group(project_id), event)
