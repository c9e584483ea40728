import json

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
