"""Celery entry points for governance: dossier builds and the retention sweep."""

from celery import shared_task

from governance.services import dossiers, protection


@shared_task(
    name="governance.build_dossier",
    acks_late=True,
    soft_time_limit=1800,
    time_limit=1900,
    ignore_result=True,
)
def dossier_build_task(dossier_id: int) -> None:
    dossiers.dossier_build_run(dossier_id=dossier_id)


@shared_task(name="governance.purge_raw_uploads", ignore_result=True)
def purge_raw_uploads_task() -> None:
    """Meant for Celery beat (e.g. daily); `manage.py purge_raw_uploads` does the same."""
    protection.uploads_purge()
