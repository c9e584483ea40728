"""Celery entry points: ids in, one service call each."""

from celery import shared_task

from evaluation import services


@shared_task(
    name="evaluation.generate",
    acks_late=True,
    soft_time_limit=6 * 3600,
    time_limit=6 * 3600 + 300,
    ignore_result=True,
)
def generation_run_task(job_id: int) -> None:
    services.prompts.generation_job_run(job_id=job_id)


@shared_task(
    name="evaluation.ratings_bootstrap",
    acks_late=True,
    soft_time_limit=1800,
    time_limit=1900,
    ignore_result=True,
)
def ratings_bootstrap_task(bootstrap_id: int) -> None:
    services.campaigns.ratings_bootstrap_run(bootstrap_id=bootstrap_id)


@shared_task(
    name="evaluation.metric_run",
    acks_late=True,
    soft_time_limit=3600,
    time_limit=3700,
    ignore_result=True,
)
def metric_run_task(run_id: int) -> None:
    services.offline.metric_run_execute(run_id=run_id)


@shared_task(
    name="evaluation.compression_evaluate",
    acks_late=True,
    soft_time_limit=6 * 3600,
    time_limit=6 * 3600 + 300,
    ignore_result=True,
)
def compression_evaluate_task(version_id: int) -> None:
    services.compression.compression_evaluate(version_id=version_id)
