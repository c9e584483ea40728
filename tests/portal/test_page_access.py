"""Every page under a project goes through `project_page`, and every page reads a POST
through a form: checked over the URL table and the views' source."""

import ast
import inspect
from pathlib import Path

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from core.models import Role, RoleSet

ROOT = Path(__file__).resolve().parents[2]
VIEW_MODULES = [
    "annotation/views.py",
    "annotation/views_curation.py",
    "training/views.py",
    "evaluation/views.py",
    "governance/views.py",
    "portal/views.py",
    "serving/views.py",
]


def _patterns(resolver: URLResolver, prefix: str = ""):
    for entry in resolver.url_patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from _patterns(entry, route)
        elif isinstance(entry, URLPattern):
            yield route, entry.callback


def _project_pages():
    for route, view in _patterns(get_resolver()):
        # The API's views are DRF classes (ProjectApiView declares their roles).
        if "<int:project_id>" in route and not hasattr(view, "cls"):
            yield route, view


def test_there_are_project_pages_to_check():
    assert len(list(_project_pages())) > 30


# Ids by name, not by the view's repr: its address differs in each pytest-xdist worker.
@pytest.mark.parametrize(
    ("route", "view"),
    list(_project_pages()),
    ids=lambda v: str(v) if isinstance(v, str) else f"{v.__module__}.{v.__qualname__}",
)
def test_every_project_page_declares_its_roles(route, view):
    declared = getattr(view, "page_roles", None)

    assert declared, f"{route} ({view.__module__}.{view.__name__}) is not a project_page"
    for roles in declared.values():
        assert set(roles) <= set(Role.values)


def _reads_outside_forms(source: str) -> list[int]:
    tree = ast.parse(source)

    def is_post(node):
        return (
            isinstance(node, ast.Attribute)
            and node.attr == "POST"
            and isinstance(node.value, ast.Name)
            and node.value.id == "request"
        )

    bound = set()
    for call in ast.walk(tree):
        if not isinstance(call, ast.Call):
            continue
        func = call.func.value if isinstance(call.func, ast.Subscript) else call.func
        name = getattr(func, "id", getattr(func, "attr", ""))
        # A form class, a formset factory, or a form picked from a table of them.
        if name.endswith(("Form", "formset", "FORMS")):
            for arg in call.args:
                bound.update(id(n) for n in ast.walk(arg) if is_post(n))
    return [n.lineno for n in ast.walk(tree) if is_post(n) and id(n) not in bound]


@pytest.mark.parametrize("module", VIEW_MODULES)
def test_pages_read_a_post_only_through_a_form(module):
    assert _reads_outside_forms((ROOT / module).read_text()) == []


def test_the_check_finds_a_direct_read():
    source = inspect.cleandoc(
        """
        def view(request):
            form = NameForm(request.POST or None)
            return request.POST.get("name")
        """
    )

    assert _reads_outside_forms(source) == [3]


def test_the_members_role_set_is_every_role():
    assert set(RoleSet.MEMBERS) == set(Role.values)
