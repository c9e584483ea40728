"""Celery entry points of serving: ids in, one service call each."""

from celery import shared_task

from serving.services.telemetry import telemetry_content_purge


@shared_task(name="serving.telemetry_purge", ignore_result=True)
def telemetry_purge_task() -> None:
    """Run hourly by Celery beat: request content past its retention is cleared."""
    telemetry_content_purge()
