"""Pushes to connected browsers over the Channels layer.

Group names: `user.<id>` for one person, `project.<id>` for everyone watching a
project, `member.<user id>.<project id>` for one person's sockets subscribed to one
project (told when their membership there changes). Call these from
`transaction.on_commit` so nobody is told of a write that rolled back.
"""

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings


def pushes_cross_processes() -> bool:
    """Whether a push sent by one process (a Celery worker) reaches the sockets another
    process (the web server) holds. Not with the in-memory layer of the embedded default:
    there each process has its own, so pages that show a worker's progress poll instead."""
    backend = str(settings.CHANNEL_LAYERS.get("default", {}).get("BACKEND", ""))
    return bool(backend) and not backend.endswith(".InMemoryChannelLayer")


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def project_group(project_id: int) -> str:
    return f"project.{project_id}"


def member_group(user_id: int, project_id: int) -> str:
    return f"member.{user_id}.{project_id}"


def _send(group: str, event: dict[str, Any], message_type: str = "portal.event") -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": message_type, "event": event}
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        async_to_sync(layer.group_send)(group, message)
        return
    # A synchronous caller on a thread that also runs an event loop (a sync view under a
    # browser-driving test, a notebook) cannot use async_to_sync there: send from a helper.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(async_to_sync(layer.group_send), group, message).result(timeout=10)


def push_to_user(*, user_id: int, event: dict[str, Any]) -> None:
    _send(user_group(user_id), event)


def push_to_project(*, project_id: int, event: dict[str, Any]) -> None:
    _send(project_group(project_id), event)


def membership_changed(*, user_id: int, project_id: int) -> None:
    """Make the user's sockets subscribed to the project check their roles again (they
    close when the user may no longer hear its events)."""
    _send(member_group(user_id, project_id), {"project": project_id}, "portal.membership")
