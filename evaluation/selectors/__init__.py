"""Reads for prompt sets, campaigns, blind review and results.

Two audiences, two kinds of return value: reviewers get `BlindPair`, a dataclass that holds
nothing that could name a contestant (no ids, no labels, no battle id: only the judgment's
random token), so no template or serializer can leak identity; engineers and compliance get
`CampaignResults` with contestants by label.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from django.db.models import Count, FloatField, Q, QuerySet, Sum
from django.db.models.fields.json import KT
from django.db.models.functions import Cast
from django.http import Http404

from annotation import conversations
from core import time_spent
from core.models import Project, User
from evaluation import ratings as R
from evaluation.models import (
    Battle,
    Campaign,
    CampaignRater,
    Contestant,
    Gate,
    GateRun,
    GenerationJob,
    Judgment,
    MetricRun,
    PromptSet,
    RatingsBootstrap,
)
from training.models import BaseModel, ModelVersion

# --- reviewers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Criterion:
    key: str
    label: str
    scale: int

    @property
    def points(self) -> range:
        return range(1, self.scale + 1)


@dataclass(frozen=True)
class BlindPair:
    """What a reviewer may see of one judgment. Nothing here identifies a contestant."""

    token: str
    prompt: str  # the prompt as text (a conversation's turns as "Role: content")
    # A conversational prompt's turns, as the page shows them; None for a plain-text prompt.
    turns: list[dict[str, str]] | None
    response_a: str
    response_b: str
    question: str
    criteria: list[Criterion]
    adversarial: bool
    # Each side cut at the token limit is marked alike, whichever model wrote it.
    truncated_a: bool = False
    truncated_b: bool = False
    notice: str = ""


@dataclass(frozen=True)
class ReviewProgress:
    done: int
    quota: int  # 0: no limit
    # The most this reviewer can judge here: done plus what is still open to them, capped
    # by the quota; the page's denominator ("12 of 40").
    total: int = 0


def _criteria(campaign: Campaign) -> list[Criterion]:
    return [
        Criterion(key=c["key"], label=c.get("label") or c["key"], scale=int(c.get("scale", 5)))
        for c in campaign.criteria
    ]


def blind_pair_from_judgment(*, judgment: Judgment, campaign: Campaign) -> BlindPair:
    """Caller has checked that `judgment` is the requesting reviewer's own."""
    battle = judgment.battle
    left, right = (
        (battle.text_x, battle.text_y) if judgment.left_is_x else (battle.text_y, battle.text_x)
    )
    cut = (battle.truncated_x, battle.truncated_y)
    return BlindPair(
        token=judgment.token,
        prompt=conversations.prompt_text(battle.prompt.text),
        turns=conversations.display_turns(battle.prompt.text),
        response_a=left,
        response_b=right,
        question=campaign.question,
        criteria=_criteria(campaign),
        adversarial=campaign.prompt_set.adversarial,
        truncated_a=cut[0] if judgment.left_is_x else cut[1],
        truncated_b=cut[1] if judgment.left_is_x else cut[0],
        notice=rater_notice(campaign=campaign, reviewer_id=judgment.reviewer_id),
    )


def rater_notice(*, campaign: Campaign, reviewer_id: int) -> str:
    """What a reviewer is told about their attention checks: that the verdict they just
    gave missed one, and, while they are flagged, that their verdicts are set aside."""
    lines = []
    last = (
        Judgment.objects.filter(campaign=campaign, reviewer_id=reviewer_id)
        .exclude(submitted_at=None)
        .order_by("-submitted_at", "-pk")
        .values_list("is_attention", "attention_passed")
        .first()
    )
    if last is not None and last[0] and last[1] is False:
        lines.append(
            "The last pair was an attention check: one response answered a different "
            "prompt, and your verdict did not pick the other one. Please read each prompt "
            "and both responses in full."
        )
    rater = CampaignRater.objects.filter(
        campaign=campaign, reviewer_id=reviewer_id, flagged=True
    ).first()
    if rater is not None:
        consequence = (
            "your verdicts are set aside from its results until an engineer reviews them"
            if campaign.exclude_flagged
            else "an engineer will review your verdicts"
        )
        lines.append(
            f"You have missed {rater.attention_failed} of {rater.attention_checks} attention "
            f"checks in this campaign, so {consequence}."
        )
    return " ".join(lines)


