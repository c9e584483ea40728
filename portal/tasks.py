from celery import shared_task

from portal import selectors, services


@shared_task(name="portal.notify_user", ignore_result=True)
def notify_user_task(user_id: int, text: str, kind: str = "info") -> None:
    services.notification_push(user_id=user_id, text=text, kind=kind)


@shared_task(name="portal.ping")
def ping_task() -> dict:
    return selectors.worker_health()
