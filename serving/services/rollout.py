"""Canary analysis: the rollback rules of each deployment with a canary on traffic, checked
over a sliding window (Celery beat runs `rollout_evaluate_all` every minute).

A rule compares one figure of the canary with stable over the window (`window_s`): it is
breached when the canary had at least `min_requests` requests and its figure exceeds
stable's by more than the rule's threshold (error rate, p95 latency in ms, guardrail-flag
rate, negative-feedback rate). On a breach the canary's weight goes to 0 and its rollout
to rolled back, the decision and its figures are recorded (page, audit log, dossier), the
version moves back to candidate through governance's stage-change service and the
deployment's webhook is called once the transaction commits. A progressing canary whose
rules all held over a whole window since its last step steps to the next weight; reaching
the last step completes the rollout. A paused canary never steps, but still rolls back.

Each evaluation holds the deployment's row lock, so concurrent beat runs (two beats, a
slow run overlapping the next) decide once: the second finds the rollout rolled back, or
its last step too recent for a full window.
"""

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from serving import hooks
from serving.models import Arm, Deployment, DeploymentDecision
from serving.selectors.stats import ArmStats, arm_window_stats
from serving.services.deployments import DEFAULT_RULES, DEFAULT_STEPS, _decide, _locked

log = logging.getLogger(__name__)

Rollout = Deployment.Rollout
EVALUATED = (Rollout.PROGRESSING, Rollout.PAUSED)
# rule -> (ArmStats field, how the figure reads in a reason)
RULES: dict[str, tuple[str, str]] = {
    "error_rate": ("error_rate", "error rate"),
    "p95_ms": ("p95_ms", "p95 latency (ms)"),
    "flag_rate": ("flag_rate", "guardrail-flag rate"),
    "negative_feedback_rate": ("negative_feedback_rate", "negative-feedback rate"),
}
SIGNATURE_HEADER = "X-Portal-Signature"
WEBHOOK_TIMEOUT_S = 10


@dataclass
class Outcome:
    """What one evaluation found and did: `action` is one of idle (nothing to evaluate),
    waiting (too few canary requests, or no full window since the last step), held (rules
    held, nothing to do while paused or complete), stepped, completed or rolled_back."""

    deployment_id: int
    action: str
    figures: dict[str, Any] = field(default_factory=dict)
    decision_id: int | None = None


def _check(rule: str, threshold: float, stable: ArmStats, canary: ArmStats) -> dict[str, Any]:
    attr, label = RULES[rule]
    canary_value, stable_value = getattr(canary, attr), getattr(stable, attr)
    if canary_value is None:
        excess = None
    else:
        # No stable traffic in the window: rates compare with 0; latency has no baseline.
        if stable_value is None and attr == "p95_ms":
            excess = None
        else:
            excess = canary_value - (stable_value or 0.0)
    return {
        "rule": rule,
        "label": label,
        "threshold": threshold,
        "canary": None if canary_value is None else round(canary_value, 4),
        "stable": None if stable_value is None else round(stable_value, 4),
        "excess": None if excess is None else round(excess, 4),
        "breached": excess is not None and excess > threshold,
    }


def _figures(
    rules: dict[str, Any], since: datetime, until: datetime, stats: dict[str, ArmStats]
) -> dict[str, Any]:
    stable, canary = stats[Arm.STABLE], stats[Arm.CANARY]
    checks = [
        _check(rule, float(rules[rule]), stable, canary)
        for rule in RULES
        if rules.get(rule) is not None
    ]
    return {
        "window_s": int(rules["window_s"]),
        "min_requests": int(rules["min_requests"]),
        "since": since.isoformat(),
        "until": until.isoformat(),
        "stable": stable.as_dict(),
        "canary": canary.as_dict(),
        "rules": checks,
        "breaches": [c for c in checks if c["breached"]],
    }


def _breach_reason(figures: dict[str, Any]) -> str:
    parts = [
        f"canary {b['label']} {b['canary']:g} exceeds stable's {b['stable'] or 0:g} "
        f"by {b['excess']:g} (> {b['threshold']:g})"
        for b in figures["breaches"]
    ]
    return (
        f"Rolled back: {'; '.join(parts)} over {figures['window_s']} s "
        f"({figures['canary']['requests']} canary requests)."
    )


def _next_weight(deployment: Deployment) -> int | None:
    steps = deployment.rollout_steps or DEFAULT_STEPS
    return next((w for w in steps if w > deployment.canary_weight), None)


@transaction.atomic
def rollout_evaluate(*, deployment: Deployment, now: datetime | None = None) -> Outcome:
    """Check `deployment`'s rollback rules over the window ending `now` and act on them."""
    deployment = _locked(deployment)
    if deployment.rollout not in EVALUATED or deployment.canary_version_id is None:
        return Outcome(deployment.pk, "idle")
    now = now or timezone.now()
    rules = {**DEFAULT_RULES, **(deployment.rollback_rules or {})}
    since = now - timedelta(seconds=int(rules["window_s"]))
    stats = arm_window_stats(deployment_id=deployment.pk, since=since, until=now)
    figures = _figures(rules, since, now, stats)
    if stats[Arm.CANARY].requests < int(rules["min_requests"]):
        return Outcome(deployment.pk, "waiting", figures)
    if figures["breaches"]:
        return _roll_back(deployment, figures, now)
    if deployment.rollout != Rollout.PROGRESSING:
        return Outcome(deployment.pk, "held", figures)
    # A full window at the current weight: requests from before the last step do not count.
    if deployment.rollout_step_at and deployment.rollout_step_at > since:
        return Outcome(deployment.pk, "waiting", figures)
    return _step(deployment, figures, now)


