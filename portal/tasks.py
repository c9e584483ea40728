from celery import shared_task
from django.conf import settings

from portal import housekeeping


@shared_task(name="portal.sweep_dead_jobs")
def sweep_dead_jobs_task() -> dict[str, int]:
    """Beat runs this every PORTAL_JOB_SWEEP_SECONDS; the counts go to the result backend."""
    return housekeeping.background_jobs_sweep()


@shared_task(name="portal.sweep_expired_leases")
def sweep_expired_leases_task() -> dict[str, int]:
    """Beat runs this every PORTAL_LEASE_EXPIRY_SWEEP_SECONDS; counts to the result backend."""
    return housekeeping.leases_sweep_expired()


# The demo chain waits on training and generation jobs, looking every DEMO_RETRY_S, for two
# hours at most. A budget in time, not in looks: tests look every second, and a count that
# was two hours at 10 s gave up after 12 minutes of SmolLM2 training on a busy machine.
DEMO_RETRY_S = 10
DEMO_WAIT_S = 2 * 3600


@shared_task(name="portal.demo_pipeline_advance", bind=True, ignore_result=True)
def demo_pipeline_advance_task(self, project_id: int) -> None:
    from core.models import Project
    from portal.demo_pipeline import demo_pipeline_advance

    progress = demo_pipeline_advance(project=Project.objects.get(pk=project_id))
    if not progress.done:
        retry_s = getattr(settings, "PORTAL_DEMO_RETRY_SECONDS", DEMO_RETRY_S)
        raise self.retry(countdown=retry_s, max_retries=int(DEMO_WAIT_S / retry_s))
