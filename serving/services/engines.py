"""Engines: the OpenAI-compatible upstreams the gateway routes to. The serving worker
(serving/engine_supervisor.py) starts `transformers serve` for every model a deployment
places and records each one's life here (starting, ready, failed, stopped); vLLM or any
other OpenAI-compatible server is registered with its URL. Every change is audited."""

from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from core.models import Project, RoleSet, User
from core.selectors import project_access_get
from core.services.audit import audit_record
from serving.models import EngineInstance, EngineKind
from serving.selectors.engines import LIVE, EngineTarget
from training.models import BaseModel, JobKind, ModelVersion
from training.services.registry import model_version_plain_weights

Status = EngineInstance.Status
ERROR_LIMIT = 2000


def engine_model_dir(*, target: EngineTarget) -> str:
    """The folder (or hub id) an engine loads for `target`: a base model's path (the
    packaged GGUF model is registered by its safetensors conversion), a full version's
    weights, or an adapter version merged into its base once (slow the first time: call
    it from the serving worker, outside any transaction). A classifier (a reward model)
    is served from the plain weights its job saved."""
    if target.model_version_id is not None:
        version = ModelVersion.objects.select_related("base_model", "parent").get(
            pk=target.model_version_id
        )
        if version.task == JobKind.REWARD:
            return reward_model_plain_weights(version=version)
        return model_version_plain_weights(version=version)
    return BaseModel.objects.get(pk=target.base_model_id or 0).path


def reward_model_plain_weights(*, version: ModelVersion) -> str:
    """The folder a reward model version's score head and weights load from: its full
    weights, or the merged copy its (LoRA) job saved. ValueError when it has neither."""
    full = version.path if version.kind != ModelVersion.Kind.ADAPTER else ""
    for folder in (version.merged_path, full):
        if folder and (Path(folder) / "config.json").exists():
            return folder
    raise ValueError(f"{version} has no plain weights to classify with.")


def _audit(
    instance: EngineInstance, action: str, actor: User | None = None, **data: object
) -> None:
    audit_record(
        actor=actor,
        action=f"serving.engine.{action}",
        target=instance,
        data={
            "engine": instance.engine,
            "model_version": instance.model_version_id,
            "base_model": instance.base_model_id,
            **data,
        },
        project_id=instance.project_id,
    )


@transaction.atomic
def engine_start_record(*, target: EngineTarget, model_dir: str, worker: str) -> EngineInstance:
    """A new engine row, STARTING, for a `transformers serve` process the worker is about
    to start. One row per process: a restarted engine is a new row, the failed one stays."""
    instance = EngineInstance.objects.create(
        project_id=target.project_id,
        engine=EngineKind.TRANSFORMERS,
        model_version_id=target.model_version_id,
        base_model_id=target.base_model_id,
        model_dir=model_dir,
        worker=worker,
        status=Status.STARTING,
    )
    _audit(
        instance, "start", worker=worker, model_dir=Path(model_dir).name, classify=target.classify
    )
    return instance


def _locked(instance_id: int) -> EngineInstance:
    return EngineInstance.objects.select_for_update().get(pk=instance_id)


@transaction.atomic
def engine_mark_ready(
    *, instance_id: int, base_url: str, served_model: str, pid: int | None
) -> EngineInstance:
    """The engine answered its health check: the gateway may route to it."""
    instance = _locked(instance_id)
    instance.status = Status.READY
    instance.base_url = base_url
    instance.served_model = served_model
    instance.pid = pid
    instance.healthy_at = timezone.now()
    instance.error = ""
    instance.save()
    _audit(instance, "ready", base_url=base_url, pid=pid)
    return instance


@transaction.atomic
def engine_mark_failed(*, instance_id: int, error: str) -> EngineInstance:
    """The engine died or stopped answering; the gateway stops routing to it at once."""
    instance = _locked(instance_id)
    instance.status = Status.FAILED
    instance.error = error[-ERROR_LIMIT:]
    instance.save(update_fields=["status", "error", "updated_at"])
    _audit(instance, "failed", error=instance.error[-500:])
    return instance


