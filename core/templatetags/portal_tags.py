import json
import math

from django import template

register = template.Library()


@register.filter
def get_item(mapping, key):
    """`{{ payload|get_item:"text" }}`: a dict value by a key held in a variable."""
    if isinstance(mapping, dict):
        return mapping.get(key)
    return None


@register.filter
def to_json(value) -> str:
    """Compact JSON for showing payloads; the template still escapes it."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


@register.filter
def split(value: str, sep: str = " ") -> list[str]:
    return value.split(sep)


@register.filter
def percent(share) -> str:
    """A share of 0..1 as a percentage ("100 %", "12.5 %", "0.04 %"); "—" for None."""
    if share is None or share == "":
        return "—"
    value = float(share) * 100
    if 0 < value < 1:
        text = f"{value:.2g}"  # a small share must not read as 0 %
    elif 99 < value < 100:
        text = f"{math.floor(value * 100) / 100:.2f}"  # nor an almost whole one as 100 %
    else:
        text = f"{value:.1f}".removesuffix(".0")
    return f"{text} %"


@register.filter
def sig(value, digits: int = 4):
    """`{{ score|sig }}`: a measured float to `digits` significant digits (trailing zeros
    kept, so 0.5 reads 0.5000), whole numbers as they are; anything else unchanged."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return "—"
    if abs(value) >= 10 ** int(digits):
        return f"{value:.0f}"
    return f"{value:#.{int(digits)}g}"
