"""`{% load markdown_text %}`: filters for templates that render Markdown (autoescape on,
so a value left without one is still HTML-escaped)."""

from django import template
from django.utils.safestring import SafeString, mark_safe

from core.markdown_text import markdown_block, markdown_code, markdown_html, markdown_inline

register = template.Library()


@register.filter
def md(value: object) -> SafeString:
    return mark_safe(markdown_inline(value))  # noqa: S308 - escaped for Markdown above


@register.filter
def md_block(value: object) -> SafeString:
    return mark_safe(markdown_block(value))  # noqa: S308 - escaped for Markdown above


@register.filter
def md_code(value: object) -> SafeString:
    return mark_safe(markdown_code(value))  # noqa: S308 - a code span shows its text as is


@register.filter
def markdown_to_html(value: object) -> SafeString:
    """Untrusted Markdown (a model's answer) as sanitised HTML."""
    return mark_safe(markdown_html(str(value)))  # noqa: S308 - raw HTML off, then nh3-cleaned
