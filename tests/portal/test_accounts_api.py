import io

import pytest
from django.db import connection
from rest_framework.test import APIClient

from core.models import ApiKey, AuditEvent, Membership, Role, User
from tests.portal.factories import UserFactory, api_key_for

pytestmark = pytest.mark.django_db


def _api(user):
    api = APIClient()
    api.force_authenticate(user)
    return api


def _actions():
    return list(AuditEvent.objects.order_by("seq").values_list("action", flat=True))


# --- accounts ------------------------------------------------------------------------------


def test_portal_admin_creates_lists_updates_and_deactivates_an_account(staff):
    api = _api(staff)

    created = api.post(
        "/api/v1/users/",
        {"username": "newbie", "email": "n@example.org", "password": "a-long-pass-phrase"},
        format="json",
    )
    user_id = created.json()["id"]
    listed = api.get("/api/v1/users/", {"is_active": "true"}).json()
    updated = api.patch(f"/api/v1/users/{user_id}/", {"first_name": "Nina"}, format="json")
    removed = api.delete(f"/api/v1/users/{user_id}/")

    assert created.status_code == 201, created.content
    assert "password" not in created.json()
    assert {u["username"] for u in listed["results"]} == {"root", "newbie"}
    assert listed["next"] is None
    assert updated.json()["first_name"] == "Nina"
    assert removed.status_code == 204
    user = User.objects.get(pk=user_id)
    assert not user.is_active
    assert user.check_password("a-long-pass-phrase")
    assert _actions() == ["user.create", "user.update", "user.set_active"]
    inactive = api.get("/api/v1/users/", {"is_active": "false"}).json()["results"]
    assert [u["username"] for u in inactive] == ["newbie"]


def test_deactivating_through_patch_revokes_the_accounts_keys(staff, annotator):
    key_secret = api_key_for(annotator)

    response = _api(staff).patch(
        f"/api/v1/users/{annotator.pk}/", {"is_active": False}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["is_active"] is False
    assert ApiKey.objects.get(user=annotator).revoked_at is not None
    keyed = APIClient()
    keyed.credentials(HTTP_AUTHORIZATION=f"Token {key_secret}")
    assert keyed.get("/api/v1/me/").status_code == 401


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/api/v1/users/", None),
        ("post", "/api/v1/users/", {"username": "x", "password": "a-long-pass-phrase"}),
        ("get", "/api/v1/users/{id}/", None),
        ("patch", "/api/v1/users/{id}/", {"is_staff": True}),
        ("delete", "/api/v1/users/{id}/", None),
    ],
)
def test_only_portal_admins_manage_accounts(admin, annotator, method, path, body):
    # A project admin is no portal admin: accounts are the people page's, staff only.
    before = (_actions(), list(User.objects.values_list("pk", "is_active", "is_staff")))

    response = getattr(_api(admin), method)(path.format(id=annotator.pk), body, format="json")

    assert response.status_code == 403
    assert (_actions(), list(User.objects.values_list("pk", "is_active", "is_staff"))) == before


def test_an_unknown_account_is_404(staff):
    assert _api(staff).get("/api/v1/users/999999/").status_code == 404
    assert _api(staff).patch("/api/v1/users/999999/", {}, format="json").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"username": "weak", "password": "123"}, "password"),  # the password rules
        ({"username": "u" * 151, "password": "a-long-pass-phrase"}, "username"),
        ({"username": "ok", "password": "a-long-pass-phrase", "email": "no"}, "email"),
        ({"username": "ok", "password": "a-long-pass-phrase", "is_admin": True}, "is_admin"),
        ({"username": "ok", "password": "p" * 10_000}, "password"),
        ({"username": ["x"], "password": {"a": 1}}, "username"),
    ],
)
def test_a_bad_account_is_a_400_naming_the_field(staff, body, field):
    response = _api(staff).post("/api/v1/users/", body, format="json")

    assert response.status_code == 400, response.content
    assert field in response.json()
    assert not User.objects.exclude(pk=staff.pk).exists()


def test_a_taken_username_is_refused_naming_it(staff, annotator):
    response = _api(staff).post(
        "/api/v1/users/", {"username": "ANN", "password": "a-long-pass-phrase"}, format="json"
    )

    assert response.status_code == 400
    assert "username" in response.json()


