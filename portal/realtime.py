"""Pushes to connected browsers over the Channels layer.

Group names: `user.<id>` for one person, `project.<id>` for everyone watching a
project. Call these from `transaction.on_commit` so nobody is told of a write that
rolled back.
"""

import asyncio
from concurrent.futures import ThreadPoolExecutor
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
    message = {"type": "portal.event", "event": event}
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
