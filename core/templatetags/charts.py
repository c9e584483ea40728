"""`{% load charts %}`: one simple tag per chart in core.charts, keyword arguments only.

The chart functions are registered as they are, so Django checks the keyword names and the
required ones when the template compiles rather than when the page renders.
"""

from django import template

from core import charts

register = template.Library()

for _name in ("bar_chart", "histogram", "line_chart", "interval_chart", "heatmap", "progress_bar"):
    register.simple_tag(getattr(charts, _name), name=_name)
