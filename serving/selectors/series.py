"""Time series of a deployment's traffic for the page's live charts and the API: per arm and
per time bucket, requests, errors, guardrail flags, latency percentiles, tokens and cost.

PostgreSQL buckets and ranks in one query (`date_bin`, `percentile_cont`); the embedded
SQLite demo has neither, so there the rows of the window are read and bucketed here, with
the same interpolated percentiles (`on_postgresql()` picks the twin)."""

import math
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Count, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from core.db import on_postgresql
from serving.models import Arm, Deployment, RequestRecord
from serving.selectors.stats import percentile_cont

# The windows a page or a client may ask for: (span, bucket width), in seconds. About 60
# buckets each, so a chart draws the same number of points whatever the span.
WINDOWS: dict[str, tuple[int, int]] = {
    "15m": (15 * 60, 15),
    "1h": (3600, 60),
    "6h": (6 * 3600, 300),
    "24h": (24 * 3600, 1800),
    "7d": (7 * 86400, 3 * 3600),
}
DEFAULT_WINDOW = "15m"
ARM_ORDER = (Arm.STABLE, Arm.CANARY, Arm.SHADOW)
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Bucket:
    """One arm's requests that started in [at, at + width)."""

    arm: str
    at: datetime
    requests: int
    errors: int  # the client got an error, or the canary failed and stable answered
    flagged: int  # at least one guardrail flag
    p50_ms: float | None
    p95_ms: float | None
    tokens_in: int
    tokens_out: int
    cost: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"at": self.at.isoformat()}


@dataclass(frozen=True)
class Day:
    arm: str
    day: date
    requests: int
    tokens_in: int
    tokens_out: int
    cost: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"day": self.day.isoformat()}


@dataclass(frozen=True)
class Series:
    window: str
    bucket_s: int
    since: datetime
    until: datetime
    buckets: list[Bucket]
    days: list[Day]
    first_day: datetime  # UTC midnight of the oldest day in `days`

    def arms(self) -> list[str]:
        present = {b.arm for b in self.buckets} | {d.arm for d in self.days}
        return [arm for arm in ARM_ORDER if arm in present]


def _bucket_start(moment: datetime, width: int) -> datetime:
    seconds = (moment - _EPOCH).total_seconds()
    return _EPOCH + timedelta(seconds=math.floor(seconds / width) * width)


_BUCKETS_SQL = """
SELECT arm,
       date_bin(make_interval(secs => %(width)s), created_at, %(origin)s) AS bucket,
       count(*),
       count(*) FILTER (WHERE status >= 400 OR fell_back),
       count(*) FILTER (WHERE guardrail_flags <> '[]'::jsonb),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms),
       coalesce(sum(tokens_in), 0),
       coalesce(sum(tokens_out), 0),
       coalesce(sum(cost), 0)
FROM serving_requestrecord
WHERE deployment_id = %(deployment)s AND created_at >= %(since)s AND created_at < %(until)s
GROUP BY 1, 2
ORDER BY 2, 1
"""


def _buckets_postgresql(
    deployment: Deployment, since: datetime, until: datetime, width: int
) -> list[Bucket]:
    params: dict[str, int | datetime] = {
        "width": width,
        "origin": _EPOCH,
        "deployment": deployment.pk,
        "since": since,
        "until": until,
    }
    with connection.cursor() as cursor:
        cursor.execute(_BUCKETS_SQL, params)
        rows = cursor.fetchall()
    return [
        Bucket(arm, at, n, errors, flagged, p50, p95, int(t_in), int(t_out), float(cost))
        for arm, at, n, errors, flagged, p50, p95, t_in, t_out, cost in rows
    ]


def _buckets_portable(
    deployment: Deployment, since: datetime, until: datetime, width: int
) -> list[Bucket]:
    rows = RequestRecord.objects.filter(
        deployment=deployment, created_at__gte=since, created_at__lt=until
    ).values_list(
        "arm",
        "created_at",
        "status",
        "fell_back",
        "guardrail_flags",
        "latency_ms",
        "tokens_in",
        "tokens_out",
        "cost",
    )
    groups: dict[tuple[str, datetime], list[tuple]] = defaultdict(list)
    for row in rows.iterator(chunk_size=5000):
        groups[(row[0], _bucket_start(row[1], width))].append(row)
    found = []
    for (arm, at), members in groups.items():
        latencies = [m[5] for m in members]
        found.append(
            Bucket(
                arm=arm,
                at=at,
                requests=len(members),
                errors=sum(1 for m in members if m[2] >= 400 or m[3]),
                flagged=sum(1 for m in members if m[4]),
                p50_ms=percentile_cont(latencies, 0.5),
                p95_ms=percentile_cont(latencies, 0.95),
                tokens_in=sum(m[6] for m in members),
                tokens_out=sum(m[7] for m in members),
                cost=float(sum(m[8] for m in members)),
            )
        )
    found.sort(key=lambda b: (b.at, b.arm))
    return found


def _days(deployment: Deployment, since: datetime) -> list[Day]:
    rows = (
        RequestRecord.objects.filter(deployment=deployment, created_at__gte=since)
        .annotate(day=TruncDate("created_at", tzinfo=UTC))
        .values("arm", "day")
        .annotate(
            requests=Count("id"),
            tokens_in_sum=Sum("tokens_in"),
            tokens_out_sum=Sum("tokens_out"),
            cost_sum=Sum("cost"),
        )
        .order_by("day", "arm")
    )
    return [
        Day(
            arm=row["arm"],
            day=row["day"],
            requests=row["requests"],
            tokens_in=int(row["tokens_in_sum"] or 0),
            tokens_out=int(row["tokens_out_sum"] or 0),
            cost=float(row["cost_sum"] or 0),
        )
        for row in rows
    ]


def deployment_series(
    *,
    deployment: Deployment,
    window: str = DEFAULT_WINDOW,
    days: int = 14,
    now: datetime | None = None,
) -> Series:
    """The deployment's traffic over `window` (a key of WINDOWS) in buckets per arm, and
    its tokens and cost per UTC day over the last `days` days. Caller has checked that the
    user may read the deployment's project."""
    span, width = WINDOWS[window]
    until = now or timezone.now()
    # Whole buckets only: the oldest would otherwise be drawn as a partial dip.
    since = _bucket_start(until - timedelta(seconds=span), width)
    until_edge = until + timedelta(microseconds=1)
    pick = _buckets_postgresql if on_postgresql() else _buckets_portable
    first_day = datetime.combine(
        (until - timedelta(days=days - 1)).date(), datetime.min.time(), tzinfo=UTC
    )
    return Series(
        window=window,
        bucket_s=width,
        since=since,
        until=until,
        buckets=pick(deployment, since, until_edge, width),
        days=_days(deployment, first_day),
        first_day=first_day,
    )


@dataclass(frozen=True)
class ArmTotals:
    arm: str
    requests: int
    error_rate: float | None
    flag_rate: float | None


def window_totals(series: Series) -> list[ArmTotals]:
    """Per arm over the whole window: what the page prints beside the charts."""
    totals = []
    for arm in series.arms():
        mine = [b for b in series.buckets if b.arm == arm]
        n = sum(b.requests for b in mine)
        totals.append(
            ArmTotals(
                arm=arm,
                requests=n,
                error_rate=sum(b.errors for b in mine) / n if n else None,
                flag_rate=sum(b.flagged for b in mine) / n if n else None,
            )
        )
    return totals
