"""Celery entry points of the foundation: notifications, the worker health ping and signed
audit checkpoints. Task names are kept from before these moved here (`portal.*`,
`governance.*`): beat schedules and messages already queued name them."""

from celery import shared_task

from core import selectors, services
from core.services import checkpoints


@shared_task(name="portal.notify_user", ignore_result=True)
def notify_user_task(user_id: int, text: str, kind: str = "info") -> None:
    services.notification_push(user_id=user_id, text=text, kind=kind)


@shared_task(name="portal.ping")
def ping_task() -> dict:
    return selectors.worker_health()


@shared_task(name="governance.audit_checkpoint_sign", ignore_result=True)
def audit_checkpoint_sign_task() -> None:
    """Run by Celery beat (PORTAL_AUDIT_CHECKPOINT_SECONDS); a refusal (the log does not
    extend the last checkpoint) fails the task loudly rather than signing a rewrite."""
    checkpoints.audit_checkpoint_sign()
