from celery import shared_task

from annotation.services import datasets, quality


@shared_task(
    name="annotation.import_dataset",
    acks_late=True,
    soft_time_limit=3600,
    time_limit=3700,
    ignore_result=True,
)
def dataset_import_task(upload_id: str) -> None:
    datasets.dataset_import_run(upload_id=upload_id)


@shared_task(
    name="annotation.run_quality_check",
    acks_late=True,
    soft_time_limit=3600,
    time_limit=3700,
    ignore_result=True,
)
def quality_check_task(check_id: int) -> None:
    quality.quality_check_run(check_id=check_id)
