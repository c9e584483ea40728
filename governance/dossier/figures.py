"""The dossier's static figures, drawn by matplotlib as SVG inside the report (HTML and PDF).

The portal's own charts are interactive (core/charts.py, ECharts in the browser); a signed
report needs figures that draw without a browser and come out byte-identical for the same
input, so the bundle's hashes are stable. Hence: the object-oriented API (no pyplot state, safe
in a worker thread), the fonts matplotlib ships, text as paths, a fixed id salt and no date.
"""

import io
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib as mpl
from cycler import cycler
from matplotlib.figure import Figure

from core.charts import SERIES_COLOURS, y_range

STYLE: dict[str, Any] = {
    "svg.hashsalt": "tuning-portal-dossier",
    "svg.fonttype": "path",
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.edgecolor": "#8a93a3",
    "axes.grid": True,
    "grid.color": "#e7eaf0",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": cycler(color=list(SERIES_COLOURS)),
}
_PROLOGUE = re.compile(r"^.*?(?=<svg)", re.DOTALL)


def loss_figure(*, title: str, curves: Mapping[str, Sequence[Sequence[float]]]) -> str:
    """One job's loss curves as an SVG element. Curves without points are left out (no
    "no data" legend entry) and the y range follows core.charts.y_range, as on the job page.
    Returns "" when no curve has a point."""
    finite = {
        name: [p for p in points if p[1] is not None and math.isfinite(p[1])]
        for name, points in curves.items()
    }
    drawn = {name: points for name, points in finite.items() if points}
    if not drawn:
        return ""
    with mpl.rc_context(STYLE):  # type: ignore[arg-type]
        figure = Figure(figsize=(6.4, 3.0))
        axes = figure.add_subplot()
        for name, points in drawn.items():
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            axes.plot(
                xs,
                ys,
                label=name,
                linewidth=1.6,
                marker="o" if len(xs) <= 60 else None,
                markersize=3,
            )
        span = y_range([p[1] for points in drawn.values() for p in points])
        if span is not None:
            axes.set_ylim(*span)
        axes.set_title(title, loc="left")
        axes.set_xlabel("step")
        axes.set_ylabel("loss")
        axes.legend(frameon=False, loc="upper right")
        figure.tight_layout()
        out = io.StringIO()
        figure.savefig(out, format="svg", metadata={"Date": None})
    # The XML declaration and doctype do not belong inside an HTML document.
    return _PROLOGUE.sub("", out.getvalue(), count=1)