def _roll_back(deployment: Deployment, figures: dict[str, Any], now: datetime) -> Outcome:
    before = deployment.canary_weight
    version = deployment.canary_version
    deployment.canary_weight = 0
    deployment.rollout = Rollout.ROLLED_BACK
    deployment.rollout_step_at = now
    deployment.save(update_fields=["canary_weight", "rollout", "rollout_step_at", "updated_at"])
    reason = _breach_reason(figures)
    decision = _decide(
        deployment,
        actor=None,
        kind=DeploymentDecision.Kind.ROLLBACK,
        arm=Arm.CANARY,
        version=version,
        from_weight=before,
        to_weight=0,
        reason=reason,
        figures=figures,
    )
    hooks.canary_withdraw(
        version=version,
        reason=f"{reason} (deployment {deployment.name})",
        figures={"deployment": deployment.pk, "decision": decision.pk, **figures},
    )
    if deployment.webhook_url:
        from serving.tasks import deployment_webhook_task

        transaction.on_commit(lambda: deployment_webhook_task.delay(decision.pk))
    log.warning("rollout: %s rolled back: %s", deployment.name, reason)
    return Outcome(deployment.pk, "rolled_back", figures, decision.pk)


def _step(deployment: Deployment, figures: dict[str, Any], now: datetime) -> Outcome:
    before = deployment.canary_weight
    weight = _next_weight(deployment)
    last = weight is None or weight >= 100 or weight == (deployment.rollout_steps or [100])[-1]
    deployment.canary_weight = before if weight is None else weight
    deployment.rollout = Rollout.COMPLETE if last else Rollout.PROGRESSING
    deployment.rollout_step_at = now
    deployment.save(update_fields=["canary_weight", "rollout", "rollout_step_at", "updated_at"])
    held = ", ".join(c["rule"] for c in figures["rules"]) or "no rule set"
    reason = (
        f"Every rule held over {figures['window_s']} s "
        f"({figures['canary']['requests']} canary requests; {held}): "
        + (f"{before} % → {deployment.canary_weight} %" if weight else f"{before} %")
        + ("; rollout complete." if last else ".")
    )
    decision = _decide(
        deployment,
        actor=None,
        kind=DeploymentDecision.Kind.STEP,
        arm=Arm.CANARY,
        version=deployment.canary_version,
        from_weight=before,
        to_weight=deployment.canary_weight,
        reason=reason,
        figures=figures,
    )
    return Outcome(deployment.pk, "completed" if last else "stepped", figures, decision.pk)


def rollout_evaluate_all(*, now: datetime | None = None) -> dict[str, int]:
    """Evaluate every deployment with a canary progressing or paused, each in its own
    transaction (one deployment's failure does not hold up the others). Counts by action."""
    counts: dict[str, int] = {}
    candidates = Deployment.objects.filter(
        rollout__in=EVALUATED, canary_version__isnull=False
    ).order_by("pk")
    for deployment in candidates:
        try:
            action = rollout_evaluate(deployment=deployment, now=now).action
        except Exception:
            log.exception("rollout: evaluating deployment %s failed", deployment.pk)
            action = "failed"
        counts[action] = counts.get(action, 0) + 1
    return counts


def webhook_body(decision: DeploymentDecision) -> bytes:
    deployment = decision.deployment
    return json.dumps(
        {
            "event": f"deployment.{decision.kind}",
            "deployment": {"id": deployment.pk, "name": deployment.name},
            "decision": {"id": decision.pk, **decision.as_dict()},
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()


def webhook_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookRefused(Exception):
    """The receiver answered with a status other than 2xx: worth another try."""


def rollout_webhook_send(*, decision_id: int) -> int:
    """POST the decision and its figures to the deployment's webhook, signed with HMAC-SHA256
    of the body when a secret is set. Returns the receiver's status; raises on a network
    error or a non-2xx answer so the task retries. Writes nothing."""
    import httpx

    decision = DeploymentDecision.objects.select_related("deployment").get(pk=decision_id)
    deployment = decision.deployment
    if not deployment.webhook_url:
        return 0
    body = webhook_body(decision)
    headers = {"Content-Type": "application/json", "User-Agent": "tuning-portal-webhook"}
    if deployment.webhook_secret:
        headers[SIGNATURE_HEADER] = webhook_signature(str(deployment.webhook_secret), body)
    response = httpx.post(
        deployment.webhook_url, content=body, headers=headers, timeout=WEBHOOK_TIMEOUT_S
    )
    if not 200 <= response.status_code < 300:
        raise WebhookRefused(f"{deployment.webhook_url} answered {response.status_code}")
    return response.status_code