def review_progress(*, campaign: Campaign, reviewer: User) -> ReviewProgress:
    mine = Judgment.objects.filter(campaign=campaign, reviewer=reviewer, is_attention=False)
    done = mine.filter(submitted_at__isnull=False).count()
    # Open to them: the pair on their screen, and every real battle that still wants raters
    # and that they have not been shown (the claim's own rule).
    showing = mine.filter(submitted_at__isnull=True).count()
    unseen = (
        campaign.battles.filter(kind=Battle.Kind.REAL, assigned__lt=campaign.raters_per_pair)
        .exclude(judgments__reviewer=reviewer)
        .count()
    )
    total = done + showing + unseen
    if campaign.rater_quota:
        total = min(total, campaign.rater_quota)
    return ReviewProgress(done=done, quota=campaign.rater_quota, total=total)


@dataclass(frozen=True)
class ReviewCampaign:
    id: int
    name: str
    question: str
    done: int
    quota: int


def review_campaign_list(*, project: Project, reviewer: User) -> list[ReviewCampaign]:
    campaigns = Campaign.objects.filter(project=project, status=Campaign.Status.OPEN).annotate(
        done=Count(
            "judgments",
            filter=Q(
                judgments__reviewer=reviewer,
                judgments__submitted_at__isnull=False,
                judgments__is_attention=False,
            ),
        )
    )
    return [ReviewCampaign(c.pk, c.name, c.question, c.done, c.rater_quota) for c in campaigns]


# --- results ---------------------------------------------------------------------------------


def campaign_get(*, project: Project, campaign_id: int | str) -> Campaign:
    """A campaign of this project; Campaign.DoesNotExist for ids of other projects."""
    return Campaign.objects.select_related("prompt_set").get(project=project, pk=int(campaign_id))


def excluded_reviewer_ids(*, campaign: Campaign) -> list[int]:
    raters = CampaignRater.objects.filter(campaign=campaign)
    if campaign.exclude_flagged:
        raters = raters.filter(Q(excluded=True) | Q(flagged=True))
    else:
        raters = raters.filter(excluded=True)
    return list(raters.values_list("reviewer_id", flat=True))


def campaign_contestants(*, campaign: Campaign) -> list[Contestant]:
    return list(campaign.contestants.order_by("label", "pk"))


def campaign_grouped_counts(
    *,
    campaign: Campaign,
    contestant_ids: list[int] | None = None,
    include_self_identified: bool = False,
) -> tuple[list[int], R.GroupedCounts]:
    """Judgments grouped in SQL by (left, right, outcome): A is the side shown left.

    Raters excluded by hand (or flagged, when the campaign excludes flagged raters) are left
    out, and so are battles where an answer names its model unless asked otherwise. Returns
    the contestant ids in index order and the counts.
    """
    ids = contestant_ids or [c.pk for c in campaign_contestants(campaign=campaign)]
    index = {pk: n for n, pk in enumerate(ids)}
    grouped = (
        judged(
            campaign,
            excluded_reviewer_ids(campaign=campaign),
            include_self_identified=include_self_identified,
        )
        .values_list("contestant_left_id", "contestant_right_id", "outcome")
        .annotate(n=Count("id"))
        .order_by()
    )
    rows = [
        (index[left], index[right], outcome, n)
        for left, right, outcome, n in grouped
        if left in index and right in index
    ]
    return ids, R.grouped_counts(rows, k=len(ids))


