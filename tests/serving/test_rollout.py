import threading
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from core.models import AuditEvent
from governance.models import StageChange
from serving.models import Deployment, DeploymentDecision
from serving.selectors.stats import _arm_window_stats_python, arm_window_stats, percentile_cont
from serving.services.deployments import deployment_rollout_set
from serving.services.rollout import (
    rollout_evaluate,
    rollout_evaluate_all,
    webhook_body,
    webhook_signature,
)
from tests.serving.rollout_support import canary_deployment, feedback, requests

pytestmark = pytest.mark.django_db

Rollout = Deployment.Rollout


def _later(dep, seconds=301):
    """A moment a full window after the canary's last step."""
    return dep.rollout_step_at + timedelta(seconds=seconds)


def _window(dep):
    now = timezone.now()
    return arm_window_stats(deployment_id=dep.pk, since=now - timedelta(seconds=300), until=now)


def test_window_stats_count_each_arm_and_match_the_sqlite_twin(project, engineer):
    dep = canary_deployment(project, engineer)
    stable = requests(dep, "stable", 40, errors=2, latency_ms=100, flagged=4)
    canary = requests(dep, "canary", 10, errors=1, fell_back=2, latency_ms=300)
    requests(dep, "shadow", 5, errors=5)
    requests(dep, "stable", 7, errors=7, ago_s=400)  # before the window
    feedback(dep, stable[:10], 1)
    feedback(dep, stable[10:12], -1)
    feedback(dep, canary[:4], -0.5)

    stats = _window(dep)

    s, c = stats["stable"], stats["canary"]
    assert (s.requests, s.errors, s.flagged, s.with_feedback, s.negative_feedback) == (
        40,
        2,
        4,
        12,
        2,
    )
    # The two fallbacks count as canary errors; row 0 is both a 500 and a fallback.
    assert (c.requests, c.errors, c.with_feedback, c.negative_feedback) == (10, 2, 4, 4)
    assert s.error_rate == pytest.approx(0.05)
    assert s.flag_rate == pytest.approx(0.1)
    assert s.negative_feedback_rate == pytest.approx(2 / 12)
    assert c.negative_feedback_rate == 1.0
    assert 300 <= c.p50_ms <= c.p95_ms <= 305
    latencies = [r.latency_ms for r in stable]
    assert s.p95_ms == pytest.approx(percentile_cont(latencies, 0.95))
    now = timezone.now()
    twin = _arm_window_stats_python(
        deployment=dep.pk, since=now - timedelta(seconds=300), until=now
    )
    assert twin["stable"] == s
    assert twin["canary"] == c


