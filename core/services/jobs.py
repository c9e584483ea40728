"""The lifecycle of every background job (core.models.BackgroundJob), written once:
claim, progress, heartbeat, settle (finish, fail, cancelled), cancel requests, requeue, and
the housekeeping sweep that fails jobs whose worker died.

queued -> [preflight ->] running -> succeeded | failed | cancelled. A worker claims a job
with a conditional UPDATE, so a duplicate delivery changes nothing; a job settles only from a
started state, under its row lock, so the worker and the sweep never both settle it. Each
app's services call these and do their own work around them (their audit actions, live
pushes, files); a kind that must clean up after a lost worker registers a callback here
(`job_lost_register`, from its AppConfig.ready), so core never imports an app."""

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.apps import apps
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.utils import timezone

from core.jobs import job_owner_gone
from core.models import JOB_ACTIVE, JOB_STARTED, BackgroundJob, JobStatus
from core.services.audit import audit_record

Job = TypeVar("Job", bound=BackgroundJob)
LostHook = Callable[[Any], None]

# A worker beats every few seconds: this much silence plus a free liveness lock means its
# process is gone. A free lock alone is not enough for a kind that beats: a database
# restart drops a live worker's lock connection while the worker carries on.
LOCK_LOST_QUIET_S = 10

_lost_hooks: dict[type[BackgroundJob], LostHook] = {}


def _touched(model: type[models.Model], now: datetime) -> dict[str, datetime]:
    """`auto_now` fields, which a queryset UPDATE leaves alone otherwise."""
    return {
        field.name: now
        for field in model._meta.concrete_fields
        if getattr(field, "auto_now", False)
    }


def job_claim(model: type[Job], *, pk: Any, to: str = JobStatus.RUNNING, **fields: Any) -> bool:
    """Move a queued job to `to` (running, or preflight for a kind that checks first) and
    write `fields` with it. Returns False, changing nothing, when the job is not queued (a
    duplicate delivery, a cancelled or settled job): the caller then returns."""
    now = timezone.now()
    claimed = model._default_manager.filter(
        pk=pk, status=JobStatus.QUEUED, cancel_requested=False
    ).update(status=to, started_at=now, heartbeat_at=now, **_touched(model, now), **fields)
    return bool(claimed)


def job_running(model: type[Job], *, pk: Any) -> bool:
    """A job out of its pre-flight checks is running; False when it was not in preflight."""
    now = timezone.now()
    moved = model._default_manager.filter(pk=pk, status=JobStatus.PREFLIGHT).update(
        status=JobStatus.RUNNING, heartbeat_at=now, **_touched(model, now)
    )
    return bool(moved)


def job_progress(model: type[Job], *, pk: Any, **fields: Any) -> None:
    """Write how far the job got (its kind's own progress fields); also a sign of life."""
    now = timezone.now()
    model._default_manager.filter(pk=pk).update(heartbeat_at=now, **_touched(model, now), **fields)


def job_heartbeat(model: type[Job], *, pk: Any, **fields: Any) -> bool:
    """The worker is alive (with `fields`, e.g. its child's pid); returns whether a cancel
    has been asked for, which the worker then carries out."""
    job_progress(model, pk=pk, **fields)
    return model._default_manager.filter(pk=pk, cancel_requested=True).exists()


def job_settle(model: type[Job], *, pk: Any, status: str, **fields: Any) -> Job | None:
    """Move a started job to the final `status`, with `fields`, under its row lock. Returns
    the settled job, or None (changing nothing) when it is not started (any more): the
    sweep settled it first, say. Inside the caller's transaction when there is one, so the
    caller's audit row and on-commit work go with it."""
    with transaction.atomic():
        job = _locked_started(model, pk)
        if job is None:
            return None
        _settle_locked(job, status, fields)
    return job


def _locked_started(model: type[Job], pk: Any) -> Job | None:
    return model._default_manager.select_for_update().filter(pk=pk, status__in=JOB_STARTED).first()


def _settle_locked(job: BackgroundJob, status: str, fields: dict[str, Any]) -> None:
    now = timezone.now()
    changed = {"status": status, "finished_at": now, **_touched(type(job), now), **fields}
    for name, value in changed.items():
        setattr(job, name, value)
    job.save(update_fields=list(changed))


def job_finish(model: type[Job], *, pk: Any, **fields: Any) -> Job | None:
    """The job succeeded, with its results in `fields`; see job_settle."""
    return job_settle(model, pk=pk, status=JobStatus.SUCCEEDED, **fields)


def job_fail(model: type[Job], *, pk: Any, error: str, **fields: Any) -> Job | None:
    """The job failed and `error` says why; see job_settle."""
    return job_settle(model, pk=pk, status=JobStatus.FAILED, error=error, **fields)


