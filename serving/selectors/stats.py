"""Window statistics of a deployment's arms: what the rollback rules compare and the page
charts show. One pass over the window's telemetry rows (the (deployment, created_at) index
bounds it), feedback joined by request id.

A canary request that failed and was answered by stable instead (`fell_back`) counts as a
canary request and a canary error, whichever arm its row names.

Unscoped: callers (the rollout service, project-scoped pages) have scoped the deployment.
"""

import math
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from django.db import connection

from core.db import on_postgresql
from serving.models import Arm, Feedback, RequestRecord

ARMS = (Arm.STABLE, Arm.CANARY)


@dataclass(frozen=True)
class ArmStats:
    arm: str
    requests: int
    errors: int
    error_rate: float
    p50_ms: float | None
    p95_ms: float | None
    flagged: int
    flag_rate: float
    # Requests that got feedback, and those whose feedback was negative (a score below 0).
    with_feedback: int
    negative_feedback: int
    negative_feedback_rate: float

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def _arm_stats(
    arm: str,
    requests: int,
    errors: int,
    flagged: int,
    with_feedback: int,
    negative: int,
    p50: float | None,
    p95: float | None,
) -> ArmStats:
    return ArmStats(
        arm=arm,
        requests=requests,
        errors=errors,
        error_rate=errors / requests if requests else 0.0,
        p50_ms=p50,
        p95_ms=p95,
        flagged=flagged,
        flag_rate=flagged / requests if requests else 0.0,
        with_feedback=with_feedback,
        negative_feedback=negative,
        negative_feedback_rate=negative / with_feedback if with_feedback else 0.0,
    )


# The tables are serving_feedback and serving_requestrecord (Django's default names).
_SQL = """
WITH fb AS (
    SELECT request_id, min(score) AS score
    FROM serving_feedback
    WHERE deployment_id = %(deployment)s AND created_at >= %(since)s
    GROUP BY request_id
), r AS (
    SELECT CASE WHEN fell_back THEN 'canary' ELSE arm END AS arm,
           status, fell_back, latency_ms, guardrail_flags, request_id
    FROM serving_requestrecord
    WHERE deployment_id = %(deployment)s
      AND created_at >= %(since)s AND created_at < %(until)s
      AND (arm IN ('stable', 'canary') OR fell_back)
)
SELECT r.arm,
       count(*),
       count(*) FILTER (WHERE r.status >= 500 OR r.fell_back),
       count(*) FILTER (WHERE r.guardrail_flags <> '[]'::jsonb),
       count(fb.request_id),
       count(*) FILTER (WHERE fb.score < 0),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY r.latency_ms),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY r.latency_ms)
FROM r LEFT JOIN fb ON fb.request_id = r.request_id
GROUP BY r.arm
"""


def arm_window_stats(
    *, deployment_id: int, since: datetime, until: datetime
) -> dict[str, ArmStats]:
    """{"stable": ArmStats, "canary": ArmStats} over requests made in [since, until)."""
    if on_postgresql():
        with connection.cursor() as cursor:
            cursor.execute(_SQL, {"deployment": deployment_id, "since": since, "until": until})
            rows = {row[0]: row for row in cursor.fetchall()}
        found = {arm: _arm_stats(*rows[arm]) for arm in rows}
    else:
        found = _arm_window_stats_python(deployment=deployment_id, since=since, until=until)
    empty = _arm_stats("", 0, 0, 0, 0, 0, None, None)
    return {arm: found.get(arm) or ArmStats(**{**asdict(empty), "arm": arm}) for arm in ARMS}


def percentile_cont(values: list[float], fraction: float) -> float | None:
    """PostgreSQL's percentile_cont: linear interpolation between the closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _arm_window_stats_python(
    *, deployment: int, since: datetime, until: datetime
) -> dict[str, ArmStats]:
    """The SQLite twin (the embedded demo): the same figures computed in Python."""
    scores: dict[str, float] = {}
    for request_id, score in Feedback.objects.filter(
        deployment_id=deployment, created_at__gte=since
    ).values_list("request_id", "score"):
        scores[request_id] = min(score, scores.get(request_id, score))
    rows = RequestRecord.objects.filter(
        deployment_id=deployment, created_at__gte=since, created_at__lt=until
    ).values_list("arm", "status", "fell_back", "latency_ms", "guardrail_flags", "request_id")
    gathered: dict[str, dict[str, Any]] = {}
    for arm, status, fell_back, latency, flags, request_id in rows.iterator():
        arm = Arm.CANARY if fell_back else arm
        if arm not in ARMS:
            continue
        g = gathered.setdefault(arm, {"lat": [], "err": 0, "flag": 0, "fb": 0, "neg": 0})
        g["lat"].append(latency)
        g["err"] += status >= 500 or fell_back
        g["flag"] += bool(flags)
        if request_id in scores:
            g["fb"] += 1
            g["neg"] += scores[request_id] < 0
    return {
        arm: _arm_stats(
            arm,
            len(g["lat"]),
            g["err"],
            g["flag"],
            g["fb"],
            g["neg"],
            percentile_cont(g["lat"], 0.5),
            percentile_cont(g["lat"], 0.95),
        )
        for arm, g in gathered.items()
    }
