"""Training's part of a model version's lineage, as the deployment dossier records it: the
version, the versions, jobs and base models it came from, with hashes, configurations and
loss curves. Plain JSON-ready data; the dossier reads training only through `lineage_section`.
"""

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from core.json_values import json_finite, json_time
from training.models import BaseModel, ModelVersion, Sweep, TrainingJob, TrainingMetric
from training.presets import relevant_settings
from training.selectors import model_version_lineage_in_training
from training.selectors.sweeps import sweep_lineage_row


@dataclass(frozen=True)
class TrainingLineage:
    """Training's part of a version's lineage as the deployment dossier records it, as
    plain JSON-ready rows; the dossier reads training only through `lineage_section`."""

    version: dict[str, Any]  # the version itself, as the caller passed it
    versions: list[dict[str, Any]]  # it and every version it came from, in id order
    jobs: list[dict[str, Any]]
    base_models: list[dict[str, Any]]
    # Edges among versions, jobs, base models and snapshots; the snapshots' sources are
    # annotation's part.
    edges: list[tuple[str, str, str]]
    version_ids: list[int]
    snapshot_ids: list[int]
    # Audit target type -> ids whose events belong to the dossier's audit excerpt.
    audit_targets: dict[str, list[int]]


def _version_row(v: ModelVersion) -> dict[str, Any]:
    row = {
        "id": v.pk,
        "name": v.name,
        "kind": str(v.kind),
        "task": str(v.task),
        "stage": str(v.stage),
        "base_model": v.base_model_id,
        "parent": v.parent_id,
        "job": v.job_id,
        "base_weights_sha256": v.base_weights_sha256,
        "checkpoint_sha256": dict(sorted(v.checkpoint_sha256.items())),
        "metrics": json_finite(v.metrics),
        "created_at": json_time(v.created_at),
    }
    # A compressed child (merge, quantize, distill): its and its parent's size, memory, speed
    # and cost, and its quality gate against the parent (both also in `metrics`). Only such
    # a child carries the keys, so every other version's row keeps its recorded shape.
    for key in ("compression", "compression_gate"):
        if key in v.metrics:
            row[key] = json_finite(v.metrics[key])
    return row


def _job_row(job: TrainingJob) -> dict[str, Any]:
    curves: dict[str, list[list[float]]] = defaultdict(list)
    for step, values in TrainingMetric.objects.filter(job=job).values_list("step", "values"):
        for name, value in sorted((values or {}).items()):
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            if numeric and math.isfinite(value):
                curves[name].append([step, value])
    return {
        "id": job.pk,
        "name": job.name,
        "kind": str(job.kind),
        "method": str(job.method),
        "status": str(job.status),
        "base_model": job.base_model_id,
        "parent_version": job.parent_version_id,
        "reward_version": job.reward_version_id,
        "snapshot": job.snapshot_id,
        "manifest_sha256": job.manifest_sha256,
        "data": json_finite(job.data),
        "config": json_finite(job.config),
        # What the report and training/config.yaml show: the settings this kind and method
        # read. `config` above keeps the job's full stored record.
        "settings": json_finite(
            dict(sorted(relevant_settings(job.config, kind=job.kind, method=job.method).items()))
        ),
        "seed": job.seed,
        "environment": json_finite(job.environment),
        "checkpoint_sha256": dict(sorted(job.checkpoint_sha256.items())),
        "result": json_finite(job.result),
        "curves": dict(sorted(curves.items())),
        "created_at": json_time(job.created_at),
        "finished_at": json_time(job.finished_at),
    }


def _with_launch(row: dict[str, Any], job: TrainingJob) -> dict[str, Any]:
    """How the job ran across processes, with the accelerate / DeepSpeed files it wrote;
    only jobs that recorded it carry the key (the dossier reads a missing one as a single
    process), so earlier jobs' rows keep their shape."""
    launch = job.config.get("launch")
    return {**row, "launch": json_finite(launch)} if launch else row


def _with_sweep(row: dict[str, Any], job: TrainingJob) -> dict[str, Any]:
    """A sweep's trial carries the sweep that chose its settings: its search space, sampler,
    pruner and every trial's outcome."""
    sweep = sweep_lineage_row(job=job)
    return {**row, "sweep": json_finite(sweep)} if sweep is not None else row


def lineage_section(*, version: ModelVersion) -> TrainingLineage:
    """The version, the versions, jobs and base models it came from, with their hashes,
    configurations and loss curves. Unscoped: the caller has scoped `version`."""
    lineage = model_version_lineage_in_training(version=version)
    jobs = [_with_sweep(_with_launch(_job_row(j), j), j) for j in lineage.jobs]
    audit_targets = {
        ModelVersion._meta.label_lower: [v.pk for v in lineage.versions],
        TrainingJob._meta.label_lower: [j.pk for j in lineage.jobs],
        BaseModel._meta.label_lower: [b.pk for b in lineage.base_models],
    }
    sweep_ids = sorted({j["sweep"]["id"] for j in jobs if "sweep" in j})
    if sweep_ids:  # the sweep's create, prunes and registration belong to the audit excerpt
        audit_targets[Sweep._meta.label_lower] = sweep_ids
    return TrainingLineage(
        version=_version_row(version),
        versions=[_version_row(v) for v in lineage.versions],
        jobs=jobs,
        base_models=[
            {
                "id": b.pk,
                "name": b.name,
                "source": b.source,
                "architecture": b.architecture,
                "parameter_count": b.parameter_count,
                "license": b.license,
                "weights_sha256": b.weights_sha256,
            }
            for b in lineage.base_models
        ],
        edges=lineage.edges,
        version_ids=[v.pk for v in lineage.versions],
        snapshot_ids=[s.pk for s in lineage.snapshots],
        audit_targets=audit_targets,
    )
