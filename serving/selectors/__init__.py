"""Reads of the serving app: deployments for pages and the API (scoped by project), and the
routing snapshot the gateway serves from."""

from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q, QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone

from core.models import Project
from core.selectors import api_key_hash
from serving.models import Arm, Deployment, DeploymentDecision, DeploymentKey, EngineInstance


def deployment_list_for_project(*, project: Project) -> QuerySet[Deployment]:
    return Deployment.objects.filter(project=project).select_related(
        "stable_version", "stable_base_model", "canary_version", "shadow_version"
    )


def deployment_get(*, project: Project, deployment_id: int | str) -> Deployment:
    """Scoped by project: a guessed id of another project's deployment is a 404."""
    return get_object_or_404(deployment_list_for_project(project=project), pk=deployment_id)


def deployment_key_list(*, deployment: Deployment) -> QuerySet[DeploymentKey]:
    return DeploymentKey.objects.filter(deployment=deployment)


def deployment_key_get(*, deployment: Deployment, key_id: int | str) -> DeploymentKey:
    return get_object_or_404(deployment_key_list(deployment=deployment), pk=key_id)


def deployment_decisions(*, deployment: Deployment) -> QuerySet[DeploymentDecision]:
    return deployment.decisions.select_related("model_version", "actor")


@dataclass(frozen=True)
class Upstream:
    """Where one arm's requests go."""

    arm: str
    model_version_id: int | None
    base_url: str  # ends in /v1
    served_model: str


@dataclass(frozen=True)
class Route:
    """One deployment as the gateway sees it. Arms without a ready engine are None."""

    deployment_id: int
    project_id: int
    name: str
    stable: Upstream | None
    canary: Upstream | None
    canary_weight: int
    shadow: Upstream | None
    guardrails: dict[str, Any]
    logging_policy: str
    logging_sample_percent: int
    retention_days: int
    price_per_1k_tokens: float
    price_per_gpu_hour: float
    created_at: int = 0  # unix time, as /v1/models shows it
    # The guardrail classifier's engine (vLLM's /classify API), when one is set and ready.
    classifier: Upstream | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GatewayKey:
    key_id: int
    deployment_id: int
    requests_per_minute: int
    tokens_per_minute: int


def _ready_engines(engine: str) -> dict[tuple[str, int], EngineInstance]:
    ready = EngineInstance.objects.filter(engine=engine, status=EngineInstance.Status.READY)
    found: dict[tuple[str, int], EngineInstance] = {}
    # Oldest first, so the newest ready instance of a model wins.
    for instance in ready.order_by("created_at", "id"):
        if instance.model_version_id:
            found[("version", instance.model_version_id)] = instance
        elif instance.base_model_id:
            found[("base", instance.base_model_id)] = instance
    return found


def routing_table() -> dict[str, Route]:
    """Every deployment by name with its arms resolved to ready upstreams. The gateway
    holds this for a second or two: weights and keys change within that."""
    routes: dict[str, Route] = {}
    engines: dict[str, dict[tuple[str, int], EngineInstance]] = {}
    for d in Deployment.objects.all():
        ready = engines.setdefault(d.engine, _ready_engines(d.engine))

        def upstream(arm: str, version_id: int | None, base_id: int | None) -> Upstream | None:
            key = ("version", version_id) if version_id else ("base", base_id or 0)
            instance = ready.get(key)  # noqa: B023 (called within this iteration)
            if instance is None:
                return None
            return Upstream(arm, version_id, instance.base_url.rstrip("/"), instance.served_model)

        routes[d.name] = Route(
            deployment_id=d.pk,
            project_id=d.project_id,
            name=d.name,
            stable=upstream(Arm.STABLE, d.stable_version_id, d.stable_base_model_id),
            canary=(
                upstream(Arm.CANARY, d.canary_version_id, None) if d.canary_version_id else None
            ),
            canary_weight=d.canary_weight if d.canary_version_id else 0,
            shadow=(
                upstream(Arm.SHADOW, d.shadow_version_id, None) if d.shadow_version_id else None
            ),
            guardrails=d.guardrails or {},
            logging_policy=d.logging_policy,
            logging_sample_percent=d.logging_sample_percent,
            retention_days=d.retention_days,
            price_per_1k_tokens=float(d.price_per_1k_tokens),
            price_per_gpu_hour=float(d.price_per_gpu_hour),
            created_at=int(d.created_at.timestamp()),
            classifier=(
                upstream("classifier", classifier_id, None)
                if (classifier_id := (d.guardrails or {}).get("classifier_version_id"))
                else None
            ),
        )
    return routes


def gateway_key_get(*, raw: str) -> GatewayKey | None:
    """The live key with this secret, or None (unknown, revoked or expired)."""
    now = timezone.now()
    key = (
        DeploymentKey.objects.filter(key_hash=api_key_hash(raw), revoked_at__isnull=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .first()
    )
    if key is None:
        return None
    return GatewayKey(key.pk, key.deployment_id, key.requests_per_minute, key.tokens_per_minute)


__all__ = [
    "Arm",
    "GatewayKey",
    "Route",
    "Upstream",
    "deployment_decisions",
    "deployment_get",
    "deployment_key_get",
    "deployment_key_list",
    "deployment_list_for_project",
    "gateway_key_get",
    "routing_table",
]
