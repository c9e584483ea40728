import html
import json
import math
import re
import xml.etree.ElementTree as ET

import pytest
from django.template import Context, Engine

from core import charts

EVIL = "<script>alert(1)</script>"


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
    }


def _payload(markup):
    """The JSON a chart element carries, read back the way the browser reads it."""
    match = re.fullmatch(r'<div class="echart"[^>]*data-chart="([^"]*)"[^>]*></div>', str(markup))
    assert match, markup
    return json.loads(html.unescape(match.group(1)))


def _names(chart):
    return [s["name"] for s in chart.options["series"]]


def _empty(chart):
    return not chart.options["graphic"][0]["invisible"]


@pytest.mark.parametrize("kind", list(_all_charts()))
def test_every_chart_renders_as_one_element_carrying_its_options_as_json(kind):
    chart = _all_charts()[kind]

    assert _payload(chart.__html__()) == json.loads(chart.json())
    assert _payload(chart.__html__())["options"]["series"]


@pytest.mark.parametrize("kind", list(_all_charts()))
def test_user_text_is_escaped_and_never_becomes_markup(kind):
    markup = str(_all_charts()[kind].__html__())

    assert "<script" not in markup
    assert "style=" not in markup  # the CSP allows no style attribute
    assert EVIL in json.dumps(_payload(markup))  # reaches the chart as text, intact


@pytest.mark.parametrize("kind", list(_all_charts()))
def test_options_are_plain_json_with_a_png_download(kind):
    chart = _all_charts()[kind]

    json.loads(chart.json())  # no NaN, no functions
    assert "saveAsImage" in chart.options["toolbox"]["feature"]
    assert chart.height > 0


def test_charts_are_deterministic():
    first, second = _all_charts(), _all_charts()

    assert {k: v.json() for k, v in first.items()} == {k: v.json() for k, v in second.items()}


def test_bar_chart_keeps_the_order_and_highlights_the_chosen_category():
    chart = charts.bar_chart(
        categories=["a", "b", "c"], values=[1, 2, math.nan], title="t", highlight="b"
    )
    data = chart.options["series"][0]["data"]

    assert chart.options["xAxis"]["data"] == ["a", "b", "c"]
    assert [d["value"] for d in data] == [1, 2, None]
    assert data[1]["itemStyle"]["color"] == charts.HIGHLIGHT
    assert "itemStyle" not in data[0]


def test_bar_chart_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="same length"):
        charts.bar_chart(categories=["a"], values=[1, 2], title="t")


@pytest.mark.parametrize(
    ("lo", "hi", "expected"),
    [
        (0, 1, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]),
        (0, 3, [0.0, 1.0, 2.0, 3.0]),
        (-1, 1, [-1.0, -0.5, 0.0, 0.5, 1.0]),
        (0.5, 0.5, [0.5]),
    ],
)
def test_nice_ticks_are_round_steps_inside_the_range(lo, hi, expected):
    integer = hi == 3
    assert charts.nice_ticks(lo, hi, integer=integer) == expected


def test_line_chart_downsamples_long_series_but_keeps_first_last_and_extremes():
    points = [(i, math.sin(i / 500)) for i in range(100_000)]
    points[31_337] = (31_337, 5.0)
    points[77_777] = (77_777, -5.0)
    data = charts.line_chart(series={"loss": points}, title="t").options["series"][0]["data"]
    ys = [y for _, y in data]

    assert len(data) <= charts.MAX_LINE_POINTS
    assert (data[0][0], data[-1][0]) == (0, 99_999)
    assert (max(ys), min(ys)) == (5.0, -5.0)


def test_line_chart_downsampling_keeps_the_exact_extreme_values():
    xs = list(range(100_000))
    ys = [((i * 7919) % 1000) / 10 for i in xs]
    kept_x, kept_y = charts._downsample(xs, ys, charts.MAX_LINE_POINTS)

    assert len(kept_x) <= charts.MAX_LINE_POINTS
    assert (kept_x[0], kept_x[-1]) == (0, 99_999)
    assert min(kept_y) == min(ys)
    assert max(kept_y) == max(ys)
    assert kept_x == sorted(kept_x)


