"""The model registry: versions made by successful jobs.

A version is created a candidate. Its later stages (canary, production, archived) are
governance's to change, behind the gate and sign-off checks
(governance.services.stages.model_version_stage_change); nothing here moves them."""

from pathlib import Path

from django.conf import settings
from django.db import transaction

from core.services.audit import audit_record
from training.hooks import version_created_notify
from training.models import COMPRESSION_KINDS, JobKind, ModelVersion, TrainingJob
from training.services.base_models import runner_call


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


def merged_cache_dir() -> Path:
    """Where adapters merged into their base live, one folder per version (versions never
    change, so a folder once complete is reused for good)."""
    return Path(settings.MEDIA_ROOT) / "merged"


def _adapter_chain(version: ModelVersion) -> tuple[str, list[str]]:
    """The weights an adapter version was trained on and the adapters to fold into them,
    oldest first: a version trained on top of an adapter carries its parent's too."""
    adapters: list[str] = []
    current: ModelVersion | None = version
    while current is not None and current.kind == ModelVersion.Kind.ADAPTER:
        adapters.insert(0, current.path)
        current = current.parent
    base = current.path if current is not None else version.base_model.path
    return base, adapters


def model_version_plain_weights(*, version: ModelVersion) -> str:
    """A folder of plain weights for `version`, for engines that load one folder: its own
    for full weights; for an adapter, the adapter merged into its base (peft), merged once
    in a runner child process and recorded as the version's `merged_path`.

    Slow the first time (a model load and save): call it from a worker, never a web
    request, and outside any transaction."""
    if version.kind != ModelVersion.Kind.ADAPTER:
        return version.path
    if version.merged_path and (Path(version.merged_path) / "config.json").exists():
        return version.merged_path
    base, adapters = _adapter_chain(version)
    out_dir = merged_cache_dir() / f"version-{version.pk}"
    merged = runner_call("merge-adapters", str(out_dir), base, *adapters)["path"]
    return model_version_merged_record(version_id=version.pk, merged_path=merged)


@transaction.atomic
def model_version_merged_record(*, version_id: int, merged_path: str) -> str:
    version = model_version_lock(version_id=version_id)
    if version.merged_path != merged_path:
        version.merged_path = merged_path
        version.save(update_fields=["merged_path"])
        audit_record(
            actor=None,
            action="training.model_version.merge",
            target=version,
            data={
                "merged_path": Path(merged_path).name,
                "adapters": len(_adapter_chain(version)[1]),
            },
        )
    return merged_path