@transaction.atomic
def engine_mark_stopped(
    *, instance_id: int, reason: str, actor: User | None = None
) -> EngineInstance:
    instance = _locked(instance_id)
    if instance.status in LIVE:
        instance.status = Status.STOPPED
        instance.error = reason[-ERROR_LIMIT:]
        instance.save(update_fields=["status", "error", "updated_at"])
        _audit(instance, "stopped", actor=actor, reason=reason)
    return instance


def engine_stop_orphans(*, worker_prefix: str, reason: str) -> int:
    """Mark stopped the `transformers serve` rows a previous run of this worker left as
    starting or ready (its processes died with it). Returns how many."""
    ids = EngineInstance.objects.filter(
        engine=EngineKind.TRANSFORMERS, status__in=LIVE, worker__startswith=worker_prefix
    ).values_list("pk", flat=True)
    for instance_id in list(ids):
        engine_mark_stopped(instance_id=instance_id, reason=reason)
    return len(ids)


def _clean_base_url(base_url: str) -> str:
    url = (base_url or "").strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValidationError({"base_url": "An http(s) URL, such as http://vllm:8000/v1."})
    if not url.endswith("/v1"):
        raise ValidationError({"base_url": "The OpenAI-compatible root, ending in /v1."})
    return url


@transaction.atomic
def engine_register_external(
    *,
    actor: User,
    project: Project,
    base_url: str,
    served_model: str,
    engine: str = EngineKind.VLLM,
    model_version: ModelVersion | None = None,
    base_model: BaseModel | None = None,
) -> EngineInstance:
    """Route a version (or base model) of `project` to an OpenAI-compatible server the
    portal does not start itself: `vllm serve` (a LoRA version as `--lora-modules
    NAME=PATH`, served as NAME) or any other URL. Deployments whose engine is `engine`
    send its arms there; an earlier registration of the same model and engine is stopped.
    """
    project_access_get(project_id=project.pk, user=actor).require(*RoleSet.MANAGERS)
    if engine not in (EngineKind.VLLM, EngineKind.EXTERNAL):
        raise ValidationError(
            {"engine": "vllm or external: the serving worker starts transformers engines."}
        )
    if (model_version is None) == (base_model is None):
        raise ValidationError({"model": "Give either a model version or a base model."})
    if model_version is not None and model_version.project_id != project.pk:
        raise ValidationError({"model_version": "That version belongs to another project."})
    if base_model is not None and base_model.project_id not in (None, project.pk):
        raise ValidationError({"base_model": "That base model belongs to another project."})
    served_model = (served_model or "").strip()
    if not served_model or len(served_model) > 500:
        raise ValidationError({"served_model": "The model name the server knows (1–500)."})
    url = _clean_base_url(base_url)
    earlier = EngineInstance.objects.select_for_update().filter(
        engine=engine, status__in=LIVE, model_version=model_version, base_model=base_model
    )
    for old in earlier:
        engine_mark_stopped(instance_id=old.pk, reason="Replaced by a new registration.")
    instance = EngineInstance.objects.create(
        project=project,
        engine=engine,
        model_version=model_version,
        base_model=base_model,
        base_url=url,
        served_model=served_model,
        status=Status.READY,
        healthy_at=timezone.now(),
    )
    _audit(instance, "register", actor=actor, base_url=url, served_model=served_model)
    return instance


@transaction.atomic
def engine_unregister(*, actor: User, instance: EngineInstance) -> EngineInstance:
    """Stop routing to a registered vLLM or external engine."""
    project_access_get(project_id=instance.project_id, user=actor).require(*RoleSet.MANAGERS)
    if instance.engine == EngineKind.TRANSFORMERS:
        raise ValidationError(
            {"engine": "The serving worker stops its own engines when no deployment uses them."}
        )
    return engine_mark_stopped(instance_id=instance.pk, reason="Unregistered.", actor=actor)
