"""The periodic sweeps run by Celery beat, never by a page view.

`portal.sweep_dead_jobs`: a started background job whose worker process no longer holds its
liveness lock (portal/jobs.py) is marked failed, so its page stops polling and it can be
started again. `portal.sweep_expired_leases`: work handed out and left open past its term
(annotation and adjudication leases, review pairs) goes back to its queue, also where
nobody asks that queue for work."""

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.db import models, transaction
from django.utils import timezone

from annotation.models import DatasetUpload, Lease, QualityCheck
from annotation.services import leases_expire_all
from annotation.services.datasets import dataset_upload_lost_cleanup
from core.jobs import job_owner_gone
from core.services.audit import audit_record
from evaluation.models import GenerationJob, MetricRun, RatingsBootstrap
from evaluation.services import judgments_release_stale
from governance.models import Dossier
from governance.services.dossiers import dossier_lost_cleanup
from training.models import BaseModelRegistration
from training.services.base_models import base_model_registration_lost_cleanup
from training.services.jobs import training_jobs_sweep_stale


@dataclass(frozen=True)
class SweptJobs:
    # A model class with a Status of RUNNING and FAILED and the fields named below; no
    # common base class says so, hence Any.
    model: type[Any]
    noun: str
    # After the row is marked failed (on commit): remove what the dead worker left behind.
    cleanup: Callable[[Any], None] | None = None


# Every model with a worker-side lifecycle (queued -> running -> succeeded | failed) and the
# same field names; training jobs have their own sweep (heartbeats, automatic resume).
SWEPT = (
    SweptJobs(DatasetUpload, "import", dataset_upload_lost_cleanup),
    SweptJobs(QualityCheck, "quality check"),
    SweptJobs(GenerationJob, "generation run"),
    SweptJobs(RatingsBootstrap, "rating refresh"),
    SweptJobs(MetricRun, "metric run"),
    SweptJobs(Dossier, "dossier build", dossier_lost_cleanup),
    SweptJobs(
        BaseModelRegistration, "base model registration", base_model_registration_lost_cleanup
    ),
)


def _project_id(job: models.Model) -> int | None:
    if isinstance(job, RatingsBootstrap):
        return job.campaign.project_id
    return getattr(job, "project_id", None)


def jobs_sweep_dead(swept: SweptJobs) -> list:
    """Mark failed the running jobs of one kind whose worker is gone; returns their ids."""
    model = swept.model
    running = model.Status.RUNNING
    marked = []
    for pk in list(model._default_manager.filter(status=running).values_list("pk", flat=True)):
        with transaction.atomic():
            job = model._default_manager.select_for_update().filter(pk=pk, status=running).first()
            if job is None or not job_owner_gone(model, pk):
                continue
            error = (
                f"The worker running this {swept.noun} died before it finished "
                "(its process is gone); nothing it started was kept. Start it again."
            )
            model._default_manager.filter(pk=pk).update(
                status=model.Status.FAILED, error=error, finished_at=timezone.now()
            )
            audit_record(
                actor=None,
                action=f"{model._meta.app_label}.{model._meta.model_name}.lost",
                target=job,
                project_id=_project_id(job),
                data={"error": error},
            )
            if swept.cleanup is not None:
                job.refresh_from_db()
                transaction.on_commit(partial(swept.cleanup, job))
            marked.append(pk)
    return marked


def background_jobs_sweep() -> dict[str, int]:
    """One pass over every kind of background job; returns how many of each were marked."""
    counts = {"training job": training_jobs_sweep_stale(requeue=True)}
    for swept in SWEPT:
        counts[swept.noun] = len(jobs_sweep_dead(swept))
    return counts


def leases_sweep_expired() -> dict[str, int]:
    """Expire every overdue lease of every kind; returns how many of each were expired."""
    expired = leases_expire_all()
    return {
        "annotation lease": expired[Lease.Kind.LABEL],
        "adjudication lease": expired[Lease.Kind.ADJUDICATE],
        "review pair": judgments_release_stale(),
    }
