from celery import shared_task

from annotation.services import datasets


@shared_task(
    name="annotation.import_dataset",
    acks_late=True,
    soft_time_limit=3600,
    time_limit=3700,
    ignore_result=True,
)
def dataset_import_task(upload_id: str) -> None:
    datasets.dataset_import_run(upload_id=upload_id)
