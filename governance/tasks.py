"""Celery entry points for governance: dossier builds, the retention sweep and audit
checkpoints."""

from celery import shared_task

from governance.services import checkpoints, dossiers, protection


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


@shared_task(name="governance.audit_checkpoint_sign", ignore_result=True)
def audit_checkpoint_sign_task() -> None:
    """Run by Celery beat (PORTAL_AUDIT_CHECKPOINT_SECONDS); a refusal (the log does not
    extend the last checkpoint) fails the task loudly rather than signing a rewrite."""
    checkpoints.audit_checkpoint_sign()
