"""Compression jobs on a registered version: merge (an adapter into its base), quantize
(torchao int8 on a CPU; bitsandbytes 4/8-bit on a GPU) and distill (a student trained on a
teacher version's answers). Each is a TrainingJob of a compression kind whose
`parent_version` is the version compressed (the teacher, for distill); the worker runs it
as any job (services.execution, ml/compress.py) and the registry makes the child version.

The child's quality gate against its parent belongs to evaluation, which hears of the new
version through training.hooks; its result comes back through
`model_version_compression_gate_record`."""

import hashlib
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from core.models import User
from core.services.audit import audit_record
from training import presets, tasks
from training.models import (
    COMPRESSION_KINDS,
    BaseModel,
    JobKind,
    JobMethod,
    ModelVersion,
    TrainingJob,
)
from training.services.jobs import _data_from_file, job_push

QUANTIZATIONS = ("int8_weight_only", "bnb_int8", "bnb_nf4")
GPU_QUANTIZATIONS = ("bnb_int8", "bnb_nf4")
DISTILL_METHODS = ("sequence", "gkd")
GATE_METRICS = ("token_f1", "exact_match")
DEFAULT_TOLERANCE = 0.05
DEFAULT_ALPHA = 0.05


def _gpu_available() -> bool:
    from training.services.execution import gpu_count  # execution imports the registry

    return gpu_count() > 0


def _gate_settings(tolerance: float, alpha: float, metric: str) -> dict[str, Any]:
    errors = {}
    if not 0 <= tolerance <= 1:
        errors["gate_tolerance"] = "must be between 0 and 1 (a drop in the metric's units)."
    if not 0 < alpha < 1:
        errors["gate_alpha"] = "must be between 0 and 1."
    if metric not in GATE_METRICS:
        errors["gate_metric"] = f"must be one of {', '.join(GATE_METRICS)}."
    if errors:
        raise ValidationError(errors)
    return {"gate_tolerance": tolerance, "gate_alpha": alpha, "gate_metric": metric}


