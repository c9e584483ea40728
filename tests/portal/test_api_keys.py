import hashlib
from datetime import timedelta

import pytest
from django.apps import apps
from django.contrib import admin
from django.db import connection
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from annotation.models import Annotation, GoldLabel
from core import services
from core.models import ApiKey, AuditEvent
from core.services.audit import audit_record
from tests.annotation.factories import ItemFactory, classification_setup
from tests.portal.factories import api_key_for

pytestmark = pytest.mark.django_db

SECRET_TEXT = "patient Jane Roe, ward 7"


def _key_client(raw):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    return api


def _rows_containing(table, text):
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM {table} t WHERE row_to_json(t)::text LIKE %s",  # noqa: S608
            [f"%{text}%"],
        )
        return cursor.fetchone()[0]


def _actions():
    return list(AuditEvent.objects.order_by("seq").values_list("action", flat=True))


# --- storage ------------------------------------------------------------------------------


def test_a_key_is_stored_only_as_its_hash(annotator):
    key, raw = services.api_key_create(user=annotator, name="laptop")

    assert key.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert raw.startswith(key.prefix)
    assert len(raw) > 40
    assert _rows_containing("portal_apikey", raw) == 0
    assert _rows_containing("governance_auditevent", raw) == 0
    assert _key_client(raw).get("/api/v1/me/").json()["username"] == annotator.username


def test_creation_and_revocation_are_audited(annotator):
    key, _ = services.api_key_create(user=annotator, name="laptop", expires_in_days=7)
    services.api_key_revoke(key=key, revoked_by=annotator)
    services.api_key_revoke(key=key, revoked_by=annotator)  # a second revoke changes nothing

    events = AuditEvent.objects.filter(target_id=str(key.pk)).order_by("seq")
    assert [(e.action, e.actor_id, e.data["prefix"]) for e in events] == [
        ("api_key.create", annotator.pk, key.prefix),
        ("api_key.revoke", annotator.pk, key.prefix),
    ]
    key.refresh_from_db()
    assert abs(key.expires_at - key.created_at - timedelta(days=7)) < timedelta(seconds=5)


def test_a_key_expires_after_the_configured_days_by_default(annotator, settings):
    settings.PORTAL_API_KEY_DAYS = 30
    key, _ = services.api_key_create(user=annotator, name="ci")

    assert abs((key.expires_at - timezone.now()) - timedelta(days=30)) < timedelta(minutes=1)


# --- refused keys -------------------------------------------------------------------------


def _expire(raw):
    ApiKey.objects.filter(key_hash=hashlib.sha256(raw.encode()).hexdigest()).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )


def _revoke(raw):
    key = ApiKey.objects.get(key_hash=hashlib.sha256(raw.encode()).hexdigest())
    services.api_key_revoke(key=key, revoked_by=key.user)


@pytest.mark.parametrize("spoil", [_expire, _revoke], ids=["expired", "revoked"])
def test_expired_and_revoked_keys_are_refused_with_401(project, annotator, spoil):
    classification_setup(project, k=2)
    ItemFactory(project=project, dataset__project=project)
    raw = api_key_for(annotator)
    api = _key_client(raw)
    queue_next = f"/api/v1/projects/{project.pk}/queue/next/"
    assert api.get("/api/v1/me/").status_code == 200

    spoil(raw)

    for response in (api.get("/api/v1/me/"), api.post(queue_next, {}, format="json")):
        assert response.status_code == 401
        assert response["WWW-Authenticate"] == "Token"
    assert not Annotation.objects.exists()


def test_unknown_and_oversized_keys_are_refused_with_401(annotator):
    for raw in ("tp_not-a-key", "x" * 5000):
        assert _key_client(raw).get("/api/v1/me/").status_code == 401


def test_using_a_key_records_when_it_was_last_used(annotator):
    raw = api_key_for(annotator)

    _key_client(raw).get("/api/v1/me/")

    assert ApiKey.objects.get().last_used_at is not None


# --- revoked on password change and deactivation ------------------------------------------


def test_password_change_on_the_account_page_revokes_every_key(client, annotator):
    raws = [api_key_for(annotator, name) for name in ("laptop", "ci")]
    client.force_login(annotator)

    response = client.post(
        "/accounts/",
        {
            "old_password": "ann-pass-123",
            "new_password1": "brand-new-phrase-9",
            "new_password2": "brand-new-phrase-9",
        },
    )

    assert response.status_code == 302
    assert not ApiKey.objects.filter(revoked_at__isnull=True).exists()
    assert [_key_client(raw).get("/api/v1/me/").status_code for raw in raws] == [401, 401]
    event = AuditEvent.objects.get(action="api_key.revoke_all")
    assert event.data["reason"] == "password_change"


