"""Reads for the serving worker: which models the deployments want served by an engine the
portal starts itself, and the engine rows it keeps."""

from dataclasses import dataclass

from django.db.models import QuerySet

from serving.models import Deployment, EngineInstance, EngineKind

LIVE = (EngineInstance.Status.STARTING, EngineInstance.Status.READY)


@dataclass(frozen=True)
class EngineTarget:
    """One model some deployment wants served: a version or a base model on an arm, or a
    classifier version its guardrails call (`classify`: served by serving.classify_server,
    not `transformers serve`)."""

    project_id: int
    model_version_id: int | None = None
    base_model_id: int | None = None
    classify: bool = False

    @property
    def key(self) -> tuple[str, int]:
        if self.model_version_id is not None:
            return ("version", self.model_version_id)
        return ("base", self.base_model_id or 0)

    def __str__(self) -> str:
        kind, pk = self.key
        return f"{kind} {pk}"


def engine_targets(*, engine: str = EngineKind.TRANSFORMERS) -> dict[tuple[str, int], EngineTarget]:
    """Every model on an arm (stable, canary, shadow) of a deployment using `engine`, and
    every guardrail classifier they call, once each, however many deployments share it."""
    targets: dict[tuple[str, int], EngineTarget] = {}
    for d in Deployment.objects.filter(engine=engine).only(
        "project_id",
        "stable_version_id",
        "stable_base_model_id",
        "canary_version_id",
        "shadow_version_id",
        "guardrails",
    ):
        classifier_id = (d.guardrails or {}).get("classifier_version_id")
        if classifier_id:
            target = EngineTarget(d.project_id, model_version_id=classifier_id, classify=True)
            targets.setdefault(target.key, target)
        for version_id in (d.stable_version_id, d.canary_version_id, d.shadow_version_id):
            if version_id is not None:
                target = EngineTarget(d.project_id, model_version_id=version_id)
                targets.setdefault(target.key, target)
        if d.stable_base_model_id is not None:
            target = EngineTarget(d.project_id, base_model_id=d.stable_base_model_id)
            targets.setdefault(target.key, target)
    return targets


def engine_instances_live(*, engine: str = EngineKind.TRANSFORMERS) -> QuerySet[EngineInstance]:
    """Engine rows that claim to be starting or serving."""
    return EngineInstance.objects.filter(engine=engine, status__in=LIVE)


def engine_list_for_project(*, project_id: int) -> QuerySet[EngineInstance]:
    """A project's engines, newest first (the deployment page lists them)."""
    return EngineInstance.objects.filter(project_id=project_id).select_related(
        "model_version", "base_model"
    )
