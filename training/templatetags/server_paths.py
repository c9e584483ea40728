"""`{% load server_paths %}`: pages show server paths relative to the portal's folders."""

from django import template

from training.services.base_models import display_path, scrub_paths

register = template.Library()


@register.filter
def shown_path(value: str) -> str:
    return display_path(value) if value else ""


@register.filter
def without_server_paths(value: str) -> str:
    return scrub_paths(value or "")