@transaction.atomic
def compression_job_create(
    *,
    actor: User,
    version: ModelVersion,
    kind: str,
    name: str = "",
    quantization: str = "int8_weight_only",
    student_base: BaseModel | None = None,
    method: str = JobMethod.LORA,
    distill_method: str = "sequence",
    prompts_file: str | None = None,
    values: dict[str, Any] | None = None,
    gate_tolerance: float = DEFAULT_TOLERANCE,
    gate_alpha: float = DEFAULT_ALPHA,
    gate_metric: str = "token_f1",
) -> TrainingJob:
    """Queue a compression of `version` (the caller checked the actor may launch jobs in its
    project). Every problem is reported together, per field. For distill, `prompts_file` is
    a stored JSONL upload of prompts (`prompt` or `messages` rows) the teacher answers and
    the student (`student_base`, by default the teacher's base) learns from; `values` are
    the student's SFT settings (presets)."""
    errors: dict[str, list[str]] = {}

    def refuse(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    if kind not in COMPRESSION_KINDS:
        refuse("kind", f"must be one of {', '.join(COMPRESSION_KINDS)}.")
    if version.task == JobKind.REWARD:
        refuse("version", "A reward model is a scorer; compress a generator version.")
    try:
        gate = _gate_settings(float(gate_tolerance), float(gate_alpha), gate_metric)
    except ValidationError as error:
        gate = {}
        for field, messages in error.message_dict.items():
            errors.setdefault(field, []).extend(messages)
    config: dict[str, Any] = {"kind": kind, "method": JobMethod.FULL, "seed": 0, **gate}
    base = version.base_model
    data: dict[str, Any] = {}
    manifest = ""
    if kind == JobKind.MERGE and version.kind != ModelVersion.Kind.ADAPTER:
        refuse("version", f"{version.name} holds full weights: only an adapter can be merged.")
    if kind == JobKind.QUANTIZE:
        if quantization not in QUANTIZATIONS:
            refuse("quantization", f"must be one of {', '.join(QUANTIZATIONS)}.")
        elif quantization in GPU_QUANTIZATIONS and not _gpu_available():
            refuse(
                "quantization",
                f"{quantization} (bitsandbytes) quantizes on a GPU only and this server's "
                "workers have none; choose int8_weight_only (torchao, runs on a CPU).",
            )
        config["quantization"] = quantization
    if kind == JobKind.DISTILL:
        base = student_base or version.base_model
        if base.project_id not in (None, version.project_id):
            refuse("student_base", "That base model belongs to another project.")
        if distill_method not in DISTILL_METHODS:
            refuse("distill_method", f"must be one of {', '.join(DISTILL_METHODS)}.")
        teacher_vocab = version.base_model.info.get("vocab_size")
        if distill_method == "gkd" and base.info.get("vocab_size") != teacher_vocab:
            refuse(
                "student_base",
                "GKD compares token distributions: student and teacher "
                "need the same vocabulary (use sequence-level distillation).",
            )
        if method not in (JobMethod.FULL, JobMethod.LORA):
            refuse("method", "The student trains fully or with LoRA.")
        student_values = {k: v for k, v in (values or {}).items() if k != "max_new_tokens"}
        try:
            config = {
                **presets.check_config(
                    kind=JobKind.SFT, method=method, values=student_values, info=base.info
                ),
                **gate,
                "kind": kind,
                "distill_method": distill_method,
                "distill_max_new_tokens": int((values or {}).get("max_new_tokens") or 64),
            }
        except presets.ConfigError as error:
            for field, message in error.errors.items():
                refuse(field, message)
        try:
            prompts = _data_from_file(prompts_file, "prompts_file")
        except ValidationError as error:
            prompts = None
            for field, messages in error.message_dict.items():
                errors.setdefault(field, []).extend(messages)
        if prompts is None and not errors.get("prompts_file"):
            refuse("prompts_file", "Distillation needs a file of prompts for the teacher.")
        if prompts is not None:
            data["train"] = prompts
            manifest = hashlib.sha256(prompts["sha256"].encode()).hexdigest()
    if errors:
        raise ValidationError(errors)
    job = TrainingJob.objects.create(
        project=version.project,
        name=name.strip() or f"{version.name} {kind}",
        kind=kind,
        method=config["method"],
        base_model=base,
        parent_version=version,
        manifest_sha256=manifest,
        data=data,
        config=config,
        seed=int(config.get("seed") or 0),
        created_by=actor,
    )
    audit_record(
        actor=actor,
        action="training.compression.create",
        target=job,
        data={"kind": kind, "version": version.pk, "base_model": base.pk, "config": config},
    )
    transaction.on_commit(lambda: tasks.training_job_run_task.delay(job.pk))
    transaction.on_commit(lambda: job_push(job, "training.job"))
    return job


def cost_per_million_tokens(tokens_per_second: float | None) -> float | None:
    """What a million generated tokens cost at COMPRESSION_PRICE_PER_HOUR, at the measured
    speed (one request at a time, so an upper bound for a batching server)."""
    if not tokens_per_second:
        return None
    return settings.COMPRESSION_PRICE_PER_HOUR / 3600 / tokens_per_second * 1e6


def compression_figures(job: TrainingJob) -> dict[str, Any]:
    """The child's compression record from its job's result: what was done, the parent's
    and the child's measurements with their cost, and the ratios child / parent."""
    measured = job.result.get("measurements") or {}
    sides: dict[str, dict[str, Any]] = {}
    for side in ("parent", "child"):
        figures = dict(measured.get(side) or {})
        figures["cost_per_million_tokens"] = cost_per_million_tokens(
            figures.get("tokens_per_second")
        )
        sides[side] = figures
    ratios = {}
    for key in ("size_bytes", "peak_memory_bytes", "tokens_per_second", "latency_seconds"):
        parent, child = sides["parent"].get(key), sides["child"].get(key)
        ratios[key] = child / parent if parent and child is not None else None
    return {
        "kind": job.kind,
        "parent": job.parent_version_id,
        "settings": {
            k: job.config.get(k)
            for k in ("quantization", "distill_method", "gate_tolerance", "gate_alpha")
            if job.config.get(k) is not None
        },
        **sides,
        "ratios": ratios,
        "price": {
            "per_hour": settings.COMPRESSION_PRICE_PER_HOUR,
            "unit": settings.COMPRESSION_PRICE_UNIT,
        },
    }


@transaction.atomic
def model_version_compression_gate_record(*, version_id: int, gate: dict[str, Any]) -> ModelVersion:
    """Store the result of a compressed child's quality gate against its parent (written by
    evaluation's automatic compression evaluation)."""
    version = ModelVersion.objects.select_for_update().get(pk=version_id)
    version.metrics = {**version.metrics, "compression_gate": gate}
    version.save(update_fields=["metrics"])
    audit_record(
        actor=None,
        action="training.model_version.compression_gate",
        target=version,
        data={k: gate.get(k) for k in ("status", "passed", "drop", "tolerance", "interval")},
    )
    return version
