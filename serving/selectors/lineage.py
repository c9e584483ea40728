"""Serving's part of a model version's lineage, as the deployment dossier records it: the
deployments that served the version and their decisions about it (placements, weights,
steps forward, pauses, rollbacks) with the figures that drove each. Plain JSON-ready data;
the dossier reads serving only through `lineage_section`.

Unscoped: the caller (the dossier build) has scoped the model version already.
"""

from dataclasses import dataclass
from typing import Any

from django.db.models import Q

from core.json_values import json_finite, json_time
from serving.models import Arm, Deployment, DeploymentDecision
from training.models import ModelVersion

ARM_FIELDS = {
    Arm.STABLE: "stable_version_id",
    Arm.CANARY: "canary_version_id",
    Arm.SHADOW: "shadow_version_id",
}


@dataclass(frozen=True)
class ServingLineage:
    # One row per deployment that served the version, with its decisions about it.
    deployments: list[dict[str, Any]]


def _decision_row(d: DeploymentDecision) -> dict[str, Any]:
    figures = d.figures or {}
    return {
        "id": d.pk,
        "kind": d.kind,
        "kind_label": d.get_kind_display(),
        "arm": d.arm,
        "from_weight": d.from_weight,
        "to_weight": d.to_weight,
        "reason": d.reason,
        "figures": json_finite(figures),
        # What a reader needs at a glance: each arm's window and the rules that broke.
        "stable": figures.get("stable"),
        "canary": figures.get("canary"),
        "breaches": figures.get("breaches") or [],
        "actor": d.actor.get_username() if d.actor else "the portal",
        "audit_seq": d.audit_seq,
        "created_at": json_time(d.created_at),
    }


def lineage_section(*, version: ModelVersion) -> ServingLineage:
    """The deployments that hold `version` on an arm now or decided anything about it."""
    decided = DeploymentDecision.objects.filter(model_version=version).values("deployment_id")
    deployments = Deployment.objects.filter(
        Q(pk__in=decided)
        | Q(stable_version=version)
        | Q(canary_version=version)
        | Q(shadow_version=version)
    ).order_by("pk")
    rows = []
    for deployment in deployments:
        decisions = (
            DeploymentDecision.objects.filter(deployment=deployment, model_version=version)
            .select_related("actor")
            .order_by("created_at", "pk")
        )
        rows.append(
            {
                "id": deployment.pk,
                "name": deployment.name,
                "arms": [
                    arm for arm, f in ARM_FIELDS.items() if getattr(deployment, f) == version.pk
                ],
                "canary_weight": deployment.canary_weight,
                "rollout": deployment.rollout,
                "rollback_rules": deployment.rollback_rules,
                "decisions": [_decision_row(d) for d in decisions],
            }
        )
    return ServingLineage(deployments=rows)