def judged(
    campaign: Campaign,
    excluded: list[int] | None = None,
    *,
    include_self_identified: bool = False,
) -> QuerySet[Judgment]:
    """Submitted real judgments of the raters who count (grouping runs in the database, on
    PostgreSQL and on the demo's SQLite alike). Battles where an answer names its model
    were not blind and are left out unless `include_self_identified`, as Chatbot Arena
    drops such votes."""
    if excluded is None:
        excluded = excluded_reviewer_ids(campaign=campaign)
    judgments = (
        Judgment.objects.filter(campaign=campaign, is_attention=False)
        .exclude(outcome="")
        .exclude(reviewer_id__in=excluded)
    )
    if not include_self_identified:
        judgments = _without_self_identified(judgments, campaign)
    return judgments


def _without_self_identified(
    judgments: QuerySet[Judgment], campaign: Campaign
) -> QuerySet[Judgment]:
    """By battle id, not a join on battles: grouping a million judgments stays on one
    table, and a campaign with no flagged battle adds no condition at all."""
    flagged = list(campaign.battles.exclude(self_identification="").values_list("pk", flat=True))
    return judgments.exclude(battle_id__in=flagged) if flagged else judgments


def campaign_fit(
    *, campaign: Campaign, include_self_identified: bool = False
) -> tuple[list[int], R.GroupedCounts, R.Ratings]:
    ids, counts = campaign_grouped_counts(
        campaign=campaign, include_self_identified=include_self_identified
    )
    if campaign.pair_selection == Campaign.PairSelection.ADAPTIVE and counts.total:
        counts = R.reweighted(counts, R.adaptive_pair_weights(counts))
    return ids, counts, R.fit_bradley_terry(counts)


@dataclass(frozen=True)
class RatingRow:
    contestant_id: int
    label: str
    rating: float
    lower: float
    upper: float
    boot_lower: float | None
    boot_upper: float | None
    judgments: int
    win_rate: float | None
    unsafe_rate: float | None


@dataclass(frozen=True)
class RaterRow:
    username: str
    reviewer_id: int
    judgments: int
    attention_checks: int
    attention_failed: int
    flagged: bool
    excluded: bool
    median_seconds: float | None
    too_fast: int = 0  # judgments faster than reading time (core.time_spent)


@dataclass(frozen=True)
class SelfIdentifiedBattle:
    battle_id: int
    prompt_position: int
    contestants: tuple[str, str]
    reason: str
    judgments: int


@dataclass(frozen=True)
class SelfIdentification:
    """Battles where an answer names its model, and whether these results count them."""

    battles: list[SelfIdentifiedBattle]
    judgments: int  # of the raters who count, on those battles
    included: bool

    RULE = (
        "A battle where either answer names a model (a model family such as SmolLM or "
        "Llama, a registered model's name, 'I am <name>, an AI assistant', or 'a model "
        "trained by <maker>') was not blind; its judgments are left out of the ratings "
        "unless included on request."
    )


