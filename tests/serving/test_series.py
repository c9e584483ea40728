from datetime import timedelta

import pytest
from django.utils import timezone

from serving.selectors.series import (
    _buckets_portable,
    _buckets_postgresql,
    deployment_series,
    window_totals,
)
from serving.selectors.stats import percentile_cont as percentile
from tests.serving.factories import deployment
from tests.serving.telemetry_rows import record

pytestmark = pytest.mark.django_db


def test_percentile_interpolates_between_ranks_as_postgresql_does():
    assert percentile([], 0.5) is None
    assert percentile([10.0], 0.95) == 10.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([0.0, 100.0], 0.95) == pytest.approx(95.0)


def test_buckets_hold_each_arms_requests_errors_flags_and_latency(project, engineer):
    dep = deployment(project, engineer)
    for latency in (100.0, 200.0, 300.0):
        record(dep, arm="stable", ago_s=20, latency_ms=latency)
    record(dep, arm="canary", ago_s=20, latency_ms=900.0, status=500)
    record(dep, arm="canary", ago_s=20, latency_ms=50.0, guardrail_flags=["pii"])
    record(dep, arm="canary", ago_s=20, latency_ms=60.0, fell_back=True)

    series = deployment_series(deployment=dep, window="15m")

    by_arm = {b.arm: b for b in series.buckets}
    assert series.arms() == ["stable", "canary"]
    assert (by_arm["stable"].requests, by_arm["stable"].errors) == (3, 0)
    assert by_arm["stable"].p50_ms == pytest.approx(200.0)
    assert by_arm["stable"].p95_ms == pytest.approx(290.0)
    assert (by_arm["canary"].requests, by_arm["canary"].errors, by_arm["canary"].flagged) == (
        3,
        2,
        1,
    )
    assert by_arm["canary"].tokens_out == 60
    totals = {t.arm: t for t in window_totals(series)}
    assert totals["canary"].error_rate == pytest.approx(2 / 3)


def test_rows_outside_the_window_or_of_another_deployment_are_left_out(project, engineer):
    dep, other = deployment(project, engineer), deployment(project, engineer)
    record(dep, ago_s=20 * 60)
    record(other, ago_s=20)

    series = deployment_series(deployment=dep, window="15m")

    assert series.buckets == []
    assert sum(d.requests for d in series.days) == 1  # still today's usage


def test_the_sqlite_twin_buckets_as_postgresql_does(project, engineer):
    dep = deployment(project, engineer)
    for i, latency in enumerate((12.0, 80.0, 33.0, 410.0, 95.0, 7.5)):
        record(dep, arm=("stable", "canary")[i % 2], ago_s=5 + 40 * i, latency_ms=latency)
    record(dep, arm="canary", ago_s=70, status=429, guardrail_flags=["blocklist"])
    until = timezone.now() + timedelta(seconds=1)
    since = until - timedelta(minutes=15)

    on_postgresql = _buckets_postgresql(dep, since, until, 60)
    portable = _buckets_portable(dep, since, until, 60)

    assert len(on_postgresql) == len(portable) > 2
    for pg, twin in zip(on_postgresql, portable, strict=True):
        assert (pg.arm, pg.at, pg.requests, pg.errors, pg.flagged) == (
            twin.arm,
            twin.at,
            twin.requests,
            twin.errors,
            twin.flagged,
        )
        assert pg.p95_ms == pytest.approx(twin.p95_ms)
        assert pg.cost == pytest.approx(twin.cost)
