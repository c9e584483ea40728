import math
import xml.etree.ElementTree as ET

import pytest
from django.template import Context, Engine

from core import charts

NS = {"svg": "http://www.w3.org/2000/svg"}
EVIL = "<script>alert(1)</script>"


def _parse(markup):
    return ET.fromstring(str(markup))  # noqa: S314 - parses our own output, not input


def _all_charts(label=EVIL):
    return {
        "bar": charts.bar_chart(categories=[label, "b"], values=[3, 4], title=label, y_label=label),
        "histogram": charts.histogram(values=[1.5, 2.5, 2.5, 9.0], title=label, x_label=label),
        "overlaid histogram": charts.histogram(
            series={label: [1.0, 2.0, 3.5], "b": [2.0, 2.2]}, bins=5, title=label
        ),
        "precomputed histogram": charts.histogram(
            counts=[2, 5, 1], edges=[0, 1, 2, 3], title=label
        ),
        "line": charts.line_chart(
            series={label: [(0, 1.0), (1, 0.5), (2, 0.25)]},
            title=label,
            x_label=label,
            y_label=label,
        ),
        "log line": charts.line_chart(
            series={label: [(0, 10.0), (5, 0.1)]}, title=label, y_log=True
        ),
        "interval": charts.interval_chart(
            rows=[(label, 1.0, 0.5, 1.5)], title=label, x_label=label
        ),
        "heatmap": charts.heatmap(
            row_labels=[label, "b"],
            col_labels=[label, "b"],
            values=[[0.1, None], [0.5, 0.9]],
            title=label,
        ),
        "progress": charts.progress_bar(done=3, total=10, label=label),
    }


@pytest.mark.parametrize("kind", list(_all_charts()))
def test_every_chart_is_well_formed_xml(kind):
    _parse(_all_charts()[kind])


@pytest.mark.parametrize("kind", list(_all_charts()))
def test_user_text_is_escaped_and_never_becomes_a_script_element(kind):
    markup = str(_all_charts()[kind])
    root = _parse(markup)

    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in markup
    assert "<script" not in markup
    assert not [el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "script"]


@pytest.mark.parametrize("kind", list(_all_charts()))
def test_no_chart_uses_style_attributes_which_the_csp_blocks(kind):
    root = _parse(_all_charts()[kind])

    assert all("style" not in el.attrib for el in root.iter())
    assert "style=" not in str(_all_charts()[kind])


@pytest.mark.parametrize("kind", [k for k in _all_charts() if k != "progress"])
def test_svg_charts_are_accessible_images_with_a_fixed_viewbox(kind):
    root = _parse(_all_charts(label="Quality")[kind])

    assert root.get("role") == "img"
    assert root.get("aria-label") == "Quality"
    assert root.get("viewBox").startswith("0 0 ")
    assert root.find("svg:title", NS).text == "Quality"
    assert "chart" in root.get("class").split()


def test_charts_are_deterministic():
    first, second = _all_charts(), _all_charts()

    assert all(str(first[k]) == str(second[k]) for k in first)


def test_bar_heights_are_proportional_to_values():
    root = _parse(charts.bar_chart(categories=["a", "b", "c"], values=[1, 2, 4], title="t"))
    heights = [float(r.get("height")) for r in root.iterfind(".//svg:rect", NS)]

    assert len(heights) == 3
    assert heights[1] == pytest.approx(2 * heights[0], rel=0.01)
    assert heights[2] == pytest.approx(4 * heights[0], rel=0.01)


def test_bar_tooltips_give_exact_values():
    root = _parse(charts.bar_chart(categories=["a"], values=[0.123456], title="t"))

    assert root.find(".//svg:rect/svg:title", NS).text == "a: 0.123456"


def test_highlighted_bar_gets_its_own_class():
    root = _parse(charts.bar_chart(categories=["a", "b"], values=[1, 2], title="t", highlight="b"))
    classes = [r.get("class") for r in root.iterfind(".//svg:rect", NS)]

    assert classes == ["chart-bar s0", "chart-bar highlight"]