def test_malformed_json_is_a_400(staff):
    response = _api(staff).post("/api/v1/users/", "{nope", content_type="application/json")

    assert response.status_code == 400


def test_an_admin_cannot_lock_themselves_out(staff):
    api = _api(staff)

    demoted = api.patch(f"/api/v1/users/{staff.pk}/", {"is_staff": False}, format="json")
    deactivated = api.delete(f"/api/v1/users/{staff.pk}/")

    assert demoted.status_code == 400
    assert "is_staff" in demoted.json()
    assert deactivated.status_code == 400
    assert "is_active" in deactivated.json()
    staff.refresh_from_db()
    assert staff.is_staff
    assert staff.is_active
    assert _actions() == []


# --- API keys ------------------------------------------------------------------------------


def test_a_key_made_through_the_api_shows_its_secret_once_and_stores_only_a_hash(annotator):
    api = _api(annotator)

    created = api.post("/api/v1/me/keys/", {"name": "laptop"}, format="json").json()
    listed = api.get("/api/v1/me/keys/").json()
    one = api.get(f"/api/v1/me/keys/{created['id']}/").json()

    secret = created["key"]
    assert secret.startswith(created["prefix"])
    assert [k["prefix"] for k in listed] == [created["prefix"]]
    assert all("key" not in k and "key_hash" not in k for k in [*listed, one])
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM portal_apikey t WHERE row_to_json(t)::text LIKE %s",
            [f"%{secret}%"],
        )
        assert cursor.fetchone()[0] == 0


def test_someone_elses_key_is_404_and_stays_live(annotator, engineer):
    foreign = api_key_for(engineer)
    key = ApiKey.objects.get(user=engineer)

    assert _api(annotator).get(f"/api/v1/me/keys/{key.pk}/").status_code == 404
    assert _api(annotator).delete(f"/api/v1/me/keys/{key.pk}/").status_code == 404
    keyed = APIClient()
    keyed.credentials(HTTP_AUTHORIZATION=f"Token {foreign}")
    assert keyed.get("/api/v1/me/").status_code == 200


def test_an_unknown_key_field_is_named(annotator):
    response = _api(annotator).post(
        "/api/v1/me/keys/", {"name": "x", "expires_days": 3}, format="json"
    )

    assert response.status_code == 400
    assert "expires_days" in response.json()
    assert not ApiKey.objects.exists()


# --- projects and their members ------------------------------------------------------------


def test_the_creator_of_a_project_can_upload_its_data(staff):
    api = _api(staff)
    project = api.post("/api/v1/projects/", {"name": "Mine"}, format="json").json()
    upload = io.BytesIO(b'{"text": "first row"}\n')
    upload.name = "rows.jsonl"

    response = api.post(
        f"/api/v1/projects/{project['id']}/datasets/",
        {
            "file": upload,
            "source_description": "tickets",
            "license": "MIT",
            "consent_basis": "contract",
            "collection_date": "2025-01-01",
        },
        format="multipart",
    )

    assert project["roles"] == ["engineer", "admin"]
    assert response.status_code == 202, response.content


def test_project_settings_change_through_the_api_and_are_audited(project, admin):
    response = _api(admin).patch(
        f"/api/v1/projects/{project.pk}/",
        {"name": "Renamed", "description": "new words"},
        format="json",
    )

    assert response.status_code == 200
    project.refresh_from_db()
    assert (project.name, project.description) == ("Renamed", "new words")
    event = AuditEvent.objects.get(action="project.update")
    assert event.data["name"] == {"from": "Acme support bot", "to": "Renamed"}
    assert "new words" not in str(event.data)  # free text is logged as a hash


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "n" * 201}, "name"),
        ({"name": "  "}, "name"),
        ({"description": "d" * 20_001}, "description"),
        ({"archived": "maybe"}, "archived"),
        ({"slug": "new"}, "slug"),
    ],
)
def test_a_bad_project_change_is_a_400_naming_the_field(project, admin, body, field):
    response = _api(admin).patch(f"/api/v1/projects/{project.pk}/", body, format="json")

    assert response.status_code == 400, response.content
    assert field in response.json()
    project.refresh_from_db()
    assert project.name == "Acme support bot"


