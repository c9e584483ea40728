"""Reads shared by the training pages, the API and the CLI. Callers pass a project they got
from `portal.selectors.project_access_get`, so every query here is scoped to it."""

from dataclasses import dataclass
from typing import Any

from django.db.models import Q, QuerySet
from django.http import Http404

from portal.models import Project
from training.models import (
    BaseModel,
    BaseModelRegistration,
    ModelVersion,
    TrainingCheckpoint,
    TrainingJob,
    TrainingLogLine,
    TrainingMetric,
)

CHART_SERIES = (
    ("loss", "train loss"),
    ("eval_loss", "eval loss"),
)
LOG_TAIL = 200


def base_model_list_for_project(*, project: Project) -> QuerySet[BaseModel]:
    return BaseModel.objects.filter(Q(project=project) | Q(project__isnull=True)).order_by(
        "name", "id"
    )


def base_model_get(*, project: Project, base_model_id: int | str) -> BaseModel:
    try:
        return base_model_list_for_project(project=project).get(pk=int(base_model_id))
    except (BaseModel.DoesNotExist, TypeError, ValueError):
        raise Http404("No such base model.") from None


def registration_list_for_project(*, project: Project) -> QuerySet[BaseModelRegistration]:
    return BaseModelRegistration.objects.filter(project=project).select_related("base_model")


def registration_get(*, project: Project, registration_id: int | str) -> BaseModelRegistration:
    try:
        return registration_list_for_project(project=project).get(pk=int(registration_id))
    except (BaseModelRegistration.DoesNotExist, TypeError, ValueError):
        raise Http404("No such registration.") from None


def job_list_for_project(*, project: Project) -> QuerySet[TrainingJob]:
    return TrainingJob.objects.filter(project=project).select_related("base_model", "created_by")


def job_get(*, project: Project, job_id: int | str) -> TrainingJob:
    try:
        return job_list_for_project(project=project).get(pk=int(job_id))
    except (TrainingJob.DoesNotExist, TypeError, ValueError):
        raise Http404("No such training job.") from None


def job_metrics(*, job: TrainingJob, after_id: int = 0) -> QuerySet[TrainingMetric]:
    return job.metrics.filter(pk__gt=after_id).order_by("step", "id")


def job_log_tail(*, job: TrainingJob, limit: int = LOG_TAIL) -> list[TrainingLogLine]:
    return list(reversed(job.log_lines.order_by("-id")[:limit]))


def job_log_lines(*, job: TrainingJob, after_id: int = 0, limit: int = 1000):
    return job.log_lines.filter(pk__gt=after_id).order_by("id")[:limit]


def job_checkpoints(*, job: TrainingJob) -> QuerySet[TrainingCheckpoint]:
    return job.checkpoints.order_by("step")


def job_chart_series(*, job: TrainingJob) -> dict[str, list[tuple[float, float]]]:
    """(step, value) series for the live chart: training loss and evaluation loss (or the
    kind's own headline figures when a trainer logs no plain loss)."""
    series: dict[str, list[tuple[float, float]]] = {label: [] for _, label in CHART_SERIES}
    extra = {"rewards/accuracies": "reward accuracy", "reward": "mean reward"}
    for step, values in job.metrics.order_by("step", "id").values_list("step", "values"):
        for key, label in CHART_SERIES:
            if key in values:
                series[label].append((step, values[key]))
        for key, label in extra.items():
            if key in values:
                series.setdefault(label, []).append((step, values[key]))
    return series


def job_latest_values(*, job: TrainingJob) -> dict[str, Any]:
    """The last value of every metric, for the figures beside the chart."""
    latest: dict[str, Any] = {}
    for values in job.metrics.order_by("step", "id").values_list("values", flat=True):
        latest.update(values)
    return latest


ESTIMATE_LABELS = {
    "preflight": "Pre-flight (loading, tokenising, smoke run), as it took",
    "training": "Training steps",
    "checkpoints": "Checkpoint saves",
    "evaluation": "Evaluations during training",
    "final_save": "Final save",
    "sanity_check": "Sanity check (tuned vs frozen base)",
}


def job_estimate(*, job: TrainingJob) -> list[tuple[str, float]]:
    """The pre-flight's estimate of each phase, labelled, in the order they run."""
    parts = (job.preflight or {}).get("estimate_seconds") or {}
    return [(ESTIMATE_LABELS.get(name, name), seconds) for name, seconds in parts.items()]


def model_version_list_for_project(*, project: Project) -> QuerySet[ModelVersion]:
    return ModelVersion.objects.filter(project=project).select_related("base_model", "job")


def model_version_get(*, project: Project, version_id: int | str) -> ModelVersion:
    try:
        return model_version_list_for_project(project=project).get(pk=int(version_id))
    except (ModelVersion.DoesNotExist, TypeError, ValueError):
        raise Http404("No such model version.") from None


def model_version_lineage(*, version: ModelVersion) -> list[ModelVersion]:
    """The version, its parent, its parent's parent... (oldest last)."""
    chain, seen = [], set()
    current: ModelVersion | None = version
    while current is not None and current.pk not in seen:
        chain.append(current)
        seen.add(current.pk)
        current = current.parent
    return chain


@dataclass(frozen=True)
class Compatibility:
    base_models: list[BaseModel]
    rows: list[tuple[ModelVersion, list[bool]]]


def compatibility_matrix(*, project: Project) -> Compatibility:
    """Which versions fit which base models: an adapter fits exactly the weights (by hash)
    it was trained on; full weights stand alone and fit their own base only."""
    bases = list(base_model_list_for_project(project=project))
    versions = list(model_version_list_for_project(project=project).order_by("name"))
    rows = [(v, [b.weights_sha256 == v.base_weights_sha256 for b in bases]) for v in versions]
    return Compatibility(base_models=bases, rows=rows)
