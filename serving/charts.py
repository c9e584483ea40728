"""The deployment page's charts, built from `deployment_series`: every arm on the same axes
(canary beside stable), time on the x axis. The page and its live refresh share these."""

from datetime import UTC, datetime, time

from core import charts
from serving.selectors.series import Series

CHART_HEIGHT = 260
DAY_MS = 86_400_000


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _timed(chart: charts.Chart, series: Series, *, daily: bool = False) -> charts.Chart:
    """A line chart whose x values are epoch milliseconds, drawn on a time axis over the
    whole window (so an idle arm's gap shows as one)."""
    axis: dict = {"type": "time"}
    if daily:
        today = datetime.combine(series.until.date(), time.min, tzinfo=UTC)
        axis |= {"min": _ms(series.first_day), "max": _ms(today), "minInterval": DAY_MS}
    else:
        axis |= {"min": _ms(series.since), "max": _ms(series.until)}
    chart.options["xAxis"] = axis
    return chart


def _per_arm(series: Series, value) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    for arm in series.arms():
        points = []
        for bucket in series.buckets:
            if bucket.arm != arm:
                continue
            y = value(bucket)
            if y is not None:
                points.append((_ms(bucket.at), y))
        out[arm] = points
    return out


def _per_day(series: Series, value) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    for arm in series.arms():
        out[arm] = [
            (_ms(datetime.combine(d.day, time.min, tzinfo=UTC)), value(d))
            for d in series.days
            if d.arm == arm
        ]
    return out


def deployment_charts(series: Series) -> dict[str, charts.Chart]:
    """{key: chart}; the keys name the page's chart slots and the live payload's parts."""
    width = series.bucket_s
    latency: dict[str, list[tuple[int, float]]] = {}
    for arm in series.arms():
        latency[f"{arm} p50"] = _per_arm(series, lambda b: b.p50_ms).get(arm, [])
        latency[f"{arm} p95"] = _per_arm(series, lambda b: b.p95_ms).get(arm, [])
    built = {
        "rps": _timed(
            charts.line_chart(
                series=_per_arm(series, lambda b: b.requests / width),
                title="Requests per second",
                y_label="req/s",
                height=CHART_HEIGHT,
            ),
            series,
        ),
        "latency": _timed(
            charts.line_chart(
                series=latency, title="Latency p50 / p95", y_label="ms", height=CHART_HEIGHT
            ),
            series,
        ),
        "errors": _timed(
            charts.line_chart(
                series=_per_arm(series, lambda b: 100 * b.errors / b.requests),
                title="Error rate",
                y_label="%",
                height=CHART_HEIGHT,
            ),
            series,
        ),
        "flags": _timed(
            charts.line_chart(
                series=_per_arm(series, lambda b: 100 * b.flagged / b.requests),
                title="Guardrail-flag rate",
                y_label="%",
                height=CHART_HEIGHT,
            ),
            series,
        ),
        "tokens": _timed(
            charts.line_chart(
                series=_per_day(series, lambda d: d.tokens_in + d.tokens_out),
                title="Tokens per day",
                y_label="tokens",
                height=CHART_HEIGHT,
            ),
            series,
            daily=True,
        ),
        "cost": _timed(
            charts.line_chart(
                series=_per_day(series, lambda d: d.cost),
                title="Estimated cost per day",
                y_label="cost",
                height=CHART_HEIGHT,
            ),
            series,
            daily=True,
        ),
    }
    return built