def test_line_chart_skips_nan_and_infinite_points_and_sorts_by_x():
    series = {"s": [(3, 2.0), (0, 1.0), (1, math.nan), (2, math.inf), (math.nan, 3.0)]}
    chart = charts.line_chart(series=series, title="t")

    assert chart.options["series"][0]["data"] == [[0.0, 1.0], [3.0, 2.0]]


def test_line_chart_hides_a_series_without_points_instead_of_naming_it_no_data():
    chart = charts.line_chart(
        series={"train loss": [(1, 2.0), (2, 1.5)], "eval loss": []}, title="t"
    )

    assert _names(chart) == ["train loss"]
    assert chart.options["legend"]["data"] == ["train loss"]
    assert "no data" not in chart.json()
    assert not _empty(chart)


def test_line_chart_with_only_empty_series_shows_the_no_data_note():
    chart = charts.line_chart(series={"train": [], "eval": []}, title="t")

    assert chart.options["series"] == []
    assert _empty(chart)


def test_line_chart_zooms_and_toggles_series_and_shows_values_on_hover():
    options = charts.line_chart(series={"a": [(0, 1.0)], "b": [(0, 2.0)]}, title="t").options

    assert {z["type"] for z in options["dataZoom"]} == {"inside", "slider"}
    assert "dataZoom" in options["toolbox"]["feature"]
    assert options["legend"]["data"] == ["a", "b"]
    assert options["tooltip"]["trigger"] == "axis"


def test_two_losses_a_hair_apart_are_not_stretched_into_a_cliff():
    chart = charts.line_chart(series={"loss": [(1, 2.001), (2, 2.003)]}, title="t")
    y_min, y_max = chart.options["yAxis"]["min"], chart.options["yAxis"]["max"]

    # The span is at least MIN_RELATIVE_SPAN of the value, so the two points sit close together.
    assert y_max - y_min >= charts.MIN_RELATIVE_SPAN * 2.003
    assert y_min < 2.001
    assert y_max > 2.003
    assert (2.003 - 2.001) / (y_max - y_min) < 0.02


def test_loss_axis_has_a_margin_and_never_goes_below_zero():
    chart = charts.line_chart(series={"loss": [(1, 0.05), (2, 3.0)]}, title="t")
    y_min, y_max = chart.options["yAxis"]["min"], chart.options["yAxis"]["max"]

    assert y_min == 0.0
    assert y_max > 3.0


def test_y_range_keeps_negative_data_and_pads_both_sides():
    low, high = charts.y_range([-2.0, 1.0], keep_sign=False)

    assert low < -2.0
    assert high > 1.0
    assert charts.y_range([]) is None
    assert charts.y_range([math.nan]) is None


def test_smoothing_is_offered_only_when_asked_for():
    series = {"loss": [(0, 1.0), (1, 0.5)]}

    assert charts.line_chart(series=series, title="t", smooth=True).payload()["smooth"] is True
    assert charts.line_chart(series=series, title="t").payload()["smooth"] is False


def test_log_line_chart_drops_non_positive_values_and_uses_a_log_axis():
    series = {"s": [(0, 100.0), (1, 0.0), (2, -1.0), (3, 0.01)]}
    chart = charts.line_chart(series=series, title="t", y_log=True)

    assert chart.options["yAxis"]["type"] == "log"
    assert chart.options["series"][0]["data"] == [[0.0, 100.0], [3.0, 0.01]]


def test_live_chart_carries_the_url_it_refreshes_from():
    chart = charts.line_chart(series={"s": [(0, 1.0)]}, title="t").with_source("/x/?part=chart")

    assert 'data-src="/x/?part=chart"' in str(chart.__html__())


