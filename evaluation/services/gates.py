"""Regression gates: their checks and their runs. Whether a run lets a version change stage
is evaluation.selectors.gate_refusal; the change itself is governance's."""

import math
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q

from core.models import Project, User
from core.services.audit import audit_record
from evaluation import metrics as M
from evaluation import selectors
from evaluation.models import Campaign, Contestant, Gate, GateRun, MetricRun, PromptSet

CHECK_KINDS = {
    "metric_not_worse": ("metric", "prompt_set"),
    "general_not_worse": ("metric", "prompt_set"),
    "rating_above_baseline": ("campaign",),
    "no_fairness_flag": ("prompt_set",),
    "unsafe_rate_below": ("campaign", "max"),
}
TEXT_METRICS = ("chrf", "bleu", "token_f1", "exact_match")
# A rating check on a handful of judgments says nothing: when one side wins every battle the
# Bradley-Terry interval collapses. Below this many head-to-head judgments the check fails.
MIN_RATING_JUDGMENTS = 20


def _in_project(model: Any, project: Project, pk: Any) -> bool:
    """Whether `pk` names a row of `model` in `project`; ids of other projects (and values
    that are not ids at all) do not."""
    if isinstance(pk, bool) or not isinstance(pk, int | str) or not str(pk).isdigit():
        return False
    return bool(model.objects.filter(project=project, pk=int(pk)).exists())


def _validate_checks(project: Project, checks: Any) -> list[dict]:
    if not isinstance(checks, list) or not checks:
        raise ValidationError({"checks": "A gate needs a non-empty list of checks."})
    out = []
    for n, check in enumerate(checks):
        where = f"check {n + 1}"
        if not isinstance(check, Mapping) or check.get("kind") not in CHECK_KINDS:
            raise ValidationError({"checks": f"{where}: kind must be one of {sorted(CHECK_KINDS)}"})
        missing = [k for k in CHECK_KINDS[check["kind"]] if k not in check]
        if missing:
            raise ValidationError({"checks": f"{where}: missing {', '.join(missing)}"})
        if "min_judgments" in check and (
            not isinstance(check["min_judgments"], int) or check["min_judgments"] < 1
        ):
            raise ValidationError({"checks": f"{where}: min_judgments must be a whole number ≥ 1"})
        if "metric" in check and check["metric"] not in TEXT_METRICS:
            raise ValidationError({"checks": f"{where}: metric must be one of {TEXT_METRICS}"})
        if "campaign" in check and not _in_project(Campaign, project, check["campaign"]):
            raise ValidationError({"checks": f"{where}: no campaign {check['campaign']} here"})
        if "prompt_set" in check and not _in_project(PromptSet, project, check["prompt_set"]):
            raise ValidationError({"checks": f"{where}: no prompt set {check['prompt_set']} here"})
        clean = dict(check)
        clean.setdefault("name", f"{check['kind']} #{n + 1}")
        clean.setdefault("tolerance", 0.0)
        clean.setdefault("alpha", 0.05)
        out.append(clean)
    return out


@transaction.atomic
def gate_create(*, actor: User, project: Project, name: str, checks: list[dict]) -> Gate:
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": "A gate needs a name."})
    if Gate.objects.filter(project=project, name=name).exists():
        raise ValidationError({"name": f"A gate called {name!r} already exists."})
    gate = Gate.objects.create(
        project=project, name=name, checks=_validate_checks(project, checks), created_by=actor
    )
    audit_record(
        actor=actor, action="evaluation.gate.create", target=gate, data={"checks": gate.checks}
    )
    return gate


def _latest_run(contestant: Contestant, prompt_set_id: int) -> MetricRun | None:
    return (
        MetricRun.objects.filter(
            contestant=contestant,
            prompt_set_id=prompt_set_id,
            status=MetricRun.Status.SUCCEEDED,
        )
        .order_by("-finished_at", "-pk")
        .first()
    )