@pytest.mark.parametrize(
    ("lo", "hi", "expected"),
    [
        (0, 0.87, [0, 0.2, 0.4, 0.6, 0.8]),
        (0, 100, [0, 20, 40, 60, 80, 100]),
        (-1, 1, [-1, -0.5, 0, 0.5, 1]),
        (0, 3, [0, 1, 2, 3]),
    ],
)
def test_nice_ticks_are_round_steps_inside_the_range(lo, hi, expected):
    integer = hi == 3
    assert charts.nice_ticks(lo, hi, integer=integer) == expected


def test_line_chart_downsamples_long_series_but_keeps_first_last_and_extremes():
    points = [(i, math.sin(i / 500)) for i in range(100_000)]
    points[31_337] = (31_337, 5.0)
    points[77_777] = (77_777, -5.0)
    root = _parse(charts.line_chart(series={"loss": points}, title="t"))
    polyline = root.find(".//svg:polyline", NS)
    coords = [tuple(map(float, p.split(","))) for p in polyline.get("points").split()]
    ys = [y for _, y in coords]
    xs = [x for x, _ in coords]

    assert len(coords) <= charts.MAX_LINE_POINTS
    assert polyline.find("svg:title", NS).text.endswith("min -5, max 5")
    # In SVG y grows downwards: the spike up is the smallest y, the spike down the largest.
    spike_up, spike_down = ys.index(min(ys)), ys.index(max(ys))
    assert xs[0] < xs[spike_up] < xs[spike_down] < xs[-1]


def test_line_chart_downsampling_keeps_the_exact_extreme_values():
    xs = list(range(100_000))
    ys = [((i * 7919) % 1000) / 10 for i in xs]
    kept_x, kept_y = charts._downsample(xs, ys, charts.MAX_LINE_POINTS)

    assert len(kept_x) <= charts.MAX_LINE_POINTS
    assert (kept_x[0], kept_x[-1]) == (0, 99_999)
    assert min(kept_y) == min(ys)
    assert max(kept_y) == max(ys)
    assert kept_x == sorted(kept_x)


def test_line_chart_skips_nan_and_infinite_points():
    series = {"s": [(0, 1.0), (1, math.nan), (2, math.inf), (math.nan, 3.0), (3, 2.0)]}
    root = _parse(charts.line_chart(series=series, title="t"))
    points = root.find(".//svg:polyline", NS).get("points").split()

    assert len(points) == 2


def test_line_chart_draws_a_single_point_as_a_marker_with_its_values():
    root = _parse(charts.line_chart(series={"s": [(3, 0.5)]}, title="t", x_label="step"))

    assert root.find(".//svg:polyline", NS) is None
    marker = root.find(".//svg:circle", NS)
    assert marker.find("svg:title", NS).text == "s: step = 3, y = 0.5"


def test_line_chart_with_only_empty_series_says_no_data():
    markup = str(charts.line_chart(series={"train": [], "eval": []}, title="t"))

    _parse(markup)
    assert "No data" in markup
    assert "train (no data)" in markup


def test_log_line_chart_drops_non_positive_values_and_labels_decades():
    series = {"s": [(0, 100.0), (1, 0.0), (2, -1.0), (3, 0.01)]}
    root = _parse(charts.line_chart(series=series, title="t", y_log=True))
    ticks = [t.text for t in root.iterfind(".//svg:text[@class='chart-tick']", NS)]

    assert len(root.find(".//svg:polyline", NS).get("points").split()) == 2
    assert {"0.01", "1", "100"} <= set(ticks)


def test_histogram_bins_raw_values_and_counts_every_value():
    root = _parse(charts.histogram(values=[0.0, 0.1, 0.5, 0.9, 1.0], bins=2, title="t"))
    tips = [t.text for t in root.iterfind(".//svg:rect/svg:title", NS)]

    assert tips == ["[0, 0.5): 2", "[0.5, 1]: 3"]


def test_histogram_draws_precomputed_counts_with_heights_in_proportion():
    root = _parse(charts.histogram(counts=[1, 3], edges=[0, 5, 10], title="t"))
    heights = [float(r.get("height")) for r in root.iterfind(".//svg:rect", NS)]

    assert heights[1] == pytest.approx(3 * heights[0], rel=0.01)


def test_histogram_rejects_mismatched_counts_and_edges():
    with pytest.raises(ValueError, match="one more"):
        charts.histogram(counts=[1, 2], edges=[0, 1], title="t")


