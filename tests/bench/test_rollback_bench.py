"""Canary analysis figures: how long from a breach of the rollback rules to the canary at
weight 0 with the production beat interval (60 s), and how long the window statistics take
over a million telemetry rows."""

import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from serving.models import Deployment
from serving.selectors.stats import arm_window_stats
from serving.services.rollout import rollout_evaluate
from tests.serving.gateway_support import gateway_client, serve, stop, wait_routed
from tests.serving.rollout_support import canary_deployment
from tests.serving.test_rollback_e2e import Traffic
from tests.support import servers

PRODUCTION_INTERVAL_S = 60
RULES = {"window_s": 30, "min_requests": 10, "error_rate": 0.1}


@pytest.fixture
def production_beat(test_database_url, server_log_dir):
    child = servers.start_celery_beat(
        servers.child_env(
            test_database_url, PORTAL_ROLLOUT_EVALUATE_SECONDS=str(PRODUCTION_INTERVAL_S)
        ),
        server_log_dir,
        name="beat-rollout-bench",
    )
    yield child
    child.stop()


def _breached(deployment_id: int) -> bool:
    now = timezone.now()
    stats = arm_window_stats(
        deployment_id=deployment_id, since=now - timedelta(seconds=RULES["window_s"]), until=now
    )
    canary, stable = stats["canary"], stats["stable"]
    return (
        canary.requests >= RULES["min_requests"]
        and canary.error_rate - stable.error_rate > RULES["error_rate"]
    )


@pytest.mark.django_db(transaction=True)
def test_rollback_decision_within_90_s_of_the_breach(
    project, engineer, asgi_server, celery_worker, production_beat, report
):
    s = serve(project, engineer, canary_weight=50, rollback_rules=RULES)
    traffic = None
    try:
        with gateway_client(asgi_server, s.raw_key) as client:
            wait_routed(client, s.dep.name)
        traffic = Traffic(asgi_server, s.raw_key, s.dep.name).start()
        time.sleep(5)
        s.canary.fail = True
        deadline = time.monotonic() + 60
        while not _breached(s.dep.pk):
            assert time.monotonic() < deadline, "the rules were never breached"
            time.sleep(0.2)
        breach_at = time.monotonic()
        deadline = breach_at + 2 * PRODUCTION_INTERVAL_S
        while not Deployment.objects.filter(pk=s.dep.pk, canary_weight=0).exists():
            assert time.monotonic() < deadline, "no rollback within two beat intervals"
            time.sleep(0.2)
        decision_s = time.monotonic() - breach_at
    finally:
        if traffic is not None:
            traffic.stop()
        stop(s)

    report("rollback_decision_s", decision_s, "s")
    assert set(traffic.statuses) == {200}
    assert decision_s <= 90


@pytest.mark.django_db
def test_window_stats_and_one_evaluation_over_a_million_rows(project, engineer, report):
    dep = canary_deployment(project, engineer, weight=10, error_rate=0.05, p95_ms=500)
    now = timezone.now()
    with connection.cursor() as cursor:
        # 1,000,000 requests in the last 5 minutes: 10 % canary, ~1 % errors, ~2 % flagged.
        cursor.execute(
            """
            INSERT INTO serving_requestrecord (request_id, deployment_id, arm, endpoint,
                stream, status, error, fell_back, latency_ms, tokens_in, tokens_out, cost,
                guardrail_flags, end_user, created_at)
            SELECT 'bench-' || i, %s, CASE WHEN i %% 10 = 0 THEN 'canary' ELSE 'stable' END,
                'chat.completions', false, CASE WHEN i %% 97 = 7 THEN 500 ELSE 200 END, '',
                false, 50 + (i %% 200), 10, 20, 0,
                CASE WHEN i %% 53 = 3 THEN '["pii"]'::jsonb ELSE '[]'::jsonb END, '',
                %s - (1 + i %% 290) * interval '1 second'
            FROM generate_series(1, 1000000) AS i
            """,
            [dep.pk, now],
        )
        cursor.execute("ANALYZE serving_requestrecord")

    start = time.perf_counter()
    stats = arm_window_stats(deployment_id=dep.pk, since=now - timedelta(seconds=300), until=now)
    stats_s = time.perf_counter() - start
    start = time.perf_counter()
    outcome = rollout_evaluate(deployment=dep, now=now)
    evaluate_s = time.perf_counter() - start

    report("arm_window_stats_1m_rows_s", stats_s, "s")
    report("rollout_evaluate_1m_rows_s", evaluate_s, "s")
    assert stats["canary"].requests + stats["stable"].requests == 1_000_000
    assert outcome.action == "waiting"  # healthy, but no full window since the canary's step
    assert evaluate_s < 10
