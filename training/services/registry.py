"""The model registry: versions made by successful jobs, and their stage."""

from django.core.exceptions import ValidationError
from django.db import transaction

from governance.services import audit_record
from portal.models import User
from training.models import JobKind, ModelVersion, TrainingJob

STAGES = tuple(ModelVersion.Stage.values)


def model_version_create_for_job(*, job: TrainingJob) -> ModelVersion:
    """The version a succeeded job produced. Caller holds the job's row lock inside a
    transaction (execution._settle)."""
    result = job.result
    metrics = dict(result.get("metrics") or {})
    if result.get("sanity"):
        metrics["sanity"] = result["sanity"]
    final_loss = _final_train_loss(job)
    if final_loss is not None:
        metrics["final_train_loss"] = final_loss
    version = ModelVersion.objects.create(
        project=job.project,
        name=f"{job.name} #{job.pk}",
        base_model=job.base_model,
        job=job,
        parent=job.parent_version,
        kind=result.get("kind", ModelVersion.Kind.FULL),
        task=job.kind if job.kind in JobKind.values else JobKind.SFT,
        path=result["path"],
        merged_path=result.get("merged_path", ""),
        base_weights_sha256=job.base_model.weights_sha256,
        checkpoint_sha256=result.get("files", {}),
        metrics=metrics,
    )
    audit_record(
        actor=None,
        action="training.model_version.create",
        target=version,
        data={"job": job.pk, "kind": version.kind, "files": version.checkpoint_sha256},
    )
    return version


def _final_train_loss(job: TrainingJob) -> float | None:
    for values in job.metrics.order_by("-step", "-id").values_list("values", flat=True)[:20]:
        if "loss" in values:
            return values["loss"]
    return None


def model_version_lock(*, version_id: int) -> ModelVersion:
    """The version read again under its row lock, for a caller that changes or signs it
    off. Caller is inside a transaction."""
    return ModelVersion.objects.select_for_update().get(pk=version_id)


def model_versions_lock_in_stage(
    *, project_id: int, stage: str, exclude_id: int | None = None
) -> list[ModelVersion]:
    """The project's versions in `stage` (but `exclude_id`), locked, so that no concurrent
    promotion or rollback moves them meanwhile. Caller is inside a transaction."""
    versions = ModelVersion.objects.select_for_update().filter(project_id=project_id, stage=stage)
    if exclude_id is not None:
        versions = versions.exclude(pk=exclude_id)
    return list(versions)


@transaction.atomic
def model_version_set_stage(*, actor: User, version: ModelVersion, stage: str) -> ModelVersion:
    """Move a version to `stage`. No gates here: evaluation.services.model_version_promote
    decides whether canary or production is allowed, then calls this."""
    if stage not in STAGES:
        raise ValidationError({"stage": f"{stage!r} is not one of {', '.join(STAGES)}."})
    version = ModelVersion.objects.select_for_update().get(pk=version.pk)
    previous = version.stage
    version.stage = stage
    version.save(update_fields=["stage"])
    audit_record(
        actor=actor,
        action="training.model_version.stage",
        target=version,
        data={"from": previous, "to": stage},
    )
    return version