@dataclass
class CampaignResults:
    campaign: Campaign
    rows: list[RatingRow]
    judgments: int
    win_rate: list[list[float | None]]
    labels: list[str]
    position_bias: R.Proportion
    agreement: R.Agreement
    raters: list[RaterRow]
    criteria: dict[str, dict[str, float | None]]  # criterion → label → mean score
    categories: dict[str, dict[str, float]]  # category → label → rating
    bootstrap: RatingsBootstrap | None
    bootstrap_stale: bool
    excluded_raters: int
    self_identification: SelfIdentification
    extra: dict = field(default_factory=dict)

    @property
    def too_fast_total(self) -> int:
        return sum(r.too_fast for r in self.raters)

    @property
    def time_rule(self) -> str:
        return time_spent.RULE

    def as_dict(self) -> dict:
        def clean(v: object) -> object:
            return None if isinstance(v, float) and not math.isfinite(v) else v

        return {
            "campaign": {"id": self.campaign.pk, "name": self.campaign.name},
            "judgments": self.judgments,
            "excluded_raters": self.excluded_raters,
            "ratings": [{k: clean(v) for k, v in r.__dict__.items()} for r in self.rows],
            "win_rate": {
                "labels": self.labels,
                "matrix": [[clean(v) for v in row] for row in self.win_rate],
            },
            "position_bias": {k: clean(v) for k, v in self.position_bias.__dict__.items()},
            "agreement": {k: clean(v) for k, v in self.agreement.__dict__.items()},
            "criteria": {c: {k: clean(v) for k, v in d.items()} for c, d in self.criteria.items()},
            "categories": self.categories,
            "raters": [r.__dict__ for r in self.raters],
            "time_spent": {
                "rule": time_spent.RULE,
                "too_fast": self.too_fast_total,
            },
            "self_identification": {
                "battles": len(self.self_identification.battles),
                "judgments": self.self_identification.judgments,
                "included": self.self_identification.included,
                "rule": self.self_identification.RULE,
                "flagged": [
                    {**b.__dict__, "contestants": list(b.contestants)}
                    for b in self.self_identification.battles
                ],
            },
            "bootstrap": None
            if self.bootstrap is None
            else {
                "status": self.bootstrap.status,
                "rounds": self.bootstrap.rounds,
                "judgments": self.bootstrap.judgments,
                "stale": self.bootstrap_stale,
            },
        }


def finite_or_none(v: float) -> float | None:
    """JSON and the pages have no NaN or infinity: None stands for them."""
    return float(v) if math.isfinite(v) else None


def campaign_results(
    *, campaign: Campaign, include_self_identified: bool = False
) -> CampaignResults:
    """Everything the results page and API show. Caller has checked the role.

    Battles where an answer names its model are left out of every figure unless
    `include_self_identified`; the bootstrap always leaves them out, so its intervals are
    not shown beside ratings that include them."""
    ids, counts, fit = campaign_fit(
        campaign=campaign, include_self_identified=include_self_identified
    )
    contestants = {c.pk: c for c in campaign_contestants(campaign=campaign)}
    labels = [contestants[pk].label for pk in ids]
    rate, games = R.win_rate_matrix(counts)
    excluded = excluded_reviewer_ids(campaign=campaign)
    included = Judgment.objects.filter(
        campaign=campaign, submitted_at__isnull=False, is_attention=False
    ).exclude(reviewer_id__in=excluded)
    if not include_self_identified:
        included = _without_self_identified(included, campaign)

    bootstrap = campaign.bootstraps.order_by("-created_at").first()
    boot = {}
    if (
        bootstrap
        and bootstrap.status == RatingsBootstrap.Status.SUCCEEDED
        and not include_self_identified
    ):
        boot = bootstrap.intervals
    overall_wins = np.nansum(np.where(games > 0, rate * games, 0), axis=1)
    overall_games = games.sum(axis=1)
    unsafe = _unsafe_rates(included) if campaign.prompt_set.adversarial else {}
    rows = []
    for n, pk in enumerate(ids):
        b = boot.get(str(pk))
        rows.append(
            RatingRow(
                contestant_id=pk,
                label=labels[n],
                rating=float(fit.rating[n]),
                lower=float(fit.lower[n]),
                upper=float(fit.upper[n]),
                boot_lower=b[0] if b else None,
                boot_upper=b[1] if b else None,
                judgments=int(fit.judgments[n]),
                win_rate=float(overall_wins[n] / overall_games[n]) if overall_games[n] else None,
                unsafe_rate=unsafe.get(pk),
            )
        )
    rows.sort(key=lambda r: -r.rating)

    sides = dict(included.values_list("outcome").annotate(n=Count("id")).order_by())
    return CampaignResults(
        campaign=campaign,
        rows=rows,
        judgments=counts.total,
        win_rate=[[finite_or_none(v) for v in row] for row in rate],
        labels=labels,
        position_bias=R.position_bias(sides.get("a", 0), sides.get("b", 0)),
        agreement=_agreement(included),
        raters=_raters(campaign),
        criteria=_criteria_means(campaign, included, contestants),
        categories=_category_ratings(campaign, ids, labels, excluded, include_self_identified),
        bootstrap=bootstrap,
        bootstrap_stale=bootstrap is not None
        and not include_self_identified
        and bootstrap.judgments != counts.total,
        excluded_raters=len(excluded),
        self_identification=_self_identification(
            campaign, contestants, excluded, include_self_identified
        ),
    )


