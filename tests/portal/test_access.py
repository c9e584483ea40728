"""Access beyond the role matrix (tests/role_matrix.py): anonymous visitors, unknown ids,
staff-only pages, ids from another project, API keys."""

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse
from rest_framework.response import Response
from rest_framework.test import APIClient, APIRequestFactory, force_authenticate

from core.access import ProjectApiView
from core.models import Membership, Project, Role, RoleSet
from tests.portal.factories import api_key_for

pytestmark = pytest.mark.django_db


def test_unknown_project_id_is_404_not_500(client, annotator):
    client.force_login(annotator)

    assert client.get("/projects/999999/").status_code == 404
    assert client.get("/api/v1/projects/999999/").status_code == 404


@pytest.mark.parametrize("url", ["/", "/projects/1/", "/people/", "/projects/new/", "/accounts/"])
def test_anonymous_pages_redirect_to_login(client, url):
    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize("url", ["/api/v1/me/", "/api/v1/projects/", "/api/v1/projects/1/"])
def test_anonymous_api_is_refused(url):
    assert APIClient().get(url).status_code in (401, 403)


def test_membership_removal_by_id_from_another_project_is_404(
    client, project, admin, other_project
):
    foreign = Membership.objects.filter(project=other_project).first() or Membership.objects.create(
        project=other_project, role=Role.ADMIN, user=other_project.created_by
    )
    client.force_login(admin)

    response = client.post(reverse("membership_remove", args=[project.pk, foreign.pk]))

    assert response.status_code == 404
    assert Membership.objects.filter(pk=foreign.pk).exists()


def test_membership_delete_api_for_admin_only(project, admin, annotator):
    membership = Membership.objects.get(user=annotator)
    api = APIClient()
    url = reverse("api-membership", args=[project.pk, membership.pk])

    api.force_authenticate(annotator)
    assert api.delete(url).status_code == 403
    api.force_authenticate(admin)
    assert api.delete(url).status_code == 204
    assert not Membership.objects.filter(pk=membership.pk).exists()


@pytest.mark.parametrize(
    ("url", "method"),
    [
        ("/people/", "get"),
        ("/projects/new/", "get"),
        ("/people/signup/", "post"),
    ],
)
def test_staff_pages_refuse_project_admins(client, admin, url, method):
    client.force_login(admin)

    assert getattr(client, method)(url).status_code == 403


def test_staff_pages_open_to_staff(client, staff):
    client.force_login(staff)

    assert client.get("/people/").status_code == 200
    assert client.get("/projects/new/").status_code == 200


def test_project_create_api_staff_only(staff, engineer):
    api = APIClient()
    api.force_authenticate(engineer)
    assert api.post("/api/v1/projects/", {"name": "X"}, format="json").status_code == 403
    api.force_authenticate(staff)
    response = api.post("/api/v1/projects/", {"name": "X"}, format="json")
    assert response.status_code == 201
    assert response.json()["roles"] == ["engineer", "admin"]
    assert Project.objects.filter(name="X").count() == 1


def test_project_list_shows_only_own_projects(project, annotator, outsider):
    api = APIClient()
    api.force_authenticate(annotator)

    names = [p["name"] for p in api.get("/api/v1/projects/").json()]

    assert names == ["Acme support bot"]


def test_token_auth_reaches_the_api(annotator):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {api_key_for(annotator)}")

    assert api.get("/api/v1/me/").json()["username"] == "ann"


def test_audit_api_refuses_unlisted_filters(project, compliance):
    api = APIClient()
    api.force_authenticate(compliance)

    response = api.get(
        reverse("api-audit-events", args=[project.pk]), {"actor__password__startswith": "p"}
    )

    assert response.status_code == 400
    assert "actor__password__startswith" in response.json()


def test_api_options_answers_members_only(project, annotator, outsider):
    api = APIClient()
    url = reverse("annotation-api:api-datasets", args=[project.pk])

    api.force_authenticate(annotator)
    member = api.options(url)
    api.force_authenticate(outsider)
    stranger = api.options(url)

    assert member.status_code == 200
    assert "POST" not in member.json().get("actions", {})  # an annotator may not upload
    assert stranger.status_code == 404


class _GetOnlyDeclared(ProjectApiView):
    roles = {"GET": RoleSet.OVERSIGHT}

    def get(self, request, project_id):
        return Response({})

    def post(self, request, project_id):
        return Response({})


def test_an_api_handler_without_declared_roles_is_a_configuration_error(project, engineer):
    request = APIRequestFactory().post("/", {}, format="json")
    force_authenticate(request, engineer)

    with pytest.raises(ImproperlyConfigured, match="declares no roles for POST"):
        _GetOnlyDeclared.as_view()(request, project_id=project.pk)