def test_deactivation_revokes_every_key(annotator, staff):
    raw = api_key_for(annotator)

    services.user_set_active(user=annotator, active=False, changed_by=staff)
    services.user_set_active(user=annotator, active=True, changed_by=staff)

    assert _key_client(raw).get("/api/v1/me/").status_code == 401
    assert ApiKey.objects.get().revoked_at is not None
    assert AuditEvent.objects.get(action="api_key.revoke_all").data["reason"] == "deactivated"


def test_the_admin_password_change_goes_to_the_account_page(client, staff):
    client.force_login(staff)

    response = client.get("/admin/password_change/")

    assert response.status_code == 302
    assert response["Location"] == reverse("account")


# --- the API for one's own keys ---------------------------------------------------------


def test_the_api_creates_a_key_once_and_lists_it_without_secrets(annotator):
    api = APIClient()
    api.force_login(annotator)

    created = api.post("/api/v1/me/keys/", {"name": "script", "expires_in_days": 10}, format="json")
    listed = api.get("/api/v1/me/keys/")

    assert created.status_code == 201
    assert created["Cache-Control"] == "no-store"
    raw = created.json()["key"]
    assert _key_client(raw).get("/api/v1/me/").status_code == 200
    assert listed.status_code == 200
    (row,) = listed.json()
    assert set(row) == {
        "id",
        "name",
        "prefix",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    }
    assert raw not in listed.content.decode()
    assert row["prefix"] == raw[: len(row["prefix"])]


def test_a_key_cannot_mint_more_keys(annotator):
    api = _key_client(api_key_for(annotator))

    response = api.post("/api/v1/me/keys/", {"name": "successor"}, format="json")

    assert response.status_code == 403
    assert ApiKey.objects.count() == 1


def test_the_api_revokes_only_the_callers_own_keys(annotator, reviewer):
    own, _ = services.api_key_create(user=annotator, name="mine")
    foreign, foreign_raw = services.api_key_create(user=reviewer, name="theirs")
    api = APIClient()
    api.force_login(annotator)

    refused = api.delete(f"/api/v1/me/keys/{foreign.pk}/")
    listed = api.get("/api/v1/me/keys/").json()
    revoked = api.delete(f"/api/v1/me/keys/{own.pk}/")

    assert (refused.status_code, revoked.status_code) == (404, 204)
    assert [k["id"] for k in listed] == [own.pk]
    foreign.refresh_from_db()
    assert foreign.revoked_at is None
    assert _key_client(foreign_raw).get("/api/v1/me/").status_code == 200
    assert "api_key.revoke" in _actions()


def test_the_account_page_cannot_revoke_anothers_key(client, annotator, reviewer):
    foreign, _ = services.api_key_create(user=reviewer, name="theirs")
    client.force_login(annotator)

    response = client.post(reverse("api_key_revoke", args=[foreign.pk]))

    assert response.status_code == 404
    foreign.refresh_from_db()
    assert foreign.revoked_at is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x" * 101}, "name"),
        ({}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "ok", "expires_in_days": "soon"}, "expires_in_days"),
        ({"name": "ok", "expires_in_days": 0}, "expires_in_days"),
        ({"name": "ok", "expires_in_days": 10**6}, "expires_in_days"),
        ({"name": "ok", "expires_in_days": 10**400}, "expires_in_days"),
    ],
)
def test_bad_key_requests_get_400_naming_the_field(annotator, body, field):
    api = APIClient()
    api.force_login(annotator)

    response = api.post("/api/v1/me/keys/", body, format="json")

    assert response.status_code == 400
    assert field in response.json()
    assert not ApiKey.objects.exists()


def test_malformed_json_gets_400(annotator):
    api = APIClient()
    api.force_login(annotator)

    response = api.post("/api/v1/me/keys/", "{nope", content_type="application/json")

    assert response.status_code == 400
    assert not ApiKey.objects.exists()


# --- the account page ---------------------------------------------------------------------


