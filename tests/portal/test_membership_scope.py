"""Adding a member by username is no way to learn the usernames of other projects."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from core.models import AuditEvent, Membership, Role
from tests.portal.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def _add(user, project, username):
    api = APIClient()
    api.force_authenticate(user)
    return api.post(
        reverse("api-memberships", args=[project.pk]),
        {"username": username, "role": "annotator"},
        format="json",
    )


def test_an_outsider_cannot_tell_another_projects_member_from_a_name_nobody_has(
    project, annotator, outsider, other_project
):
    before = AuditEvent.objects.count()

    member = _add(outsider, other_project, annotator.username)
    nobody = _add(outsider, other_project, "nobody-has-this-name")

    assert member.status_code == nobody.status_code == 400
    assert member.json() == nobody.json()
    assert not Membership.objects.filter(project=other_project, user=annotator).exists()
    assert AuditEvent.objects.count() == before


def test_the_members_page_answers_the_same_for_another_projects_member(
    client, project, annotator, outsider, other_project
):
    client.force_login(outsider)
    url = reverse("project_members", args=[other_project.pk])

    response = client.post(url, {"username": annotator.username, "roles": ["annotator"]})

    assert "No active account has that username." in response.content.decode()
    assert not Membership.objects.filter(project=other_project, user=annotator).exists()


def test_an_admin_adds_someone_from_a_project_whose_members_they_see(
    project, annotator, other_project
):
    boss = UserFactory(username="boss-of-both")
    MembershipFactory(project=other_project, user=boss, role=Role.ADMIN)
    MembershipFactory(project=project, user=boss, role=Role.ENGINEER)

    response = _add(boss, other_project, annotator.username)

    assert response.status_code == 201, response.content
    assert response.json()["username"] == annotator.username


def test_an_admin_places_a_new_account_in_no_project_yet(other_project, outsider):
    UserFactory(username="just-created")

    assert _add(outsider, other_project, "just-created").status_code == 201


def test_a_project_member_without_a_member_list_role_does_not_make_names_addable(
    project, other_project, outsider
):
    # The outsider annotates in `project`: that shows them no member list there.
    MembershipFactory(project=project, user=outsider, role=Role.ANNOTATOR)
    colleague = MembershipFactory(
        project=project, user=UserFactory(username="colleague"), role=Role.REVIEWER
    ).user

    assert _add(outsider, other_project, colleague.username).status_code == 400


def test_staff_add_any_account(project, annotator, other_project, staff):
    MembershipFactory(project=other_project, user=staff, role=Role.ADMIN)

    assert _add(staff, other_project, annotator.username).status_code == 201
