import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def test_anonymous_visitor_gets_no_api_schema(client):
    response = client.get("/api/schema/")

    assert response.status_code in (401, 403)
    assert b"/api/v1/projects/" not in response.content


def test_anonymous_visitor_is_sent_to_log_in_from_the_api_docs(client):
    response = client.get("/api/docs/")

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_signed_in_user_reads_schema_and_docs(client, annotator):
    client.force_login(annotator)

    assert b"/api/v1/projects/" in client.get("/api/schema/").content
    assert client.get("/api/docs/").status_code == 200


def test_api_client_reads_the_schema(annotator):
    api = APIClient()
    api.force_authenticate(annotator)

    response = api.get("/api/schema/")

    assert response.status_code == 200
    assert b"/api/v1/projects/" in response.content
