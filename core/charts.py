"""Interactive charts: Apache ECharts options built on the server.

Each function returns a `Chart`: the ECharts option object as plain JSON-ready data, which a
template renders as an empty element carrying that JSON in a data attribute. The page runs
under a strict Content-Security-Policy (no inline scripts, no style attributes), so nothing
here writes script or style: static/js/charts.js finds every such element and initialises it
with the vendored ECharts (static/vendor/echarts/). Options are JSON only, never JavaScript
functions; the few drawings that need code (interval rows) name a renderer that charts.js
supplies. Live charts carry a `src` URL that returns fresh `Chart.payload()` JSON; charts.js
feeds it to setOption so the chart updates in place, keeping the user's zoom and legend state.

Every function is pure and quick; text reaches the browser as JSON data, never as markup.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from operator import itemgetter
from typing import Any

from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

__all__ = [
    "MAX_LINE_POINTS",
    "MIN_RELATIVE_SPAN",
    "MISSING_FILL",
    "SERIES_COLOURS",
    "Chart",
    "bar_chart",
    "heatmap",
    "histogram",
    "interval_chart",
    "line_chart",
    "nice_ticks",
    "progress_bar",
    "y_range",
]

MISSING_FILL = "#cccccc"
MAX_LINE_POINTS = 1000
# Cell values are written into the heatmap only while they can still be read.
MAX_LABELLED_CELLS = 15
# A value axis never spans less than this share of the largest value shown: two losses 0.002
# apart are a flat line, not a cliff filling the whole chart.
MIN_RELATIVE_SPAN = 0.1
# Okabe-Ito: distinguishable for the common forms of colour blindness; yellow last, faint on
# white. The dossier's static figures use the same order.
SERIES_COLOURS = (
    "#0072b2",
    "#e69f00",
    "#009e73",
    "#d55e00",
    "#cc79a7",
    "#56b4e9",
    "#000000",
    "#f0e442",
)
HIGHLIGHT = "#d55e00"
# ColorBrewer "Blues" without its near-white first stop, so the lowest cells stay visible.
HEAT_COLOURS = (
    "#deebf7",
    "#c6dbef",
    "#9ecae1",
    "#6baed6",
    "#4292c6",
    "#2171b5",
    "#08519c",
    "#08306b",
)
_TEXT = "#1c2330"
_MUTED = "#5d6778"


@dataclass(frozen=True)
class Chart:
    """One chart: ECharts `options`, the height to give its element, and what charts.js adds
    around it (`smooth`: an EMA toggle over the line series; `src`: where fresh data lives)."""

    options: dict[str, Any]
    title: str
    height: int
    smooth: bool = False
    src: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        return {"options": self.options, "smooth": self.smooth, **self.extra}

    def json(self) -> str:
        return json.dumps(self.payload(), separators=(",", ":"), allow_nan=False)

    def with_source(self, src: str) -> Chart:
        return replace(self, src=src)

    def __html__(self) -> SafeString:
        src = format_html(' data-src="{}"', self.src) if self.src else ""
        return format_html(
            '<div class="echart" role="img" aria-label="{}" data-height="{}" data-chart="{}"{}>'
            "</div>",
            self.title,
            self.height,
            self.json(),
            src,
        )

    def __str__(self) -> str:
        return str(self.__html__())


# --- numbers -------------------------------------------------------------------------------


def _num(value: object) -> float:
    return math.nan if value is None else float(value)  # type: ignore[arg-type]


def _json_num(value: float) -> float | None:
    """JSON has no NaN: ECharts reads null as a gap."""
    return value if math.isfinite(value) else None


def _nice_step(raw: float) -> float:
    magnitude = 10.0 ** math.floor(math.log10(raw))
    norm = raw / magnitude
    if norm < 1.5:
        return magnitude
    if norm < 3:
        return 2 * magnitude
    if norm < 7:
        return 5 * magnitude
    return 10 * magnitude


def _decimals(step: float) -> int:
    return max(0, -math.floor(math.log10(step) + 1e-9))


def nice_ticks(lo: float, hi: float, *, target: int = 5, integer: bool = False) -> list[float]:
    """Round tick values 1, 2 or 5 x 10^k apart, all inside [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    lo, hi = min(lo, hi), max(lo, hi)
    if hi == lo:
        return [lo]
    step = _nice_step((hi - lo) / target)
    if integer:
        step = max(step, 1.0)
    decimals = _decimals(step)
    first = math.ceil(lo / step - 1e-9)
    last = math.floor(hi / step + 1e-9)
    # Rounding removes float noise such as 0.6000000000000001; adding 0.0 turns -0.0 into 0.0.
    return [round(k * step, decimals) + 0.0 for k in range(first, last + 1)]


def y_range(
    values: Sequence[float], *, pad: float = 0.05, keep_sign: bool = True
) -> tuple[float, float] | None:
    """A readable value-axis range around `values`: at least MIN_RELATIVE_SPAN of the largest
    magnitude wide, padded by `pad` of the span on each side, and never below zero for data
    that is never negative (`keep_sign`). Ends are rounded to a tenth of a nice step, so the
    axis labels stay short. None when there is nothing finite to show."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return None
    lo, hi = min(finite), max(finite)
    floor = MIN_RELATIVE_SPAN * max(abs(lo), abs(hi)) or 1.0
    if hi - lo < floor:
        middle = (hi + lo) / 2
        lo, hi = middle - floor / 2, middle + floor / 2
    margin = (hi - lo) * pad
    new_lo, new_hi = lo - margin, hi + margin
    # Padding must not invent negative values for data that cannot be negative (losses, counts).
    if keep_sign and min(finite) >= 0 > new_lo:
        new_lo = 0.0
    grain = _nice_step((new_hi - new_lo) / 5) / 10
    return (
        round(math.floor(new_lo / grain) * grain, 12) + 0.0,
        round(math.ceil(new_hi / grain) * grain, 12) + 0.0,
    )


def _downsample(xs: list[float], ys: list[float], limit: int) -> tuple[list[float], list[float]]:
    """At most `limit` points; keeps the first, the last and each bucket's lowest and highest y,
    so spikes and the overall extremes survive, which plain striding would drop.
    """
    n = len(xs)
    if n <= limit:
        return xs, ys
    buckets = (limit - 2) // 2
    inner = n - 2
    keep = [0]
    for b in range(buckets):
        start = 1 + b * inner // buckets
        end = 1 + (b + 1) * inner // buckets
        if start >= end:
            continue
        chunk = ys[start:end]
        i_min = start + chunk.index(min(chunk))
        i_max = start + chunk.index(max(chunk))
        keep.extend(sorted({i_min, i_max}))
    keep.append(n - 1)
    return [xs[i] for i in keep], [ys[i] for i in keep]


def _fmt_edge(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"


# --- shared option parts -------------------------------------------------------------------


def _base(title: str, *, legend: Sequence[str] = (), zoom: bool = False) -> dict[str, Any]:
    """Title, toolbox (PNG download; box zoom and reset where the chart zooms), tooltip and
    grid every chart shares."""
    features: dict[str, Any] = {"saveAsImage": {"title": "PNG", "name": title[:60] or "chart"}}
    if zoom:
        features = {
            "dataZoom": {"title": {"zoom": "Zoom", "back": "Undo zoom"}},
            "restore": {"title": "Reset"},
            **features,
        }
    options: dict[str, Any] = {
        "animation": False,
        "color": list(SERIES_COLOURS),
        "textStyle": {"color": _TEXT},
        "title": {"text": title, "left": 8, "top": 4, "textStyle": {"fontSize": 14}},
        "toolbox": {"right": 12, "top": 4, "feature": features},
        # The class names ECharts' tooltip box, for the stylesheet and for browser tests.
        "tooltip": {"confine": True, "className": "echart-tooltip"},
        "grid": {
            "left": 12,
            "right": 24,
            "top": 64 if legend else 44,
            "bottom": 12,
            "containLabel": True,
        },
        # Shown by charts.js when the chart has nothing to draw.
        "graphic": [_empty_note(False)],
    }
    if legend:
        options["legend"] = {"top": 30, "left": 8, "type": "scroll", "data": list(legend)}
    return options


def _empty_note(empty: bool) -> dict[str, Any]:
    """The "No data" label in the middle of the chart. Silent: ECharts hit-tests invisible
    elements too and gives every graphic element a tooltip of its own (its empty name), so a
    pointer resting on the hidden label swapped the axis tooltip for an empty one."""
    return {
        "id": "empty",
        "type": "text",
        "left": "center",
        "top": "middle",
        "silent": True,
        "invisible": not empty,
        "style": {"text": "No data", "fill": _MUTED, "fontSize": 13},
    }


def _axis_name(name: str, *, vertical: bool = False) -> dict[str, Any]:
    if not name:
        return {}
    if vertical:
        return {"name": name, "nameLocation": "middle", "nameGap": 44, "nameRotate": 90}
    return {"name": name, "nameLocation": "middle", "nameGap": 28}


def _set_empty(options: dict[str, Any], empty: bool) -> None:
    options["graphic"] = [_empty_note(empty)]


# --- charts --------------------------------------------------------------------------------


def bar_chart(
    *,
    categories: Sequence[str],
    values: Sequence[float],
    title: str,
    y_label: str = "",
    highlight: str | None = None,
    width: int = 640,
    height: int = 320,
) -> Chart:
    """Vertical bars from a zero baseline, one per category; NaN values draw no bar. `width`
    is accepted for older callers: the chart fills its container."""
    cats = [str(c) for c in categories]
    vals = [_num(v) for v in values]
    if len(cats) != len(vals):
        raise ValueError("categories and values must have the same length")
    data: list[Any] = []
    for cat, v in zip(cats, vals, strict=True):
        point: dict[str, Any] = {"value": _json_num(v)}
        if highlight is not None and cat == highlight:
            point["itemStyle"] = {"color": HIGHLIGHT}
        data.append(point)
    options = _base(title)
    options["tooltip"] |= {"trigger": "axis", "axisPointer": {"type": "shadow"}}
    options["xAxis"] = {
        "type": "category",
        "data": cats,
        "axisLabel": {"interval": "auto", "rotate": 45 if len(cats) > 8 else 0},
    }
    options["yAxis"] = {"type": "value", **_axis_name(y_label, vertical=True)}
    options["series"] = [
        {
            "type": "bar",
            "name": y_label or "value",
            "data": data,
            "barMaxWidth": 48,
            "label": {"show": len(cats) <= 20, "position": "top", "fontSize": 11},
        }
    ]
    _set_empty(options, not any(math.isfinite(v) for v in vals))
    return Chart(options=options, title=title, height=int(height))


def _bin_counts(values: Sequence[float], edges: Sequence[float]) -> list[int]:
    lo, hi, bins = edges[0], edges[-1], len(edges) - 1
    scale = bins / (hi - lo)
    counts = [0] * bins
    for v in values:
        counts[min(int((v - lo) * scale), bins - 1)] += 1
    return counts


def _bin_edges(pool: Sequence[float], bins: int) -> list[float]:
    if not pool:
        return [i / bins for i in range(bins + 1)]
    lo, hi = min(pool), max(pool)
    # Integer data (lengths, counts) with few distinct values gets one bin per integer, which
    # avoids empty slivers between the integers.
    if hi - lo + 1 <= bins and all(v.is_integer() for v in pool):
        return [lo - 0.5 + i for i in range(int(hi - lo) + 2)]
    if lo == hi:
        delta = abs(lo) * 0.1 or 1.0
        lo, hi = lo - delta, hi + delta
    return [lo + (hi - lo) * i / bins for i in range(bins)] + [hi]


def histogram(
    *,
    values: Sequence[float] | None = None,
    bins: int = 20,
    counts: Sequence[int] | None = None,
    edges: Sequence[float] | None = None,
    series: Mapping[str, Sequence[float]] | None = None,
    title: str,
    x_label: str = "",
    width: int = 640,
    height: int = 320,
) -> Chart:
    """Distribution of raw `values`, of precomputed `counts` over `edges` (one more edge than
    counts), or of several named `series` overlaid on shared bins. Exactly one form is given.
    """
    named: list[tuple[str, Sequence[float]]]
    if counts is not None or edges is not None:
        if counts is None or edges is None or values is not None or series is not None:
            raise ValueError("give counts together with edges, and nothing else")
        edge_list = [float(e) for e in edges]
        if len(edge_list) != len(counts) + 1:
            raise ValueError("edges must have exactly one more entry than counts")
        named = [("count", [_num(c) for c in counts])]
    else:
        if (values is None) == (series is None):
            raise ValueError("give exactly one of values, series, or counts with edges")
        raw = {"count": values} if values is not None else dict(series or {})
        clean = {str(k): [x for x in map(_num, vs) if math.isfinite(x)] for k, vs in raw.items()}
        edge_list = _bin_edges([x for vs in clean.values() for x in vs], max(1, int(bins)))
        named = [(name, _bin_counts(vs, edge_list)) for name, vs in clean.items()]
    overlaid = series is not None
    last = len(edge_list) - 2
    bin_names = [
        f"[{_fmt_edge(edge_list[j])}, {_fmt_edge(edge_list[j + 1])}{']' if j == last else ')'}"
        for j in range(len(edge_list) - 1)
    ]
    options = _base(title, legend=[n for n, _ in named] if overlaid else ())
    options["tooltip"] |= {"trigger": "axis", "axisPointer": {"type": "shadow"}}
    options["xAxis"] = {"type": "category", "data": bin_names, **_axis_name(x_label)}
    options["yAxis"] = {"type": "value", "minInterval": 1}
    options["series"] = [
        {
            "type": "bar",
            "name": name,
            "data": [_json_num(c) for c in cs],
            "barCategoryGap": "2%",
            # Overlaid series share each bin, see-through so every one stays visible.
            **({"barGap": "-100%", "itemStyle": {"opacity": 0.5}} if overlaid else {}),
        }
        for name, cs in named
    ]
    peak = max((c for _, cs in named for c in cs if math.isfinite(c)), default=0)
    _set_empty(options, peak == 0)
    return Chart(options=options, title=title, height=int(height))


def _line_points(
    points: Sequence[tuple[float, float]], *, y_log: bool
) -> tuple[list[float], list[float]]:
    isfinite = math.isfinite
    pts = [(float(x), float(y)) for x, y in points if x is not None and y is not None]
    pts = [p for p in pts if isfinite(p[0]) and isfinite(p[1]) and (p[1] > 0 or not y_log)]
    pts.sort(key=itemgetter(0))
    return _downsample([p[0] for p in pts], [p[1] for p in pts], MAX_LINE_POINTS)


def line_chart(
    *,
    series: Mapping[str, Sequence[tuple[float, float]]],
    title: str,
    x_label: str = "",
    y_label: str = "",
    y_log: bool = False,
    smooth: bool = False,
    width: int = 640,
    height: int = 320,
) -> Chart:
    """Named (x, y) series with a legend that toggles them, hover values on a shared x, and
    zoom. Points with NaN/inf (and y <= 0 on a log axis) are skipped; each series is sorted by
    x and thinned to MAX_LINE_POINTS. A series with no points is left out altogether (no
    legend entry). `smooth` offers an EMA toggle over the series, as W&B does for losses.
    """
    lines = [(str(name), *_line_points(points, y_log=y_log)) for name, points in series.items()]
    drawn = [line for line in lines if line[1]]
    options = _base(title, legend=[name for name, _, _ in drawn], zoom=True)
    options["tooltip"] |= {"trigger": "axis", "axisPointer": {"type": "line"}}
    all_x = [x for _, xs, _ in drawn for x in xs]
    integer_x = all(x.is_integer() for x in all_x)
    options["xAxis"] = {
        "type": "value",
        "scale": True,
        **({"minInterval": 1} if integer_x else {}),
        **_axis_name(x_label),
    }
    y_axis: dict[str, Any] = {
        "type": "log" if y_log else "value",
        **_axis_name(y_label, vertical=True),
    }
    if not y_log:
        span = y_range([y for _, _, ys in drawn for y in ys])
        if span is not None:
            y_axis["min"], y_axis["max"] = span
            # The padded ends are not round numbers: label only the ticks between them.
            y_axis["axisLabel"] = {"showMinLabel": False, "showMaxLabel": False}
    options["yAxis"] = y_axis
    options["grid"]["bottom"] = 44  # room for the zoom slider
    options["dataZoom"] = [
        {"type": "inside", "xAxisIndex": 0, "filterMode": "none"},
        {"type": "slider", "xAxisIndex": 0, "filterMode": "none", "height": 18, "bottom": 6},
    ]
    options["series"] = [
        {
            "type": "line",
            "id": name,
            "name": name,
            "data": [[x, y] for x, y in zip(xs, ys, strict=True)],
            "showSymbol": len(xs) <= 60,
            "symbolSize": 5,
            "lineStyle": {"width": 2},
            "emphasis": {"focus": "series"},
        }
        for name, xs, ys in drawn
    ]
    _set_empty(options, not drawn)
    return Chart(options=options, title=title, height=int(height), smooth=smooth)


def interval_chart(
    *,
    rows: Sequence[tuple[str, float, float, float]],
    title: str,
    x_label: str = "",
    width: int = 640,
) -> Chart:
    """One horizontal row per (name, estimate, low, high), in the order given, drawn as a
    point with its interval; the height grows with the number of rows."""
    parsed = [(str(name), _num(est), _num(low), _num(high)) for name, est, low, high in rows]
    data = [
        [i, est, min(low, high), max(low, high), name]
        for i, (name, est, low, high) in enumerate(parsed)
        if all(math.isfinite(v) for v in (est, low, high))
    ]
    span = y_range(
        [v for _, *vs in parsed for v in vs if math.isfinite(v)], pad=0.04, keep_sign=False
    )
    options = _base(title)
    options["tooltip"] |= {"trigger": "item"}
    options["yAxis"] = {
        "type": "category",
        "data": [name for name, *_ in parsed],
        "inverse": True,
        "axisLabel": {"width": 200, "overflow": "truncate"},
    }
    options["xAxis"] = {"type": "value", **_axis_name(x_label)}
    if span is not None:
        options["xAxis"]["min"], options["xAxis"]["max"] = span
    options["grid"]["bottom"] = 36 if x_label else 12
    options["series"] = [
        {
            "type": "custom",
            "name": "estimate",
            # charts.js draws each row: a point at the estimate, a line from low to high.
            "renderItem": "interval",
            "encode": {"y": 0, "x": [1, 2, 3], "tooltip": [1, 2, 3]},
            "dimensions": ["row", "estimate", "low", "high", "name"],
            "data": data,
        }
    ]
    _set_empty(options, not data)
    height = 44 + 30 * max(len(parsed), 1) + (48 if x_label else 28)
    return Chart(options=options, title=title, height=height)


def heatmap(
    *,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    values: Sequence[Sequence[float | None]],
    title: str,
    fmt: str = "{:.2f}",
    vmin: float | None = None,
    vmax: float | None = None,
    width: int = 640,
) -> Chart:
    """Grid of cells coloured by value (None or NaN: grey); values are written in the cells
    while the grid is at most 15 x 15. The height follows from the number of rows."""
    rows, cols = [str(r) for r in row_labels], [str(c) for c in col_labels]
    grid = [[_num(v) for v in row] for row in values]
    if len(grid) != len(rows) or any(len(row) != len(cols) for row in grid):
        raise ValueError("values must have one row per row label and one column per column label")
    finite = [v for row in grid for v in row if math.isfinite(v)]
    lo = float(vmin) if vmin is not None else min(finite, default=0.0)
    hi = float(vmax) if vmax is not None else max(finite, default=1.0)
    labelled = len(rows) <= MAX_LABELLED_CELLS and len(cols) <= MAX_LABELLED_CELLS
    cells: list[dict[str, Any]] = []
    missing: list[list[int]] = []
    for i, row in enumerate(grid):
        for j, v in enumerate(row):
            if math.isfinite(v):
                cell: dict[str, Any] = {"value": [j, i, v]}
                if labelled:
                    cell["label"] = {"formatter": fmt.format(v)}
                cells.append(cell)
            else:
                missing.append([j, i, 0])
    options = _base(title)
    options["tooltip"] |= {"trigger": "item"}
    options["xAxis"] = {
        "type": "category",
        "data": cols,
        "position": "top",
        "axisLabel": {"rotate": 45 if max(map(len, cols), default=0) > 6 else 0},
        "splitArea": {"show": False},
    }
    options["yAxis"] = {"type": "category", "data": rows, "inverse": True}
    options["grid"] |= {"top": 44, "bottom": 56}
    options["visualMap"] = {
        "type": "continuous",
        "min": lo,
        "max": hi if hi > lo else lo + 1,
        "seriesIndex": 0,
        "orient": "horizontal",
        "left": 12,
        "bottom": 4,
        "itemHeight": 160,
        "calculable": True,
        "inRange": {"color": list(HEAT_COLOURS)},
    }
    options["series"] = [
        {
            "type": "heatmap",
            "name": title,
            "data": cells,
            "label": {"show": labelled, "fontSize": 11},
            "itemStyle": {"borderColor": "#ffffff", "borderWidth": 1},
        },
        {
            "type": "heatmap",
            "name": "no data",
            "data": missing,
            "itemStyle": {"color": MISSING_FILL, "borderColor": "#ffffff", "borderWidth": 1},
            "tooltip": {"show": False},
        },
    ]
    _set_empty(options, not rows or not cols)
    height = 44 + 40 + min(40, max(16, 480 // max(len(rows), 1))) * max(len(rows), 1) + 56
    return Chart(options=options, title=title, height=height)


def progress_bar(*, done: int, total: int, label: str) -> SafeString:
    """A native <progress> with the text "done / total (pct%)"; the percentage rounds down so
    that 100% means finished.
    """
    done, total = int(done), int(total)
    filled = min(max(done, 0), max(total, 0))
    pct = 100 * filled // total if total > 0 else 0
    text = escape(f"{done} / {total} ({pct}%)")
    name = escape(label)
    return mark_safe(  # noqa: S308 - label and text are escaped above
        f'<div class="chart-progress"><span class="chart-progress-label">{name}</span>'
        f'<progress class="chart-progress-bar" max="{max(total, 1)}" value="{filled}" '
        f'aria-label="{name}" aria-valuetext="{text}">{text}</progress>'
        f'<span class="chart-progress-text">{text}</span></div>'
    )