def test_the_account_page_shows_a_new_key_once(client, annotator):
    client.force_login(annotator)

    created = client.post(
        reverse("api_key_create"), {"name": "laptop"}, headers={"HX-Request": "true"}
    )
    later = client.get(reverse("account"))

    key = ApiKey.objects.get()
    page = created.content.decode()
    secret = page.split('data-testid="api-key-secret">')[1].split("<")[0]
    assert created.status_code == 200
    assert "no-store" in created["Cache-Control"]
    assert 'id="api-keys"' in page
    assert "<html" not in page  # the partial
    assert hashlib.sha256(secret.encode()).hexdigest() == key.key_hash
    assert secret not in later.content.decode()
    assert key.prefix in later.content.decode()


def test_the_account_page_refuses_a_nameless_key(client, annotator):
    client.force_login(annotator)

    response = client.post(reverse("api_key_create"), {"name": ""})

    assert response.status_code == 400
    assert not ApiKey.objects.exists()


def test_the_account_page_revokes_a_key(client, annotator):
    key, raw = services.api_key_create(user=annotator, name="laptop")
    client.force_login(annotator)

    response = client.post(reverse("api_key_revoke", args=[key.pk]), headers={"HX-Request": "true"})

    assert response.status_code == 200
    assert "revoked" in response.content.decode()
    assert _key_client(raw).get("/api/v1/me/").status_code == 401


# --- the admin ----------------------------------------------------------------------------


def test_the_admin_has_no_token_group_or_api_key_pages(client, staff):
    client.force_login(staff)

    registered = {model._meta.label for model in admin.site._registry}

    assert not registered & {
        "authtoken.Token",
        "authtoken.TokenProxy",
        "auth.Group",
        "core.ApiKey",
    }
    for url in ("/admin/authtoken/token/", "/admin/auth/group/", "/admin/core/apikey/"):
        assert client.get(url).status_code == 404, url


def test_the_admin_adds_and_changes_nothing(client, staff, project):
    client.force_login(staff)

    for model, model_admin in admin.site._registry.items():
        opts = model._meta
        assert not model_admin.has_add_permission(_request(staff))
        assert not model_admin.has_change_permission(_request(staff))
        assert not model_admin.has_delete_permission(_request(staff))
        add = client.post(f"/admin/{opts.app_label}/{opts.model_name}/add/", {})
        assert add.status_code == 403, opts.label


def _request(user):
    request = RequestFactory().get("/admin/")
    request.user = user
    return request


def test_admin_pages_show_no_decrypted_content(client, staff, project, annotator):
    item = ItemFactory(project=project, dataset__project=project, payload={"text": SECRET_TEXT})
    GoldLabel.objects.create(
        project=project,
        item=item,
        value={"text": SECRET_TEXT},
        method="adjudicated",
        reason=SECRET_TEXT,
    )
    audit_record(actor=staff, action="test.quote", target=item, data={"text": SECRET_TEXT})
    client.force_login(staff)

    for model, _model_admin in admin.site._registry.items():
        opts = model._meta
        listing = client.get(f"/admin/{opts.app_label}/{opts.model_name}/")
        assert listing.status_code == 200, opts.label
        assert SECRET_TEXT not in listing.content.decode(), opts.label
        for pk in model.objects.values_list("pk", flat=True)[:5]:
            page = client.get(f"/admin/{opts.app_label}/{opts.model_name}/{pk}/change/")
            assert page.status_code == 200, (opts.label, pk)
            assert SECRET_TEXT not in page.content.decode(), (opts.label, pk)


# --- migrating DRF tokens -----------------------------------------------------------------


def test_existing_drf_tokens_become_hashed_keys_and_the_plaintext_table_goes(annotator):
    migration = __import__("core.migrations.0002_a_api_keys", fromlist=["x"])
    old_key = "0123456789abcdef0123456789abcdef01234567"
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, "
            "created timestamptz NOT NULL, user_id bigint NOT NULL)"
        )
        cursor.execute(
            "INSERT INTO authtoken_token VALUES (%s, now() - interval '3 days', %s)",
            [old_key, annotator.pk],
        )

    with connection.schema_editor() as schema_editor:
        migration.carry_over_drf_tokens(apps, schema_editor)

    assert "authtoken_token" not in connection.introspection.table_names()
    key = ApiKey.objects.get()
    assert (key.user, key.prefix, key.name) == (annotator, old_key[:8], "Migrated API token")
    assert key.created_at < timezone.now() - timedelta(days=2)
    assert _rows_containing("portal_apikey", old_key) == 0
    assert _key_client(old_key).get("/api/v1/me/").json()["username"] == annotator.username