def job_cancelled(model: type[Job], *, pk: Any, **fields: Any) -> Job | None:
    """The worker stopped the job as asked; see job_settle."""
    return job_settle(model, pk=pk, status=JobStatus.CANCELLED, **fields)


def job_cancel_request(model: type[Job], *, pk: Any) -> Job:
    """Ask a job to stop. A queued job is cancelled at once (no worker will claim it); a
    started one is stopped by its worker, which sees the flag at its next heartbeat. A
    finished job is refused. Caller is in a transaction (this locks the row)."""
    job = model._default_manager.select_for_update().get(pk=pk)
    if job.status not in JOB_ACTIVE:
        raise ValidationError(f"The job is {job.get_status_display().lower()}; nothing to cancel.")
    now = timezone.now()
    changed: dict[str, Any] = {"cancel_requested": True, **_touched(model, now)}
    if job.status == JobStatus.QUEUED:
        changed.update(status=JobStatus.CANCELLED, finished_at=now)
    for name, value in changed.items():
        setattr(job, name, value)
    job.save(update_fields=list(changed))
    return job


def jobs_requeue(queryset: models.QuerySet, **fields: Any) -> list:
    """Put the queued or started jobs of `queryset` back in the queue (with `fields`, a
    reset of their progress): jobs whose messages were lost when an embedded portal's
    workers stopped. Call it only while no worker runs; the caller sends them again after
    commit. Returns the jobs."""
    stuck = list(queryset.filter(status__in=JOB_ACTIVE))
    now = timezone.now()
    queryset.model._default_manager.filter(pk__in=[job.pk for job in stuck]).update(
        status=JobStatus.QUEUED, **_touched(queryset.model, now), **fields
    )
    return stuck


# --- workers that died ------------------------------------------------------------------


def job_models() -> list[type[BackgroundJob]]:
    """Every concrete kind of background job of the installed apps."""
    return [model for model in apps.get_models() if issubclass(model, BackgroundJob)]


def job_lost_register(model: type[BackgroundJob], hook: LostHook) -> None:
    """`hook(job)` runs in the sweep's transaction after it failed a job of this kind whose
    worker died (its audit event written): the kind's own follow-up, e.g. removing what the
    dead worker left behind on commit, or telling the pages."""
    _lost_hooks[model] = hook


def _lost_reason(job: BackgroundJob, stale_s: float | None) -> str | None:
    """Why the job's worker counts as gone, or None while it may be alive. Caller holds the
    row lock, in a transaction: the lock probe keeps the job's lock until it ends, so no
    worker takes the job over meanwhile."""
    gone = "died before it finished (its process is gone)"
    beat = job.heartbeat_at
    if stale_s is None or beat is None:
        return gone if job_owner_gone(type(job), job.pk) else None
    now = timezone.now()
    if beat < now - timedelta(seconds=min(stale_s, LOCK_LOST_QUIET_S)) and job_owner_gone(
        type(job), job.pk
    ):
        return gone
    if beat < now - timedelta(seconds=stale_s):
        return f"stopped sending heartbeats (last at {beat:%H:%M:%S} UTC)"
    return None


def jobs_sweep_dead(
    model: type[Job],
    *,
    queryset: models.QuerySet | None = None,
    stale_s: float | None = None,
    on_lost: LostHook | None = None,
) -> list[Job]:
    """Fail the started jobs of one kind (of `queryset`, else all) whose worker is gone: no
    live process holds the job's liveness lock (core.jobs), or, for a kind that beats, its
    heartbeats stopped `stale_s` (default: the kind's own limit) ago. Each is failed and
    audited (`<prefix>.lost`) in a transaction of its own, with `on_lost` (default: the
    hook registered for the kind) run inside it. Returns the failed jobs."""
    if stale_s is None:
        stale_s = model.heartbeat_stale_seconds()
    hook = on_lost or _lost_hooks.get(model)
    started = (queryset if queryset is not None else model._default_manager.all()).filter(
        status__in=JOB_STARTED
    )
    lost = []
    for pk in list(started.values_list("pk", flat=True)):
        with transaction.atomic():
            job = _locked_started(model, pk)
            reason = _lost_reason(job, stale_s) if job is not None else None
            if job is None or reason is None:
                continue
            error = job.lost_error(reason)
            _settle_locked(job, JobStatus.FAILED, {"error": error})
            audit_record(
                actor=None,
                action=f"{model.job_audit_prefix()}.lost",
                target=job,
                project_id=job.job_project_id,
                data={"error": error},
            )
            if hook is not None:
                hook(job)
            lost.append(job)
    return lost


def jobs_sweep_all() -> dict[str, int]:
    """One pass of the sweep over every kind of job; returns how many of each were failed."""
    return {model.job_noun: len(jobs_sweep_dead(model)) for model in job_models()}
