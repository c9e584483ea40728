"""Services for prompt sets, generations, blind pairwise campaigns, ratings, offline metrics,
fairness slices and regression gates."""

from evaluation.services import campaigns, compression, gates, offline, prompts
from evaluation.services.campaigns import (
    campaign_close,
    campaign_create,
    campaign_export_preferences,
    judgment_next,
    judgment_submit,
    judgments_release_stale,
    rater_set_excluded,
    ratings_bootstrap_start,
)
from evaluation.services.gates import gate_create, gate_run
from evaluation.services.offline import metric_run_start, metric_runs_start
from evaluation.services.prompts import (
    contestant_create,
    generation_job_start,
    generation_jobs_start,
    generations_import,
    prompt_set_create,
    prompt_set_create_from_snapshot,
    work_requeue_abandoned,
)

__all__ = [
    "campaign_close",
    "campaign_create",
    "campaign_export_preferences",
    "campaigns",
    "compression",
    "contestant_create",
    "gate_create",
    "gate_run",
    "gates",
    "generation_job_start",
    "generation_jobs_start",
    "generations_import",
    "judgment_next",
    "judgment_submit",
    "judgments_release_stale",
    "metric_run_start",
    "metric_runs_start",
    "offline",
    "prompt_set_create",
    "prompt_set_create_from_snapshot",
    "prompts",
    "rater_set_excluded",
    "ratings_bootstrap_start",
    "work_requeue_abandoned",
]