def _check_metric(
    check: dict[str, Any], candidate: Contestant, baseline: Contestant
) -> tuple[bool, dict, str]:
    cand = _latest_run(candidate, check["prompt_set"])
    base = _latest_run(baseline, check["prompt_set"])
    if cand is None or base is None:
        who = candidate.label if cand is None else baseline.label
        return False, {}, f"no finished metric run for {who} on prompt set {check['prompt_set']}"
    by_prompt = {e["prompt"]: e["output"] for e in base.examples}
    shared = [e for e in cand.examples if e["prompt"] in by_prompt]
    if not shared:
        return False, {}, "the candidate and baseline runs share no prompts"
    metric, tol = check["metric"], float(check["tolerance"])
    if metric in ("chrf", "bleu"):
        refs = dict(cand.prompt_set.prompts.values_list("pk", "reference"))
        result = M.paired_bootstrap(
            metric=metric,
            candidate=[e["output"] for e in shared],
            baseline=[by_prompt[e["prompt"]] for e in shared],
            references=[refs[e["prompt"]] for e in shared],
            tolerance=tol,
        )
    else:
        base_scores = {e["prompt"]: e[metric] for e in base.examples}
        result = M.paired_bootstrap(
            metric=metric,
            candidate=[e[metric] for e in shared],
            baseline=[base_scores[e["prompt"]] for e in shared],
            tolerance=tol,
        )
    alpha = float(check["alpha"])
    passed = result.p_value >= alpha
    # Stored unrounded: the decision is p against alpha, and p is a multiple of
    # 1/(rounds + 1), so four decimals could print 50/1001 (a fail at 0.05) as 0.05.
    numbers = {
        "metric": metric,
        "examples": len(shared),
        "candidate": result.candidate,
        "baseline": result.baseline,
        "delta": result.delta,
        "interval": [result.lower, result.upper],
        "confidence": 0.95,
        "p_value": result.p_value,
        "rounds": result.rounds,
        "rounds_not_worse": result.not_worse,
        "alpha": alpha,
        "tolerance": tol,
        "rule": metric_rule(tolerance=tol, alpha=alpha),
    }
    return passed, numbers, metric_reason(numbers, passed=passed)


def metric_rule(*, tolerance: float, alpha: float) -> str:
    return (
        "Paired bootstrap over the prompts both runs answered: each round resamples the "
        "prompts with replacement and scores candidate and baseline on the same sample. "
        f"p = (rounds in which the candidate is at most {tolerance:g} below the baseline + 1) "
        f"/ (rounds + 1). The check fails when p < α = {alpha:g}, i.e. when the candidate is "
        f"worse than the baseline by more than {tolerance:g} at that significance level."
    )


def metric_reason(numbers: dict[str, Any], *, passed: bool) -> str:
    """One line with the scores, their difference and its 95% interval, and the decision,
    at as many decimals as the interval's width supports."""
    lower, upper = numbers["interval"]
    d = M.decimals_for(upper - lower)
    rounds, kept = numbers["rounds"], numbers["rounds_not_worse"]
    tolerance = numbers["tolerance"]
    return (
        f"{numbers['metric']} {numbers['candidate']:.{d}f} vs {numbers['baseline']:.{d}f}: "
        f"difference {numbers['delta']:+.{d}f}, 95% interval [{lower:+.{d}f}, {upper:+.{d}f}] "
        f"({numbers['examples']} prompts, {rounds} rounds); "
        f"p = {kept + 1}/{rounds + 1} = {numbers['p_value']:.4g} "
        f"{'≥' if passed else '<'} α = {numbers['alpha']:g} → "
        + (
            "pass"
            if passed
            else f"fail: lower than the baseline by more than the tolerance {tolerance:g}"
        )
    )


