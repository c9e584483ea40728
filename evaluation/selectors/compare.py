"""Model versions side by side: their pairwise ratings (with intervals) in every campaign that
rated at least one of them, and their offline metrics by prompt set. The evaluation half of
the run comparison; training.selectors.compare holds the training half."""

from dataclasses import dataclass
from typing import Any

from core.models import Project
from evaluation.models import Campaign, Contestant, MetricRun
from evaluation.selectors import campaign_results
from training.models import ModelVersion
from training.selectors import model_version_list_for_project
from training.selectors.compare import MAX_COMPARED, CompareRow, compare_row


@dataclass(frozen=True)
class CampaignRatings:
    campaign: Campaign
    # One (version name, rating, low, high) per compared version the campaign rated; the
    # interval is the bootstrap's where it ran, else the sandwich estimate.
    rows: list[tuple[str, float, float, float]]
    cells: list[str]  # per compared version, in order: "1012.3 [990.1, 1034.5]" or "—"


@dataclass(frozen=True)
class VersionComparison:
    versions: list[ModelVersion]
    ratings: list[CampaignRatings]
    metrics: list[CompareRow]


def _numbers(results: dict[str, Any]) -> dict[str, float]:
    """An offline run's scores, per-label ones named "precision (label)"; counts and lists
    (support, confusion matrix) are not compared."""
    out: dict[str, float] = {}
    for name, value in results.items():
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for label, v in items:
            if isinstance(v, float):
                out[name if label is None else f"{name} ({label})"] = v
    return out


def version_comparison(*, project: Project, version_ids: list[int]) -> VersionComparison:
    by_id = {
        v.pk: v
        for v in model_version_list_for_project(project=project).filter(
            pk__in=version_ids[:MAX_COMPARED]
        )
    }
    versions = [by_id[pk] for pk in version_ids if pk in by_id]
    contestants = Contestant.objects.filter(project=project, model_version__in=versions)
    version_of = {c.pk: c.model_version_id for c in contestants if c.model_version_id}

    ratings = []
    campaigns = Campaign.objects.filter(project=project, contestants__in=contestants)
    for campaign in campaigns.distinct().select_related("prompt_set").order_by("pk"):
        found: dict[int, tuple[float, float, float]] = {}
        for row in campaign_results(campaign=campaign).rows:
            version_id = version_of.get(row.contestant_id)
            if version_id is None or version_id in found:
                continue
            low = row.boot_lower if row.boot_lower is not None else row.lower
            high = row.boot_upper if row.boot_upper is not None else row.upper
            found[version_id] = (row.rating, low, high)
        ratings.append(
            CampaignRatings(
                campaign=campaign,
                rows=[(v.name, *found[v.pk]) for v in versions if v.pk in found],
                cells=[
                    f"{found[v.pk][0]:.1f} [{found[v.pk][1]:.1f}, {found[v.pk][2]:.1f}]"
                    if v.pk in found
                    else "—"
                    for v in versions
                ],
            )
        )

    # The newest finished run of each kind on each prompt set stands for the version.
    scores: dict[str, dict[int, float]] = {}
    runs = (
        MetricRun.objects.filter(
            project=project, contestant__in=contestants, status=MetricRun.Status.SUCCEEDED
        )
        .select_related("prompt_set")
        .order_by("pk")
    )
    for run in runs:
        version_id = version_of.get(run.contestant_id)
        if version_id is None:
            continue
        for name, value in _numbers(run.results or {}).items():
            scores.setdefault(f"{run.prompt_set.name} · {name}", {})[version_id] = value
    metrics = [
        compare_row(name, [by_version.get(v.pk) for v in versions])
        for name, by_version in sorted(scores.items())
    ]
    return VersionComparison(versions=versions, ratings=ratings, metrics=metrics)