def test_percentile_cont_interpolates_like_postgresql():
    assert percentile_cont([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile_cont([10.0], 0.95) == 10.0
    assert percentile_cont([], 0.5) is None
    assert percentile_cont([0.0, 100.0], 0.95) == pytest.approx(95.0)


RULE_CASES = {
    "error_rate": ({"error_rate": 0.05}, {"errors": 10}),
    "p95_ms": ({"p95_ms": 300}, {"latency_ms": 900}),
    "flag_rate": ({"flag_rate": 0.1}, {"flagged": 12}),
    "negative_feedback_rate": ({"negative_feedback_rate": 0.2}, {}),
}


@pytest.mark.parametrize("rule", sorted(RULE_CASES))
def test_each_rule_rolls_the_canary_back_on_a_breach(project, engineer, rule):
    rules, bad = RULE_CASES[rule]
    dep = canary_deployment(project, engineer, weight=25, **rules)
    stable_rows = requests(dep, "stable", 60)
    canary_rows = requests(dep, "canary", 30, **bad)
    if rule == "negative_feedback_rate":
        feedback(dep, stable_rows[:20], 1)
        feedback(dep, canary_rows[:10], -1)
        feedback(dep, canary_rows[10:20], 1)
    canary_version = dep.canary_version

    outcome = rollout_evaluate(deployment=dep)

    assert outcome.action == "rolled_back"
    dep.refresh_from_db()
    assert (dep.canary_weight, dep.rollout) == (0, Rollout.ROLLED_BACK)
    decision = dep.decisions.get(kind=DeploymentDecision.Kind.ROLLBACK)
    assert (decision.from_weight, decision.to_weight, decision.actor) == (25, 0, None)
    assert [b["rule"] for b in decision.figures["breaches"]] == [rule]
    assert decision.figures["canary"]["requests"] == 30
    assert decision.figures["stable"]["requests"] == 60
    assert decision.figures["breaches"][0]["threshold"] == rules[rule]
    assert rule.split("_")[0] in decision.reason.replace("-", "_").lower()
    event = AuditEvent.objects.get(seq=decision.audit_seq)
    assert event.action == "serving.deployment.rollback"
    assert event.actor_id is None
    assert event.data["figures"]["breaches"][0]["rule"] == rule
    canary_version.refresh_from_db()
    assert canary_version.stage == "candidate"
    change = StageChange.objects.get(model_version=canary_version)
    assert (change.kind, change.from_stage, change.to_stage, change.actor) == (
        StageChange.Kind.WITHDRAW,
        "canary",
        "candidate",
        None,
    )
    assert dep.name in change.reason


def test_too_few_canary_requests_decide_nothing(project, engineer):
    dep = canary_deployment(project, engineer, error_rate=0.05)
    requests(dep, "stable", 50)
    requests(dep, "canary", 19, errors=19)

    outcome = rollout_evaluate(deployment=dep, now=_later(dep, 30))

    assert outcome.action == "waiting"
    dep.refresh_from_db()
    assert (dep.canary_weight, dep.rollout) == (10, Rollout.PROGRESSING)
    assert dep.canary_version.stage == "canary"
    assert not dep.decisions.filter(kind=DeploymentDecision.Kind.ROLLBACK).exists()


def test_a_canary_within_the_threshold_is_not_rolled_back(project, engineer):
    dep = canary_deployment(project, engineer, error_rate=0.1)
    requests(dep, "stable", 50, errors=5)  # 10 %
    requests(dep, "canary", 20, errors=3)  # 15 %: 5 points over, allowed 10

    outcome = rollout_evaluate(deployment=dep, now=_later(dep, 30))

    assert outcome.action == "waiting"  # no breach, and no full window since the step yet
    assert outcome.figures["rules"][0]["excess"] == pytest.approx(0.05)
    assert outcome.figures["breaches"] == []


def test_every_rule_holding_for_a_window_steps_forward_to_completion(project, engineer):
    dep = canary_deployment(project, engineer, error_rate=0.05, p95_ms=200)
    weights = []
    for _ in range(4):
        now = _later(dep)
        for arm, n in (("stable", 40), ("canary", 20)):
            requests(dep, arm, n, at=now - timedelta(seconds=10))
        outcome = rollout_evaluate(deployment=dep, now=now)
        dep.refresh_from_db()
        weights.append((outcome.action, dep.canary_weight, dep.rollout))

    assert weights == [
        ("stepped", 25, Rollout.PROGRESSING),
        ("stepped", 50, Rollout.PROGRESSING),
        ("completed", 100, Rollout.COMPLETE),
        ("idle", 100, Rollout.COMPLETE),
    ]
    steps = list(dep.decisions.filter(kind=DeploymentDecision.Kind.STEP).order_by("pk"))
    assert [(d.from_weight, d.to_weight) for d in steps] == [(10, 25), (25, 50), (50, 100)]
    assert {r["rule"] for r in steps[0].figures["rules"]} == {"error_rate", "p95_ms"}
    assert steps[0].figures["canary"]["requests"] == 20
    assert AuditEvent.objects.get(seq=steps[0].audit_seq).action == "serving.deployment.step"
    assert dep.canary_version.stage == "canary"


def test_no_step_before_a_full_window_at_the_current_weight(project, engineer):
    dep = canary_deployment(project, engineer, error_rate=0.05)
    requests(dep, "stable", 40)
    requests(dep, "canary", 20)

    outcome = rollout_evaluate(deployment=dep, now=_later(dep, 299))

    assert outcome.action == "waiting"
    dep.refresh_from_db()
    assert dep.canary_weight == 10


def test_a_paused_canary_does_not_step_but_still_rolls_back(project, engineer):
    dep = canary_deployment(project, engineer, error_rate=0.05)
    dep = deployment_rollout_set(actor=engineer, deployment=dep, action="pause")
    now = _later(dep)
    requests(dep, "stable", 40, at=now - timedelta(seconds=10))
    requests(dep, "canary", 20, at=now - timedelta(seconds=10))

    held = rollout_evaluate(deployment=dep, now=now)
    dep.refresh_from_db()
    assert held.action == "held"
    assert (dep.canary_weight, dep.rollout) == (10, Rollout.PAUSED)

    requests(dep, "canary", 20, errors=20, at=now - timedelta(seconds=5))
    rolled = rollout_evaluate(deployment=dep, now=now)

    dep.refresh_from_db()
    assert rolled.action == "rolled_back"
    assert (dep.canary_weight, dep.rollout) == (0, Rollout.ROLLED_BACK)


def test_evaluate_all_takes_only_canaries_on_traffic(project, engineer):
    failing = canary_deployment(project, engineer, error_rate=0.05)
    requests(failing, "stable", 40)
    requests(failing, "canary", 20, errors=20)
    aborted = canary_deployment(project, engineer, error_rate=0.05)
    deployment_rollout_set(actor=engineer, deployment=aborted, action="abort")
    requests(aborted, "canary", 20, errors=20)

    counts = rollout_evaluate_all()

    assert counts == {"rolled_back": 1}
    aborted.refresh_from_db()
    assert aborted.rollout == Rollout.ABORTED
    assert not aborted.decisions.filter(kind=DeploymentDecision.Kind.ROLLBACK).exists()
    assert rollout_evaluate_all() == {}


def test_beat_runs_the_evaluation_every_minute_by_default():
    entry = settings.CELERY_BEAT_SCHEDULE["rollout-evaluate"]
    assert entry["task"] == "serving.rollout_evaluate"
    assert entry["schedule"] == float(settings.PORTAL_ROLLOUT_EVALUATE_SECONDS) == 60.0


def test_the_webhook_body_carries_the_figures_and_an_hmac_of_itself(project, engineer):
    dep = canary_deployment(project, engineer, error_rate=0.05)
    requests(dep, "stable", 40)
    requests(dep, "canary", 20, errors=20)
    decision = DeploymentDecision.objects.get(pk=rollout_evaluate(deployment=dep).decision_id)

    body = webhook_body(decision)

    assert b'"breaches":[{' in body
    assert b'"event":"deployment.rollback"' in body
    import hashlib
    import hmac

    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert webhook_signature("s3cret", body) == f"sha256={expected}"


@pytest.mark.django_db(transaction=True)
def test_concurrent_evaluations_roll_back_once(project, engineer):
    dep = canary_deployment(project, engineer, error_rate=0.05)
    requests(dep, "stable", 40)
    requests(dep, "canary", 20, errors=20)
    barrier = threading.Barrier(3)
    actions = []

    def evaluate():
        try:
            barrier.wait(timeout=10)
            actions.append(rollout_evaluate(deployment=dep).action)
        finally:
            connection.close()

    threads = [threading.Thread(target=evaluate) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    assert sorted(actions) == ["idle", "idle", "rolled_back"]
    assert dep.decisions.filter(kind=DeploymentDecision.Kind.ROLLBACK).count() == 1
    assert StageChange.objects.filter(model_version=dep.canary_version).count() == 1
    assert AuditEvent.objects.filter(action="governance.version.withdraw").count() == 1