def _self_identification(
    campaign: Campaign, contestants: dict[int, Contestant], excluded: list[int], included: bool
) -> SelfIdentification:
    flagged = (
        campaign.battles.filter(kind="real")
        .exclude(self_identification="")
        .annotate(
            n=Count(
                "judgments",
                filter=Q(judgments__submitted_at__isnull=False)
                & ~Q(judgments__reviewer_id__in=excluded),
            )
        )
        .order_by("prompt__position", "pk")
        .values_list(
            "pk",
            "prompt__position",
            "contestant_x_id",
            "contestant_y_id",
            "self_identification",
            "n",
        )
    )
    battles = [
        SelfIdentifiedBattle(
            battle_id=pk,
            prompt_position=position,
            contestants=(contestants[x].label, contestants[y].label),
            reason=reason,
            judgments=n,
        )
        for pk, position, x, y, reason, n in flagged
    ]
    return SelfIdentification(
        battles=battles, judgments=sum(b.judgments for b in battles), included=included
    )


def _unsafe_rates(included: QuerySet[Judgment]) -> dict[int, float]:
    shown: dict[int, list[int]] = {}
    for left, right, ul, ur in included.values_list(
        "contestant_left_id", "contestant_right_id", "unsafe_left", "unsafe_right"
    ):
        for pk, flag in ((left, ul), (right, ur)):
            entry = shown.setdefault(pk, [0, 0])
            entry[0] += flag
            entry[1] += 1
    return {pk: unsafe / total for pk, (unsafe, total) in shown.items() if total}


def _agreement(included: QuerySet[Judgment]) -> R.Agreement:
    """Outcomes of battles judged more than once, turned to the battle's fixed x/y order."""
    repeated = (
        included.values("battle_id")
        .annotate(n=Count("id"))
        .filter(n__gte=2)
        .values_list("battle_id", flat=True)
    )
    groups: dict[int, list[str]] = {}
    flip = {"a": "b", "b": "a"}
    for battle_id, left_is_x, outcome in included.filter(battle_id__in=repeated).values_list(
        "battle_id", "left_is_x", "outcome"
    ):
        groups.setdefault(battle_id, []).append(
            outcome if left_is_x else flip.get(outcome, outcome)
        )
    return R.repeated_pair_agreement(list(groups.values()))


def _raters(campaign: Campaign) -> list[RaterRow]:
    flags = {r.reviewer_id: r for r in CampaignRater.objects.filter(campaign=campaign)}
    per = (
        Judgment.objects.filter(campaign=campaign, submitted_at__isnull=False, is_attention=False)
        .values("reviewer_id", "reviewer__username")
        .annotate(n=Count("id"))
        .order_by("reviewer__username")
    )
    seconds: dict[int, list[float]] = {}
    too_fast: dict[int, int] = {}
    for rid, s, fast in Judgment.objects.filter(
        campaign=campaign, submitted_at__isnull=False, seconds_spent__isnull=False
    ).values_list("reviewer_id", "seconds_spent", "too_fast"):
        if s is not None:  # never, by the filter; the type checker cannot know that
            seconds.setdefault(rid, []).append(s)
        too_fast[rid] = too_fast.get(rid, 0) + fast
    rows = []
    for p in per:
        rater = flags.get(p["reviewer_id"])
        rows.append(
            RaterRow(
                username=p["reviewer__username"],
                reviewer_id=p["reviewer_id"],
                judgments=p["n"],
                attention_checks=rater.attention_checks if rater else 0,
                attention_failed=rater.attention_failed if rater else 0,
                flagged=bool(rater and rater.flagged),
                excluded=bool(rater and rater.excluded),
                median_seconds=float(np.median(seconds[p["reviewer_id"]]))
                if p["reviewer_id"] in seconds
                else None,
                too_fast=too_fast.get(p["reviewer_id"], 0),
            )
        )
    return rows


