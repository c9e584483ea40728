"""The periodic sweeps run by Celery beat, never by a page view.

`portal.sweep_dead_jobs`: a started background job whose worker process no longer holds its
liveness lock (core/jobs.py), or whose heartbeats stopped, is marked failed, so its page
stops polling and it can be started again (core.services.jobs, over every kind of job).
`portal.sweep_expired_leases`: work handed out and left open past its term (annotation and
adjudication leases, review pairs) goes back to its queue, also where nobody asks that
queue for work."""

from annotation.models import Lease
from annotation.services import leases_expire_all
from core.services.jobs import jobs_sweep_all
from evaluation.services import judgments_release_stale


def background_jobs_sweep() -> dict[str, int]:
    """One pass over every kind of background job; returns how many of each were marked."""
    return jobs_sweep_all()


def leases_sweep_expired() -> dict[str, int]:
    """Expire every overdue lease of every kind; returns how many of each were expired."""
    expired = leases_expire_all()
    return {
        "annotation lease": expired[Lease.Kind.LABEL],
        "adjudication lease": expired[Lease.Kind.ADJUDICATE],
        "review pair": judgments_release_stale(),
    }