def test_admin_changes_a_members_role(project, admin, annotator):
    membership = Membership.objects.get(user=annotator)

    response = _api(admin).patch(
        f"/api/v1/projects/{project.pk}/memberships/{membership.pk}/",
        {"role": Role.REVIEWER},
        format="json",
    )

    assert response.status_code == 200
    assert response.json()["role"] == "reviewer"
    assert list(Membership.objects.filter(user=annotator).values_list("role", flat=True)) == [
        "reviewer"
    ]
    event = AuditEvent.objects.get(action="membership.change")
    assert event.data == {"user": annotator.pk, "from": "annotator", "to": "reviewer"}


def test_changing_to_a_role_held_already_merges_the_rows(project, admin, annotator):
    Membership.objects.create(project=project, user=annotator, role=Role.REVIEWER)
    row = Membership.objects.get(user=annotator, role=Role.ANNOTATOR)

    response = _api(admin).patch(
        f"/api/v1/projects/{project.pk}/memberships/{row.pk}/", {"role": "reviewer"}, format="json"
    )

    assert response.status_code == 200
    assert list(Membership.objects.filter(user=annotator).values_list("role", flat=True)) == [
        "reviewer"
    ]


def test_the_last_admin_keeps_the_role(project, admin):
    row = Membership.objects.get(user=admin)
    api = _api(admin)

    changed = api.patch(
        f"/api/v1/projects/{project.pk}/memberships/{row.pk}/", {"role": "engineer"}, format="json"
    )
    removed = api.delete(f"/api/v1/projects/{project.pk}/memberships/{row.pk}/")

    assert (changed.status_code, removed.status_code) == (400, 400)
    assert "role" in changed.json()
    assert "role" in removed.json()
    assert Membership.objects.get(pk=row.pk).role == Role.ADMIN
    assert _actions() == []


def test_another_projects_membership_is_404_and_unchanged(project, admin, outsider, other_project):
    foreign = Membership.objects.filter(project=other_project).first()
    url = f"/api/v1/projects/{project.pk}/memberships/{foreign.pk}/"
    api = _api(admin)

    answers = [
        api.get(url).status_code,
        api.patch(url, {"role": "admin"}, format="json").status_code,
        api.delete(url).status_code,
    ]

    assert answers == [404, 404, 404]
    assert Membership.objects.filter(pk=foreign.pk, role=foreign.role).exists()


@pytest.mark.parametrize(
    "body", [{"role": "owner"}, {}, {"role": "admin", "user": 3}, {"role": ["admin"]}]
)
def test_a_bad_role_change_is_a_400_naming_the_field(project, admin, annotator, body):
    row = Membership.objects.get(user=annotator)

    response = _api(admin).patch(
        f"/api/v1/projects/{project.pk}/memberships/{row.pk}/", body, format="json"
    )

    assert response.status_code == 400
    assert set(response.json()) <= {"role", "user"}
    assert Membership.objects.get(pk=row.pk).role == Role.ANNOTATOR


def test_memberships_filter_by_role_and_user(project, admin, annotator, engineer):
    api = _api(admin)
    url = f"/api/v1/projects/{project.pk}/memberships/"

    by_role = api.get(url, {"role": "engineer"}).json()
    by_user = api.get(url, {"user": annotator.pk}).json()
    bad = api.get(url, {"role": "owner"})
    unknown = api.get(url, {"username": "ann"})

    assert [m["username"] for m in by_role] == ["eng"]
    assert [m["role"] for m in by_user] == ["annotator"]
    assert bad.status_code == 400
    assert "role" in bad.json()
    assert unknown.status_code == 400
    assert "username" in unknown.json()


def test_a_newcomer_is_added_by_username(project, admin):
    UserFactory(username="fresh")

    response = _api(admin).post(
        f"/api/v1/projects/{project.pk}/memberships/",
        {"username": "fresh", "role": "annotator"},
        format="json",
    )

    assert response.status_code == 201
    assert Membership.objects.filter(user__username="fresh", role="annotator").exists()