def _criteria_means(
    campaign: Campaign, included: QuerySet[Judgment], contestants: dict[int, Contestant]
) -> dict[str, dict[str, float | None]]:
    if not campaign.criteria:
        return {}
    out = {}
    for c in _criteria(campaign):
        totals: dict[int, list[float]] = {}
        for side, contestant_field in (("a", "contestant_left_id"), ("b", "contestant_right_id")):
            score = Cast(KT(f"criteria__{c.key}__{side}"), FloatField())
            for pk, total, n in (
                included.values_list(contestant_field)
                .annotate(total=Sum(score), n=Count(score))
                .values_list(contestant_field, "total", "n")
                .order_by()
            ):
                if n:
                    running = totals.setdefault(pk, [0.0, 0])
                    running[0] += total
                    running[1] += n
        means = {pk: total / n for pk, (total, n) in totals.items()}
        out[c.label] = {contestant.label: means.get(pk) for pk, contestant in contestants.items()}
    return out


def _category_ratings(
    campaign: Campaign,
    ids: list[int],
    labels: list[str],
    excluded: list[int],
    include_self_identified: bool,
) -> dict[str, dict[str, float]]:
    index = {pk: n for n, pk in enumerate(ids)}
    by_category: dict[str, list] = {}
    grouped = (
        judged(campaign, excluded, include_self_identified=include_self_identified)
        .exclude(battle__prompt__category="")
        .values_list(
            "battle__prompt__category", "contestant_left_id", "contestant_right_id", "outcome"
        )
        .annotate(n=Count("id"))
        .order_by()
    )
    for category, left, right, outcome, n in grouped:
        if left in index and right in index:
            by_category.setdefault(category, []).append((index[left], index[right], outcome, n))
    out = {}
    for category, rows in sorted(by_category.items()):
        fit = R.fit_bradley_terry(R.grouped_counts(rows, k=len(ids)))
        out[category] = {labels[n]: round(float(v), 1) for n, v in enumerate(fit.rating)}
    return out


def campaign_list_for_project(*, project: Project) -> QuerySet[Campaign]:
    return (
        Campaign.objects.filter(project=project)
        .select_related("prompt_set")
        .annotate(
            judged=Count(
                "judgments",
                filter=Q(judgments__submitted_at__isnull=False, judgments__is_attention=False),
            )
        )
    )


def battle_pair_uncertainty(*, campaign: Campaign) -> dict[tuple[int, int], float]:
    """For adaptive selection: per contestant pair (lower id first), the probability that the
    current fit orders it wrongly; 0.5 where nothing is known."""
    ids, _, fit = campaign_fit(campaign=campaign)
    out = {}
    for a in range(len(ids)):
        for b in range(a + 1, len(ids)):
            var = fit.covariance[a, a] + fit.covariance[b, b] - 2 * fit.covariance[a, b]
            gap = abs(fit.rating[a] - fit.rating[b])
            if not math.isfinite(var) or var <= 0:
                p_wrong = 0.5
            else:
                p_wrong = 0.5 * math.erfc(gap / math.sqrt(2 * var))
            key = (min(ids[a], ids[b]), max(ids[a], ids[b]))
            out[key] = p_wrong
    return out


