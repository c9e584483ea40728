"""Celery entry points of serving: ids in, one service call each."""

from celery import shared_task

from serving.services import rollout
from serving.services.telemetry import telemetry_content_purge


@shared_task(name="serving.telemetry_purge", ignore_result=True)
def telemetry_purge_task() -> None:
    """Run hourly by Celery beat: request content past its retention is cleared."""
    telemetry_content_purge()


@shared_task(name="serving.rollout_evaluate", ignore_result=False)
def rollout_evaluate_task() -> dict[str, int]:
    """Beat runs this every PORTAL_ROLLOUT_EVALUATE_SECONDS; the counts go to the result
    backend."""
    return rollout.rollout_evaluate_all()


@shared_task(
    name="serving.deployment_webhook",
    autoretry_for=(Exception,),
    retry_backoff=5,
    retry_backoff_max=300,
    retry_jitter=False,
    max_retries=8,
    ignore_result=True,
)
def deployment_webhook_task(decision_id: int) -> int:
    """Tell the deployment's webhook about a decision, retried with back-off."""
    return rollout.rollout_webhook_send(decision_id=decision_id)
