import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.parsers import JSONParser
from rest_framework.test import APIClient

from core.parsers import StrictJSONParser
from evaluation.models import PromptSet

pytestmark = pytest.mark.django_db

DEEP = "[" * 200_000 + "]" * 200_000
BODIES = [
    ('{"score": 1e400}', "rows[0].metadata.score", "out of range (it would be infinite)"),
    ('{"score": -' + "9" * 5000 + "}", "rows[0].metadata.score", "5000 digits"),
    ('{"score": NaN}', "rows[0].metadata.score", "NaN is not a JSON value"),
    ('{"tree": ' + DEEP + "}", "rows[0].metadata.tree[0][0][0][0]…", "nested more than 100"),
]


@pytest.mark.parametrize(("metadata", "field", "reason"), BODIES)
def test_api_bodies_past_the_json_limits_get_a_400_naming_the_field(
    project, engineer, metadata, field, reason
):
    api = APIClient()
    api.force_authenticate(engineer)
    body = '{"name": "p", "rows": [{"prompt": "hi", "metadata": ' + metadata + "}]}"

    response = api.post(
        f"/api/v1/projects/{project.pk}/prompt-sets/", body, content_type="application/json"
    )

    assert response.status_code == 400
    (message,) = response.json()[field]
    assert reason in message
    assert not PromptSet.objects.exists()


def test_a_malformed_api_body_is_still_a_parse_error(project, engineer):
    api = APIClient()
    api.force_authenticate(engineer)

    response = api.post(
        f"/api/v1/projects/{project.pk}/prompt-sets/", "{oops", content_type="application/json"
    )

    assert response.status_code == 400
    (message,) = response.json()["detail"]  # a list, as every 400's messages are
    assert message.startswith("JSON parse error - ")


def _views(patterns):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _views(pattern.url_patterns)
        elif isinstance(pattern, URLPattern) and hasattr(pattern.callback, "cls"):
            yield pattern.callback.cls


def test_every_api_view_parses_json_with_the_strict_parser():
    lenient = [
        view.__name__
        for view in _views(get_resolver().url_patterns)
        for parser in getattr(view, "parser_classes", ())
        if issubclass(parser, JSONParser) and not issubclass(parser, StrictJSONParser)
    ]

    assert lenient == []


@pytest.mark.parametrize(("metadata", "field", "reason"), BODIES)
def test_a_prompt_file_past_the_json_limits_is_refused_naming_line_and_field(
    client, project, engineer, metadata, field, reason
):
    client.force_login(engineer)
    line = '{"prompt": "hi", "metadata": ' + metadata + "}"
    upload = SimpleUploadedFile("prompts.jsonl", b'{"prompt": "ok"}\n' + line.encode() + b"\n")

    response = client.post(
        reverse("evaluation:overview", args=[project.pk]),
        {"action": "prompt_set", "name": "p", "file": upload},
    )

    body = response.content.decode()
    assert response.status_code == 200
    page_field = field.removeprefix("rows[0].").removesuffix("…")
    assert f"line 2, field &#x27;{page_field}" in body
    assert reason in body
    assert not PromptSet.objects.exists()