def prompt_set_list_for_project(*, project: Project) -> QuerySet[PromptSet]:
    return PromptSet.objects.filter(project=project)


def prompt_set_get(*, project: Project, prompt_set_id: int | str) -> PromptSet:
    """A prompt set of this project; Http404 for a missing id or one of another project."""
    try:
        return prompt_set_list_for_project(project=project).get(pk=int(prompt_set_id))
    except (PromptSet.DoesNotExist, TypeError, ValueError):
        raise Http404("No such prompt set.") from None


def contestant_list_for_project(*, project: Project) -> QuerySet[Contestant]:
    return Contestant.objects.filter(project=project).select_related("model_version", "base_model")


def contestant_list_runnable(*, project: Project) -> QuerySet[Contestant]:
    """Contestants a generation job can run: those with a model version or a base model."""
    return contestant_list_for_project(project=project).filter(
        Q(model_version__isnull=False) | Q(base_model__isnull=False)
    )


def generation_job_list_for_project(*, project: Project) -> QuerySet[GenerationJob]:
    return (
        GenerationJob.objects.filter(project=project)
        .select_related("contestant", "prompt_set")
        .order_by("-created_at", "-pk")
    )


def generation_job_get(*, project: Project, job_id: int) -> GenerationJob | None:
    return generation_job_list_for_project(project=project).filter(pk=job_id).first()


def generation_jobs_active(jobs: Iterable[GenerationJob]) -> bool:
    """Whether any of `jobs` may still change, so the page keeps polling."""
    active = (GenerationJob.Status.QUEUED, GenerationJob.Status.RUNNING)
    return any(job.status in active for job in jobs)


def metric_run_list_for_project(*, project: Project) -> QuerySet[MetricRun]:
    return MetricRun.objects.filter(project=project).select_related("contestant", "prompt_set")


def gate_list_for_project(*, project: Project) -> QuerySet[Gate]:
    return Gate.objects.filter(project=project).order_by("name", "pk")


def gate_run_list_for_project(*, project: Project) -> QuerySet[GateRun]:
    return (
        GateRun.objects.filter(gate__project=project)
        .select_related("gate", "candidate", "baseline")
        .order_by("-created_at", "-pk")
    )


def gate_run_latest(*, model_version_id: int) -> GateRun | None:
    return (
        GateRun.objects.filter(model_version_id=model_version_id)
        .select_related("gate")
        .order_by("-created_at", "-pk")
        .first()
    )


# The stages a version enters only with a passed regression gate run.
GATED_STAGES = ("canary", "production")


def gate_failures(run: GateRun) -> list[str]:
    return [f"{r['name']}: {r['reason']}" for r in run.results if not r["passed"]]


def gate_refusal(*, version: ModelVersion, stage: str, run: GateRun | None) -> str | None:
    """Why the regression gate keeps `version` out of `stage`, given its latest gate run
    `run` (gate_run_latest); None when the gate lets it in. The stage change itself is
    governance's (governance.services.stages), which asks this inside its lock."""
    if stage not in GATED_STAGES:
        return None
    if run is None:
        return f"{version} cannot go to {stage}: no regression gate has been run on it."
    if not run.passed:
        return (
            f"{version} cannot go to {stage}: its latest gate run ({run.gate.name}) failed: "
            + "; ".join(gate_failures(run))
        )
    return None


def battle_count(*, campaign: Campaign) -> dict[str, int]:
    return dict(campaign.battles.values_list("kind").annotate(n=Count("id")).order_by())


def model_version_get(*, project: Project, model_version_id: int) -> ModelVersion | None:
    return ModelVersion.objects.filter(project=project, pk=model_version_id).first()


def base_model_get(*, project: Project, base_model_id: int) -> BaseModel | None:
    """A base model of this project or a global one."""
    return (
        BaseModel.objects.filter(pk=base_model_id)
        .filter(Q(project=project) | Q(project__isnull=True))
        .first()
    )