def test_overlaid_histogram_draws_each_series_with_its_own_colour_class():
    root = _parse(charts.histogram(series={"train": [1, 2], "eval": [2, 3]}, title="t"))
    classes = {r.get("class") for r in root.iterfind(".//svg:rect", NS)}

    assert {"chart-hist s0", "chart-hist s1"} <= classes


def test_heatmap_draws_none_cells_grey_and_values_in_the_cells():
    root = _parse(
        charts.heatmap(
            row_labels=["a", "b"], col_labels=["x", "y"], values=[[0.25, None], [1, 0]], title="t"
        )
    )
    cells = list(root.iterfind(".//svg:rect[@class='chart-cell']", NS))
    texts = [
        t.text for t in root.iter(f"{{{NS['svg']}}}text") if "chart-cell-text" in t.get("class")
    ]

    assert cells[1].get("fill") == charts.MISSING_FILL
    assert all(c.get("fill") != charts.MISSING_FILL for i, c in enumerate(cells) if i != 1)
    assert cells[2].get("fill") != cells[3].get("fill")
    assert texts == ["0.25", "n/a", "1.00", "0.00"]


def test_heatmap_omits_cell_text_on_large_grids():
    labels = [str(i) for i in range(16)]
    values = [[i * j for j in range(16)] for i in range(16)]
    markup = str(charts.heatmap(row_labels=labels, col_labels=labels, values=values, title="t"))

    assert "chart-cell-text" not in markup


def test_interval_endpoints_sit_at_proportional_x_positions():
    rows = [("a", 5, 0, 10), ("b", 10, 5, 15)]
    root = _parse(charts.interval_chart(rows=rows, title="t"))
    (a_low, a_high), (b_low, b_high) = [
        (float(line.get("x1")), float(line.get("x2")))
        for line in root.iterfind(".//svg:line[@class='chart-interval']", NS)
    ]
    points = [float(c.get("cx")) for c in root.iterfind(".//svg:circle", NS)]

    assert a_low < b_low < a_high < b_high
    assert b_low == pytest.approx((a_low + a_high) / 2, abs=0.02)
    assert a_high == pytest.approx((b_low + b_high) / 2, abs=0.02)
    assert points == pytest.approx([b_low, a_high], abs=0.02)


def test_progress_bar_reports_done_total_and_rounded_down_percent():
    root = _parse(charts.progress_bar(done=999, total=1000, label="Annotated"))
    progress = root.find("progress")

    assert (progress.get("value"), progress.get("max")) == ("999", "1000")
    assert progress.get("aria-label") == "Annotated"
    assert root.find("span[@class='chart-progress-text']").text == "999 / 1000 (99%)"


def test_progress_bar_with_zero_total_shows_zero_percent():
    root = _parse(charts.progress_bar(done=0, total=0, label="Empty"))

    assert root.find("span[@class='chart-progress-text']").text == "0 / 0 (0%)"


def test_template_tags_render_charts_with_their_keyword_arguments():
    engine = Engine(libraries={"charts": "core.templatetags.charts"})
    template = engine.from_string(
        "{% load charts %}"
        '{% bar_chart categories=cats values=vals title="Per stage" highlight="b" %}'
        '{% histogram values=vals bins=3 title="Spread" %}'
        '{% line_chart series=series title="Loss" y_log=True %}'
        '{% interval_chart rows=rows title="Ratings" %}'
        '{% heatmap row_labels=cats col_labels=cats values=grid title="Wins" fmt="{:.1f}" %}'
        "{% progress_bar done=2 total=4 label=name %}"
    )
    html = template.render(
        Context(
            {
                "cats": ["a", "b"],
                "vals": [1, 2],
                "series": {"train": [(0, 1.0), (1, 0.5)]},
                "rows": [("a", 1, 0, 2)],
                "grid": [[None, 0.7], [0.3, None]],
                "name": EVIL,
            }
        )
    )

    assert html.count("<svg") == 5
    assert "2 / 4 (50%)" in html
    assert "&lt;script&gt;" in html
    assert "<script" not in html
    assert "&amp;lt;" not in html  # the tags return safe strings, not re-escaped markup