def test_histogram_bins_values_and_closes_the_last_bin():
    chart = charts.histogram(values=[0.0, 0.1, 0.5, 0.9, 1.0], bins=2, title="t")

    assert chart.options["series"][0]["data"] == [2, 3]
    assert chart.options["xAxis"]["data"] == ["[0, 0.5)", "[0.5, 1]"]


def test_histogram_from_precomputed_counts_uses_the_given_edges():
    chart = charts.histogram(counts=[1, 3], edges=[0, 5, 10], title="t")

    assert chart.options["series"][0]["data"] == [1, 3]
    assert chart.options["xAxis"]["data"] == ["[0, 5)", "[5, 10]"]


def test_histogram_rejects_counts_without_one_more_edge():
    with pytest.raises(ValueError, match="one more entry"):
        charts.histogram(counts=[1, 2], edges=[0, 1], title="t")


def test_overlaid_histogram_shares_bins_with_a_legend():
    chart = charts.histogram(series={"train": [1, 2], "eval": [2, 3]}, title="t")

    assert _names(chart) == ["train", "eval"]
    assert chart.options["legend"]["data"] == ["train", "eval"]
    assert all(s["barGap"] == "-100%" for s in chart.options["series"])


def test_heatmap_greys_missing_cells_and_writes_values_in_small_grids():
    chart = charts.heatmap(
        row_labels=["a", "b"], col_labels=["x", "y"], values=[[0.1, None], [0.5, 0.9]], title="t"
    )
    cells, missing = chart.options["series"]

    assert [c["value"] for c in cells["data"]] == [[0, 0, 0.1], [0, 1, 0.5], [1, 1, 0.9]]
    assert cells["data"][0]["label"]["formatter"] == "0.10"
    assert missing["data"] == [[1, 0, 0]]
    assert missing["itemStyle"]["color"] == charts.MISSING_FILL


def test_heatmap_leaves_values_out_of_large_grids():
    labels = [str(i) for i in range(20)]
    values = [[float(i * j) for j in range(20)] for i in range(20)]
    chart = charts.heatmap(row_labels=labels, col_labels=labels, values=values, title="t")

    assert chart.options["series"][0]["label"]["show"] is False
    assert "label" not in chart.options["series"][0]["data"][0]


def test_interval_chart_keeps_row_order_and_orders_each_interval():
    rows = [("b", 2.0, 3.0, 1.0), ("a", 1.0, 0.5, 1.5), ("none", math.nan, 0, 1)]
    chart = charts.interval_chart(rows=rows, title="t")

    assert chart.options["yAxis"]["data"] == ["b", "a", "none"]
    assert chart.options["series"][0]["data"] == [
        [0, 2.0, 1.0, 3.0, "b"],
        [1, 1.0, 0.5, 1.5, "a"],
    ]
    assert chart.options["series"][0]["renderItem"] == "interval"
    assert chart.options["xAxis"]["min"] < 0.5
    assert chart.options["xAxis"]["max"] > 3.0


def test_progress_bar_reports_done_total_and_rounded_down_percent():
    root = ET.fromstring(str(charts.progress_bar(done=999, total=1000, label="Annotated")))  # noqa: S314
    progress = root.find("progress")

    assert (progress.get("value"), progress.get("max")) == ("999", "1000")
    assert progress.get("aria-label") == "Annotated"
    assert root.find("span[@class='chart-progress-text']").text == "999 / 1000 (99%)"


def test_progress_bar_with_zero_total_shows_zero_percent():
    root = ET.fromstring(str(charts.progress_bar(done=0, total=0, label="Empty")))  # noqa: S314

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
    rendered = template.render(
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
    elements = re.findall(r'<div class="echart"[^>]*></div>', rendered)

    assert len(elements) == 5
    titles = [_payload(e)["options"]["title"]["text"] for e in elements]
    assert titles == ["Per stage", "Spread", "Loss", "Ratings", "Wins"]
    assert "<script" not in rendered
    assert "&lt;script&gt;" in rendered
