"""Evaluation's part of a model version's lineage, as the deployment dossier records it:
offline metrics, pairwise ratings and regression gate runs. Plain JSON-ready data; the
dossier reads evaluation only through this function.

Unscoped: the caller (the dossier build) has scoped the model version already.
"""

from dataclasses import dataclass
from typing import Any

from core.json_values import json_finite, json_time
from evaluation.models import Campaign, Contestant, GateRun, MetricRun
from evaluation.selectors import campaign_results


@dataclass(frozen=True)
class EvaluationLineage:
    # The dossier's "evaluation": contestants, offline_metrics, ratings and gates.
    evaluation: dict[str, Any]
    # Audit target type -> ids whose events belong to the dossier's audit excerpt.
    audit_targets: dict[str, list[int]]


def lineage_section(*, model_version_id: int, lineage_version_ids: list[int]) -> EvaluationLineage:
    """How the version `model_version_id` was evaluated. The audit trail also takes in the
    gate runs of the versions it came from (`lineage_version_ids`, itself included)."""
    contestants = list(Contestant.objects.filter(model_version_id=model_version_id).order_by("pk"))
    metric_runs = (
        MetricRun.objects.filter(contestant__in=contestants, status=MetricRun.Status.SUCCEEDED)
        .select_related("prompt_set", "contestant")
        .order_by("pk")
    )
    campaigns = Campaign.objects.filter(contestants__in=contestants).distinct().order_by("pk")
    ratings = []
    for campaign in campaigns:
        results = campaign_results(campaign=campaign).as_dict()
        results.pop("raters", None)  # reviewer names stay in the portal
        ratings.append(
            {
                **json_finite(results),
                "adversarial": campaign.prompt_set.adversarial,
                "status": campaign.status,
            }
        )
    gate_runs = GateRun.objects.filter(model_version_id=model_version_id).select_related("gate")
    evaluation = {
        "contestants": [{"id": c.pk, "label": c.label} for c in contestants],
        "offline_metrics": [
            {
                "id": run.pk,
                "contestant": run.contestant.label,
                "prompt_set": run.prompt_set.name,
                "kind": run.kind,
                "general": run.prompt_set.general,
                "adversarial": run.prompt_set.adversarial,
                "results": json_finite(run.results),
                "slices": json_finite(run.slices),
                "finished_at": json_time(run.finished_at),
            }
            for run in metric_runs
        ],
        "ratings": ratings,
        "gates": [
            {
                "id": run.pk,
                "gate": run.gate.name,
                "passed": run.passed,
                "results": json_finite(run.results),
                "created_at": json_time(run.created_at),
            }
            for run in gate_runs.order_by("created_at", "pk")
        ],
    }
    audited_gate_runs = GateRun.objects.filter(model_version_id__in=lineage_version_ids)
    return EvaluationLineage(
        evaluation=evaluation,
        audit_targets={
            GateRun._meta.label_lower: list(audited_gate_runs.values_list("pk", flat=True))
        },
    )