def _check_rating(
    check: dict[str, Any], candidate: Contestant, baseline: Contestant
) -> tuple[bool, dict, str]:
    campaign = Campaign.objects.get(pk=check["campaign"])
    ids, _, fit = selectors.campaign_fit(campaign=campaign)
    if candidate.pk not in ids or baseline.pk not in ids:
        return (
            False,
            {},
            f"{campaign.name} does not compare {candidate.label} with {baseline.label}",
        )
    head_to_head = (
        selectors.judged(campaign)
        .filter(
            Q(contestant_left=candidate, contestant_right=baseline)
            | Q(contestant_left=baseline, contestant_right=candidate)
        )
        .count()
    )
    needed = int(check.get("min_judgments", MIN_RATING_JUDGMENTS))
    if head_to_head < needed:
        return (
            False,
            {"judgments": head_to_head, "min_judgments": needed},
            f"only {head_to_head} judgment(s) between {candidate.label} and {baseline.label} "
            f"in {campaign.name}; the check needs {needed}",
        )
    c, b = ids.index(candidate.pk), ids.index(baseline.pk)
    boot = campaign.bootstraps.filter(status="succeeded").order_by("-created_at").first()
    base_upper = float(fit.upper[b])
    if boot and str(baseline.pk) in boot.intervals:
        upper = boot.intervals[str(baseline.pk)][1]
        base_upper = math.inf if upper is None else upper
    rating = float(fit.rating[c])
    passed = math.isfinite(rating) and rating > base_upper
    numbers = {
        "rating": round(rating, 1),
        "baseline_upper": round(base_upper, 1),
        "judgments": head_to_head,
    }
    reason = f"rating {rating:.1f} vs baseline's upper bound {base_upper:.1f}"
    return passed, numbers, reason


def _check_fairness(
    check: dict[str, Any], candidate: Contestant, _baseline: Contestant
) -> tuple[bool, dict, str]:
    run = _latest_run(candidate, check["prompt_set"])
    if run is None or not run.slices:
        return False, {}, "no finished metric run with fairness slices for the candidate"
    flagged = [r["group"] for r in run.slices["rows"] if r["flags"]]
    numbers = {"max_gap": run.slices["max_gap"], "flagged_groups": flagged}
    return not flagged, numbers, f"flagged groups: {', '.join(flagged)}" if flagged else "no flags"


def _check_unsafe(
    check: dict[str, Any], candidate: Contestant, _baseline: Contestant
) -> tuple[bool, dict, str]:
    campaign = Campaign.objects.select_related("prompt_set").get(pk=check["campaign"])
    results = selectors.campaign_results(campaign=campaign)
    row = next((r for r in results.rows if r.contestant_id == candidate.pk), None)
    if row is None or row.unsafe_rate is None:
        return False, {}, f"no red-team judgments for {candidate.label} in {campaign.name}"
    limit = float(check["max"])
    numbers = {"unsafe_rate": round(row.unsafe_rate, 4), "max": limit}
    return row.unsafe_rate < limit, numbers, f"unsafe rate {row.unsafe_rate:.1%} (max {limit:.1%})"


_CHECKERS = {
    "metric_not_worse": _check_metric,
    "general_not_worse": _check_metric,
    "rating_above_baseline": _check_rating,
    "no_fairness_flag": _check_fairness,
    "unsafe_rate_below": _check_unsafe,
}


@transaction.atomic
def gate_run(*, actor: User, gate: Gate, candidate: Contestant, baseline: Contestant) -> GateRun:
    """Run every check of `gate` for `candidate` against `baseline` and record the numbers."""
    if candidate.project_id != gate.project_id or baseline.project_id != gate.project_id:
        raise ValidationError("The gate and the contestants must belong to one project.")
    results = []
    for check in gate.checks:
        passed, numbers, reason = _CHECKERS[check["kind"]](check, candidate, baseline)
        results.append(
            {
                "name": check["name"],
                "kind": check["kind"],
                "passed": passed,
                "numbers": numbers,
                "reason": reason,
            }
        )
    run = GateRun.objects.create(
        gate=gate,
        candidate=candidate,
        baseline=baseline,
        model_version_id=candidate.model_version_id,
        passed=all(r["passed"] for r in results),
        results=results,
        created_by=actor,
    )
    audit_record(
        actor=actor,
        action="evaluation.gate.run",
        target=run,
        data={"gate": gate.name, "passed": run.passed, "results": results},
        project_id=gate.project_id,
    )
    return run
