"""The OpenAPI schema documents the request and response bodies of the listing, detail and
action endpoints, so a client generated from it parses what they send and answer."""

import pytest
import yaml
from django.core.management import call_command

pytestmark = pytest.mark.django_db

P = "/api/v1/projects/{project_id}/"
# (path, method, success status, whether it takes a JSON body)
DOCUMENTED = [
    (P + "base_models/{base_model_id}/", "get", "200", False),
    (P + "base_models/registrations/", "get", "200", False),
    (P + "base_models/registrations/", "post", "201", True),
    (P + "base_models/registrations/{registration_id}/", "get", "200", False),
    (P + "prompt-sets/", "get", "200", False),
    (P + "prompt-sets/{prompt_set_id}/", "get", "200", False),
    (P + "prompt-sets/from-snapshot/", "post", "201", True),
    (P + "contestants/", "get", "200", False),
    (P + "contestants/{contestant_id}/", "get", "200", False),
    (P + "campaigns/", "get", "200", False),
    (P + "campaigns/{campaign_id}/", "get", "200", False),
    (P + "campaigns/{campaign_id}/close/", "post", "200", False),
    (P + "campaigns/{campaign_id}/bootstraps/", "post", "201", False),
    (P + "campaigns/{campaign_id}/bootstraps/{bootstrap_id}/", "get", "200", False),
    (P + "campaigns/{campaign_id}/raters/exclude/", "post", "200", True),
    (P + "campaigns/{campaign_id}/raters/include/", "post", "200", True),
    (P + "campaigns/{campaign_id}/export-preferences/", "post", "201", True),
    (P + "generation-outputs/", "get", "200", False),
]


@pytest.fixture(scope="module")
def schema(tmp_path_factory, django_db_blocker):
    path = tmp_path_factory.mktemp("schema") / "schema.yaml"
    with django_db_blocker.unblock():
        # --fail-on-warn: a view whose bodies the generator had to guess fails here.
        call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(path))
    return yaml.safe_load(path.read_text())


def _resolve(schema, node):
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


@pytest.mark.parametrize(("path", "method", "status", "body"), DOCUMENTED)
def test_each_endpoint_documents_its_bodies(schema, path, method, status, body):
    operation = schema["paths"][path][method]

    answered = operation["responses"][status]["content"]["application/json"]["schema"]
    answer = _resolve(schema, answered)
    assert answer.get("properties"), f"{method} {path}: its answer has no documented fields"
    if body:
        sent = operation["requestBody"]["content"]["application/json"]["schema"]
        assert _resolve(schema, sent).get("properties")


def test_lists_document_their_cursor_and_filters(schema):
    params = {p["name"] for p in schema["paths"][P + "generation-outputs/"]["get"]["parameters"]}
    page = _resolve(
        schema,
        schema["paths"][P + "campaigns/"]["get"]["responses"]["200"]["content"]["application/json"][
            "schema"
        ],
    )

    assert {"cursor", "limit", "generation_job", "contestant", "prompt_set", "campaign"} <= params
    assert set(page["properties"]) == {"next", "previous", "results"}
