"""Server-rendered SVG charts.

Pages run under a strict Content-Security-Policy (no inline scripts, no style attributes), so a
chart is plain SVG: geometry and computed colours are presentation attributes, everything else
is a class from static/css/charts.css. Live charts are refreshed by htmx re-fetching the fragment
around them, so every function here is pure, quick, and returns the same bytes for the same input.
Text is always escaped: category names, labels and titles can come from users.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

__all__ = [
    "MAX_LINE_POINTS",
    "MISSING_FILL",
    "bar_chart",
    "heatmap",
    "histogram",
    "interval_chart",
    "line_chart",
    "nice_ticks",
    "progress_bar",
]

SVG_NS = "http://www.w3.org/2000/svg"
MISSING_FILL = "#cccccc"
MAX_LINE_POINTS = 1000
# A marker with its own tooltip per point is worth its bytes only on short series.
MAX_MARKED_POINTS = 60
# Cell values are written into the heatmap only while they can still be read.
MAX_LABELLED_CELLS = 15
N_SERIES_CLASSES = 8
# ColorBrewer "Blues" without its near-white first stop, so the lowest cells stay visible.
_HEAT_STOPS = (
    (0xDE, 0xEB, 0xF7),
    (0xC6, 0xDB, 0xEF),
    (0x9E, 0xCA, 0xE1),
    (0x6B, 0xAE, 0xD6),
    (0x42, 0x92, 0xC6),
    (0x21, 0x71, 0xB5),
    (0x08, 0x51, 0x9C),
    (0x08, 0x30, 0x6B),
)
# There is no text measurement on the server: margins are sized from an average glyph width.
_CHAR_EM = 0.6
_TITLE_H = 30.0
_TICK_PX = 11.0
_LABEL_PX = 12.0
_SIN45 = 0.71


# --- numbers -------------------------------------------------------------------------------


def _num(value: object) -> float:
    return math.nan if value is None else float(value)  # type: ignore[arg-type]


def _f(value: float) -> str:
    return f"{value:.2f}"


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


def _log_ticks(lo_exp: float, hi_exp: float) -> list[float]:
    """Tick values for a log axis from 10**lo_exp to 10**hi_exp."""
    ticks: list[float] = []
    for mults in ((1, 2, 5), (1,)):
        ticks = [
            m * 10.0**k
            for k in range(math.floor(lo_exp), math.ceil(hi_exp) + 1)
            for m in mults
            if lo_exp - 1e-9 <= math.log10(m) + k <= hi_exp + 1e-9
        ]
        if len(ticks) <= 8:
            break
    if len(ticks) > 8:
        ticks = ticks[:: math.ceil(len(ticks) / 6)]
    if len(ticks) < 2:
        # Less than a decade: plain round numbers read better than a lone power of ten.
        ticks = [t for t in nice_ticks(10.0**lo_exp, 10.0**hi_exp) if t > 0]
    return ticks


def _tick_formatter(ticks: Sequence[float]) -> Callable[[float], str]:
    if len(ticks) < 2:
        return _fmt_short
    step = ticks[1] - ticks[0]
    biggest = max(abs(t) for t in ticks)
    div, suffix = 1.0, ""
    if biggest >= 1e6 and step >= 1e5:
        div, suffix = 1e6, "M"
    elif biggest >= 1e4 and step >= 1e3:
        div, suffix = 1e3, "k"
    decimals = _decimals(step / div)
    return lambda v: f"{v / div:.{decimals}f}{suffix}" if v else "0"


def _fmt_log(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:g}M"
    if value >= 1e4:
        return f"{value / 1e3:g}k"
    return f"{value:g}" if value >= 1e-4 else f"{value:.0e}"


def _fmt_value(value: float) -> str:
    """Tooltip text: as exact as is still readable."""
    if not math.isfinite(value):
        return "n/a"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def _fmt_short(value: float) -> str:
    """Text drawn on the chart itself, where space is short."""
    if not math.isfinite(value):
        return "n/a"
    size = abs(value)
    if size >= 1e6:
        return f"{value / 1e6:.3g}M"
    if size >= 1e5:
        return f"{value / 1e3:.0f}k"
    if size >= 100 or value == int(value):
        return f"{value:.0f}"
    if size >= 1:
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return f"{value:.3g}"


def _span(
    lo: float, hi: float, *, pad: float = 0.0, keep_sign: bool = False
) -> tuple[float, float]:
    if hi == lo:
        delta = abs(lo) * 0.1 or 1.0
        lo, hi = lo - delta, hi + delta
    margin = (hi - lo) * pad
    new_lo, new_hi = lo - margin, hi + margin
    # Padding must not invent negative values for data that cannot be negative (losses, counts).
    if keep_sign and lo >= 0 > new_lo:
        new_lo = 0.0
    return new_lo, new_hi


def _linear(d0: float, d1: float, r0: float, r1: float) -> tuple[float, float]:
    scale = (r1 - r0) / (d1 - d0)
    return scale, r0 - scale * d0


# --- markup --------------------------------------------------------------------------------


def _width(text: str, size: float = _TICK_PX) -> float:
    return len(text) * size * _CHAR_EM


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _text(
    x: float, y: float, text: str, cls: str, *, anchor: str = "start", extra: str = ""
) -> str:
    return (
        f'<text class="{cls}" x="{_f(x)}" y="{_f(y)}" text-anchor="{anchor}"{extra}>'
        f"{escape(text)}</text>"
    )


def _line(cls: str, x1: float, y1: float, x2: float, y2: float) -> str:
    return f'<line class="{cls}" x1="{_f(x1)}" y1="{_f(y1)}" x2="{_f(x2)}" y2="{_f(y2)}"/>'


def _open(kind: str, width: int, height: float, title: str, extra_class: str = "") -> list[str]:
    label = escape(title)
    return [
        f'<svg xmlns="{SVG_NS}" class="chart chart-{kind}{extra_class}" '
        f'viewBox="0 0 {width} {math.ceil(height)}" role="img" aria-label="{label}">',
        f"<title>{label}</title>",
        _text(8, 20, _clip(title, 80), "chart-title"),
    ]


def _close(parts: list[str]) -> SafeString:
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every text piece went through escape()


def _y_grid(parts: list[str], marks: list[tuple[float, str]], left: float, right: float) -> None:
    for y, label in marks:
        parts.append(_line("chart-grid", left, y, right, y))
        parts.append(_text(left - 6, y, label, "chart-tick", anchor="end", extra=' dy=".32em"'))


def _x_grid(parts: list[str], marks: list[tuple[float, str]], top: float, bottom: float) -> None:
    for x, label in marks:
        parts.append(_line("chart-grid", x, top, x, bottom))
        parts.append(_text(x, bottom + 16, label, "chart-tick", anchor="middle"))


def _axes(parts: list[str], left: float, top: float, right: float, bottom: float) -> None:
    parts.append(_line("chart-axis", left, top, left, bottom))
    parts.append(_line("chart-axis", left, bottom, right, bottom))


def _axis_labels(
    parts: list[str], x_label: str, y_label: str, box: tuple[float, float, float, float]
) -> None:
    left, top, right, bottom = box
    if x_label:
        parts.append(
            _text((left + right) / 2, bottom + 34, x_label, "chart-label", anchor="middle")
        )
    if y_label:
        cy = (top + bottom) / 2
        rotate = f' transform="rotate(-90 14 {_f(cy)})"'
        parts.append(_text(14, cy, y_label, "chart-label", anchor="middle", extra=rotate))


def _legend(names: Sequence[str], x0: float, x_max: float, y0: float) -> tuple[list[str], float]:
    """Swatch-and-name entries wrapped onto rows; returns the markup and the height used."""
    parts = ['<g class="chart-legend">']
    x, y = x0, y0
    for i, name in enumerate(names):
        label = _clip(name, 40)
        step = 18 + _width(label, _LABEL_PX) + 14
        if x > x0 and x + step > x_max:
            x, y = x0, y + 18
        parts.append(
            f'<rect class="chart-swatch s{i % N_SERIES_CLASSES}" x="{_f(x)}" y="{_f(y - 9)}" '
            f'width="12" height="12" rx="2"/>'
        )
        parts.append(_text(x + 17, y + 1, label, "chart-legend-text"))
        x += step
    parts.append("</g>")
    return parts, y - y0 + 18


def _no_data(parts: list[str], box: tuple[float, float, float, float]) -> None:
    left, top, right, bottom = box
    parts.append(
        _text((left + right) / 2, (top + bottom) / 2, "No data", "chart-empty", anchor="middle")
    )


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
) -> SafeString:
    """Vertical bars from a zero baseline, one per category; NaN values draw no bar."""
    cats = [str(c) for c in categories]
    vals = [_num(v) for v in values]
    if len(cats) != len(vals):
        raise ValueError("categories and values must have the same length")
    width = int(width)
    finite = [v for v in vals if math.isfinite(v)]
    lo, hi = min([0.0, *finite]), max([0.0, *finite])
    if lo == hi:
        hi = 1.0
    ticks = nice_ticks(lo, hi, integer=all(v.is_integer() for v in finite))
    fmt = _tick_formatter(ticks)
    tick_labels = [fmt(t) for t in ticks]

    shown = [_clip(c, 16) for c in cats]
    widest = max((_width(s) for s in shown), default=0.0)
    left = 14 + (18 if y_label else 0) + max((_width(s) for s in tick_labels), default=0.0)
    right = width - 12.0
    band = (right - left) / max(len(cats), 1)
    rotate = widest > band - 6
    if rotate:
        # A 45-degree label hangs left of its bar; the first one must stay inside the viewBox.
        left = max(left, widest * _SIN45 - band / 2 + 6)
        band = (right - left) / max(len(cats), 1)
    label_h = widest * _SIN45 + 16 if rotate else 20.0
    top = _TITLE_H + 14
    bottom = height - 6 - label_h
    ya, yb = _linear(lo, hi, bottom, top)

    parts = _open("bar", width, height, title)
    _y_grid(parts, [(ya * t + yb, s) for t, s in zip(ticks, tick_labels, strict=True)], left, right)
    _axes(parts, left, top, right, bottom)
    zero = yb
    value_labels = all(_width(_fmt_short(v)) <= band - 2 for v in finite)
    stride = max(1, math.ceil(14 / band)) if rotate else 1
    for i, (cat, label, v) in enumerate(zip(cats, shown, vals, strict=True)):
        cx = left + (i + 0.5) * band
        if i % stride == 0:
            if rotate:
                extra = f' transform="rotate(-45 {_f(cx)} {_f(bottom + 12)})"'
                parts.append(_text(cx, bottom + 12, label, "chart-tick", anchor="end", extra=extra))
            else:
                parts.append(_text(cx, bottom + 16, label, "chart-tick", anchor="middle"))
        if not math.isfinite(v):
            continue
        y = ya * v + yb
        cls = (
            "chart-bar highlight" if highlight is not None and cat == highlight else "chart-bar s0"
        )
        parts.append(
            f'<rect class="{cls}" x="{_f(cx - band * 0.35)}" y="{_f(min(y, zero))}" '
            f'width="{_f(band * 0.7)}" height="{_f(abs(zero - y))}">'
            f"<title>{escape(cat)}: {_fmt_value(v)}</title></rect>"
        )
        if value_labels:
            ty = y - 5 if v >= 0 else y + 14
            parts.append(_text(cx, ty, _fmt_short(v), "chart-value", anchor="middle"))
    if lo < 0:
        parts.append(_line("chart-axis", left, zero, right, zero))
    _axis_labels(parts, "", y_label, (left, top, right, bottom))
    return _close(parts)


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
    lo, hi = _span(lo, hi) if lo == hi else (lo, hi)
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
) -> SafeString:
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
        named = [("", [_num(c) for c in counts])]
    else:
        if (values is None) == (series is None):
            raise ValueError("give exactly one of values, series, or counts with edges")
        raw = {"": values} if values is not None else dict(series or {})
        clean = {str(k): [x for x in map(_num, vs) if math.isfinite(x)] for k, vs in raw.items()}
        edge_list = _bin_edges([x for vs in clean.values() for x in vs], max(1, int(bins)))
        named = [(name, _bin_counts(vs, edge_list)) for name, vs in clean.items()]
    width = int(width)
    overlaid = series is not None

    peak = max((c for _, cs in named for c in cs if math.isfinite(c)), default=0)
    integer = all(float(c).is_integer() for _, cs in named for c in cs if math.isfinite(c))
    y_ticks = nice_ticks(0, peak or 1, integer=integer)
    y_fmt = _tick_formatter(y_ticks)
    y_labels = [y_fmt(t) for t in y_ticks]
    # Bins centred on integers (see _bin_edges) get integer ticks.
    integer_x = all((e + 0.5).is_integer() for e in edge_list)
    x_ticks = nice_ticks(edge_list[0], edge_list[-1], integer=integer_x)
    x_fmt = _tick_formatter(x_ticks)

    left = 14 + max((_width(s) for s in y_labels), default=0.0)
    right = width - 16.0
    top = _TITLE_H + 8
    legend: list[str] = []
    if overlaid:
        legend, legend_h = _legend([n for n, _ in named], left, right, top + 4)
        top += legend_h + 4
    bottom = height - (44.0 if x_label else 26.0)
    xa, xb = _linear(edge_list[0], edge_list[-1], left, right)
    ya, yb = _linear(0, peak or 1, bottom, top)

    parts = _open("histogram", width, height, title, " chart-overlaid" if overlaid else "")
    _y_grid(parts, [(ya * t + yb, s) for t, s in zip(y_ticks, y_labels, strict=True)], left, right)
    _x_grid(parts, [(xa * t + xb, x_fmt(t)) for t in x_ticks], top, bottom)
    last = len(edge_list) - 2
    for i, (name, cs) in enumerate(named):
        prefix = f"{name}: " if name else ""
        for j, c in enumerate(cs):
            if not (math.isfinite(c) and c > 0):
                continue
            x0, x1 = xa * edge_list[j] + xb, xa * edge_list[j + 1] + xb
            gap = 1.0 if x1 - x0 > 4 and not overlaid else 0.0
            y = ya * c + yb
            close = "]" if j == last else ")"
            tip = (
                f"{prefix}[{_fmt_value(edge_list[j])}, {_fmt_value(edge_list[j + 1])}{close}: "
                f"{_fmt_value(c)}"
            )
            parts.append(
                f'<rect class="chart-hist s{i % N_SERIES_CLASSES}" x="{_f(x0 + gap / 2)}" '
                f'y="{_f(y)}" width="{_f(x1 - x0 - gap)}" height="{_f(bottom - y)}">'
                f"<title>{escape(tip)}</title></rect>"
            )
    if peak == 0:
        _no_data(parts, (left, top, right, bottom))
    _axes(parts, left, top, right, bottom)
    parts.extend(legend)
    _axis_labels(parts, x_label, "", (left, top, right, bottom))
    return _close(parts)


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


def line_chart(
    *,
    series: Mapping[str, Sequence[tuple[float, float]]],
    title: str,
    x_label: str = "",
    y_label: str = "",
    y_log: bool = False,
    width: int = 640,
    height: int = 320,
) -> SafeString:
    """Named (x, y) series with a legend. Points with NaN/inf (and y <= 0 on a log axis) are
    skipped; each series is sorted by x and thinned to MAX_LINE_POINTS.
    """
    width = int(width)
    isfinite = math.isfinite
    lines: list[tuple[str, list[float], list[float]]] = []
    for name, points in series.items():
        pts = [(float(x), float(y)) for x, y in points if x is not None and y is not None]
        pts = [p for p in pts if isfinite(p[0]) and isfinite(p[1]) and (p[1] > 0 or not y_log)]
        pts.sort(key=itemgetter(0))
        xs, ys = _downsample([p[0] for p in pts], [p[1] for p in pts], MAX_LINE_POINTS)
        lines.append((str(name), xs, ys))
    drawn = [line for line in lines if line[1]]

    x_lo, x_hi = _span(
        min((xs[0] for _, xs, _ in drawn), default=0.0),
        max((xs[-1] for _, xs, _ in drawn), default=1.0),
    )
    y_min = min((min(ys) for _, _, ys in drawn), default=1.0 if y_log else 0.0)
    y_max = max((max(ys) for _, _, ys in drawn), default=10.0 if y_log else 1.0)
    if y_log:
        y_lo, y_hi = _span(math.log10(y_min), math.log10(y_max), pad=0.04)
        y_ticks = _log_ticks(y_lo, y_hi)
        y_marks = [(math.log10(t), _fmt_log(t)) for t in y_ticks]
    else:
        y_lo, y_hi = _span(y_min, y_max, pad=0.05, keep_sign=True)
        y_ticks = nice_ticks(y_lo, y_hi)
        y_fmt = _tick_formatter(y_ticks)
        y_marks = [(t, y_fmt(t)) for t in y_ticks]
    integer_x = all(x.is_integer() for _, xs, _ in drawn for x in xs)
    x_ticks = nice_ticks(x_lo, x_hi, integer=integer_x)
    x_fmt = _tick_formatter(x_ticks)

    left = 14 + (18 if y_label else 0) + max((_width(s) for _, s in y_marks), default=0.0)
    right = width - 18.0
    names = [name if xs else f"{name} (no data)" for name, xs, _ in lines]
    legend, legend_h = _legend(names, left, right, _TITLE_H + 12)
    top = _TITLE_H + 12 + legend_h
    bottom = height - (44.0 if x_label else 26.0)
    xa, xb = _linear(x_lo, x_hi, left, right)
    ya, yb = _linear(y_lo, y_hi, bottom, top)

    parts = _open("line", width, height, title)
    _y_grid(parts, [(ya * v + yb, s) for v, s in y_marks], left, right)
    _x_grid(parts, [(xa * t + xb, x_fmt(t)) for t in x_ticks], top, bottom)
    _axes(parts, left, top, right, bottom)
    x_name, y_name = x_label or "x", y_label or "y"
    log10 = math.log10
    for i, (name, xs, ys) in enumerate(lines):
        if not xs:
            continue
        cls = f"s{i % N_SERIES_CLASSES}"
        py = [ya * log10(y) + yb for y in ys] if y_log else [ya * y + yb for y in ys]
        px = [xa * x + xb for x in xs]
        if len(xs) > 1:
            coords = " ".join([f"{x:.1f},{y:.1f}" for x, y in zip(px, py, strict=True)])
            tip = (
                f"{name}: last {x_name} = {_fmt_value(xs[-1])}, {y_name} = {_fmt_value(ys[-1])}; "
                f"min {_fmt_value(min(ys))}, max {_fmt_value(max(ys))}"
            )
            parts.append(
                f'<polyline class="chart-line {cls}" fill="none" points="{coords}">'
                f"<title>{escape(tip)}</title></polyline>"
            )
        # Long series get a marker only on their latest point, the one a live chart is watched for.
        marked = range(len(xs)) if len(xs) <= MAX_MARKED_POINTS else [len(xs) - 1]
        for j in marked:
            tip = f"{name}: {x_name} = {_fmt_value(xs[j])}, {y_name} = {_fmt_value(ys[j])}"
            parts.append(
                f'<circle class="chart-marker {cls}" cx="{_f(px[j])}" cy="{_f(py[j])}" r="3">'
                f"<title>{escape(tip)}</title></circle>"
            )
    if not drawn:
        _no_data(parts, (left, top, right, bottom))
    parts.extend(legend)
    _axis_labels(parts, x_label, y_label, (left, top, right, bottom))
    return _close(parts)


def interval_chart(
    *,
    rows: Sequence[tuple[str, float, float, float]],
    title: str,
    x_label: str = "",
    width: int = 640,
) -> SafeString:
    """One horizontal row per (name, estimate, low, high), in the order given; the height grows
    with the number of rows.
    """
    width = int(width)
    parsed = [(str(name), _num(est), _num(low), _num(high)) for name, est, low, high in rows]
    finite = [v for _, *vs in parsed for v in vs if math.isfinite(v)]
    lo, hi = _span(min(finite, default=0.0), max(finite, default=1.0), pad=0.04)
    ticks = nice_ticks(lo, hi)
    fmt = _tick_formatter(ticks)
    names = [_clip(name, 28) for name, *_ in parsed]
    summaries = [
        f"{_fmt_short(e)} [{_fmt_short(min(a, b))}, {_fmt_short(max(a, b))}]"
        if math.isfinite(e) and math.isfinite(a) and math.isfinite(b)
        else "no data"
        for _, e, a, b in parsed
    ]
    row_h = 24.0
    left = 16 + max((_width(s, _LABEL_PX) for s in names), default=0.0)
    right = width - 18 - max((_width(s) for s in summaries), default=0.0)
    top = _TITLE_H + 10
    bottom = top + row_h * max(len(parsed), 1)
    height = bottom + (44.0 if x_label else 26.0)
    xa, xb = _linear(lo, hi, left, right)

    parts = _open("interval", width, height, title)
    for i in range(1, len(parsed), 2):
        parts.append(
            f'<rect class="chart-band" x="0" y="{_f(top + i * row_h)}" width="{width}" '
            f'height="{_f(row_h)}"/>'
        )
    _x_grid(parts, [(xa * t + xb, fmt(t)) for t in ticks], top, bottom)
    parts.append(_line("chart-axis", left, bottom, right, bottom))
    for i, ((name, est, low, high), label, summary) in enumerate(
        zip(parsed, names, summaries, strict=True)
    ):
        cy = top + (i + 0.5) * row_h
        parts.append(
            _text(left - 8, cy, label, "chart-row-label", anchor="end", extra=' dy=".32em"')
        )
        parts.append(_text(right + 10, cy, summary, "chart-value", extra=' dy=".32em"'))
        if summary == "no data":
            continue
        low, high = min(low, high), max(low, high)
        x_low, x_high = xa * low + xb, xa * high + xb
        tip = f"{name}: {_fmt_value(est)} [{_fmt_value(low)}, {_fmt_value(high)}]"
        parts.append(f'<g class="chart-row"><title>{escape(tip)}</title>')
        parts.append(_line("chart-interval", x_low, cy, x_high, cy))
        parts.append(_line("chart-cap", x_low, cy - 5, x_low, cy + 5))
        parts.append(_line("chart-cap", x_high, cy - 5, x_high, cy + 5))
        parts.append(f'<circle class="chart-point" cx="{_f(xa * est + xb)}" cy="{_f(cy)}" r="4"/>')
        parts.append("</g>")
    if not parsed:
        _no_data(parts, (left, top, right, bottom))
    _axis_labels(parts, x_label, "", (left, top, right, bottom))
    return _close(parts)


def _heat_colour(t: float) -> tuple[str, bool]:
    """Fill for a position 0..1 on the scale, and whether text on it should be light."""
    pos = min(max(t, 0.0), 1.0) * (len(_HEAT_STOPS) - 1)
    i = min(int(pos), len(_HEAT_STOPS) - 2)
    frac = pos - i
    r, g, b = (
        round(a + (z - a) * frac) for a, z in zip(_HEAT_STOPS[i], _HEAT_STOPS[i + 1], strict=True)
    )
    lin = [(c / 255) / 12.92 if c <= 10 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
    luminance = 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    # Above about 0.21 (WCAG relative luminance) dark text has the better contrast.
    return f"#{r:02x}{g:02x}{b:02x}", luminance < 0.21


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
) -> SafeString:
    """Grid of cells coloured by value (None or NaN: grey); values are written in the cells
    while the grid is at most 15 x 15. The height follows from the number of rows.
    """
    width = int(width)
    rows, cols = [str(r) for r in row_labels], [str(c) for c in col_labels]
    grid = [[_num(v) for v in row] for row in values]
    if len(grid) != len(rows) or any(len(row) != len(cols) for row in grid):
        raise ValueError("values must have one row per row label and one column per column label")
    finite = [v for row in grid for v in row if math.isfinite(v)]
    lo = float(vmin) if vmin is not None else min(finite, default=0.0)
    hi = float(vmax) if vmax is not None else max(finite, default=1.0)
    spread = (hi - lo) or 1.0
    n_rows, n_cols = len(rows), max(len(cols), 1)

    row_text = [_clip(r, 24) for r in rows]
    col_text = [_clip(c, 20) for c in cols]
    left = 16 + max((_width(s) for s in row_text), default=0.0)
    col_w = max((_width(s) for s in col_text), default=0.0)
    cell = min(56.0, (width - left - 12) / n_cols)
    rotate = col_w > cell - 4
    if rotate:
        # 45-degree column labels lean right: the last one needs room past the grid.
        cell = min(56.0, (width - left - 12 - max(col_w * _SIN45 - 20, 0)) / n_cols)
    top = _TITLE_H + 8 + (col_w * _SIN45 + 12 if rotate else 20)
    bottom = top + cell * n_rows
    height = bottom + 46
    label_stride = max(1, math.ceil(13 / cell))

    cell_text: list[list[str]] | None = None
    font = 0.0
    if n_rows <= MAX_LABELLED_CELLS and n_cols <= MAX_LABELLED_CELLS:
        cell_text = [[fmt.format(v) if math.isfinite(v) else "n/a" for v in row] for row in grid]
        longest = max((len(s) for row in cell_text for s in row), default=1)
        font = min(12.0, cell * 0.4, (cell - 4) / (longest * _CHAR_EM))
        if font < 7:
            cell_text = None

    parts = _open("heatmap", width, height, title)
    for j, label in enumerate(col_text):
        if j % label_stride:
            continue
        cx = left + (j + 0.5) * cell
        if rotate:
            extra = f' transform="rotate(-45 {_f(cx)} {_f(top - 6)})"'
            parts.append(_text(cx, top - 6, label, "chart-tick", extra=extra))
        else:
            parts.append(_text(cx, top - 7, label, "chart-tick", anchor="middle"))
    for i, (row_name, label, row) in enumerate(zip(rows, row_text, grid, strict=True)):
        y = top + i * cell
        if i % label_stride == 0:
            parts.append(
                _text(
                    left - 6, y + cell / 2, label, "chart-tick", anchor="end", extra=' dy=".32em"'
                )
            )
        for j, v in enumerate(row):
            x = left + j * cell
            if math.isfinite(v):
                fill, light = _heat_colour((v - lo) / spread)
            else:
                fill, light = MISSING_FILL, False
            tip = f"{row_name} / {cols[j]}: {_fmt_value(v) if math.isfinite(v) else 'no data'}"
            parts.append(
                f'<rect class="chart-cell" x="{_f(x)}" y="{_f(y)}" width="{_f(cell)}" '
                f'height="{_f(cell)}" fill="{fill}"><title>{escape(tip)}</title></rect>'
            )
            if cell_text is not None:
                cls = "chart-cell-text light" if light else "chart-cell-text"
                parts.append(
                    _text(
                        x + cell / 2,
                        y + cell / 2,
                        cell_text[i][j],
                        cls,
                        anchor="middle",
                        extra=f' dy=".35em" font-size="{font:.1f}"',
                    )
                )
    # Colour key: ten discrete steps, because a gradient needs an id that may clash on the page.
    key_y = bottom + 14
    for k in range(10):
        fill, _ = _heat_colour(k / 9)
        parts.append(
            f'<rect class="chart-key" x="{_f(left + k * 16)}" y="{_f(key_y)}" width="16" '
            f'height="10" fill="{fill}"/>'
        )
    parts.append(_text(left, key_y + 24, fmt.format(lo), "chart-tick"))
    parts.append(_text(left + 160, key_y + 24, fmt.format(hi), "chart-tick", anchor="end"))
    if len(finite) < n_rows * len(cols):
        parts.append(
            f'<rect class="chart-key" x="{_f(left + 180)}" y="{_f(key_y)}" width="16" '
            f'height="10" fill="{MISSING_FILL}"/>'
        )
        parts.append(_text(left + 202, key_y + 9, "no data", "chart-tick"))
    return _close(parts)


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
