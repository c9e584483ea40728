"""The model registry: versions made by successful jobs.

A version is created a candidate. Its later stages (canary, production, archived) are
governance's to change, behind the gate and sign-off checks
(governance.services.stages.model_version_stage_change); nothing here moves them."""

from core.services.audit import audit_record
from training.hooks import version_created_notify
from training.models import COMPRESSION_KINDS, JobKind, ModelVersion, TrainingJob


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
    task = job.kind if job.kind in JobKind.values else JobKind.SFT
    if job.kind in COMPRESSION_KINDS and job.parent_version is not None:
        from training.services.compression import compression_figures  # it imports jobs

        metrics["compression"] = compression_figures(job)
        task = job.parent_version.task  # a compressed model does what its parent did
    version = ModelVersion.objects.create(
        project=job.project,
        name=f"{job.name} #{job.pk}",
        base_model=job.base_model,
        job=job,
        parent=job.parent_version,
        kind=result.get("kind", ModelVersion.Kind.FULL),
        task=task,
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
    version_created_notify(version)
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
