"""API keys stored hashed replace DRF's plaintext tokens.

Existing DRF tokens (rest_framework.authtoken, no longer installed) are carried over as
hashed keys named "Migrated API token", so their clients keep working until the keys
expire (PORTAL_API_KEY_DAYS from now); then the plaintext table is dropped, with the
app's migration records, so no token is left in clear."""

import hashlib
from datetime import timedelta

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models
from django.utils import timezone


def carry_over_drf_tokens(apps, schema_editor):
    connection = schema_editor.connection
    if "authtoken_token" not in connection.introspection.table_names():
        return
    ApiKey = apps.get_model("core", "ApiKey")
    expires_at = timezone.now() + timedelta(days=settings.PORTAL_API_KEY_DAYS)
    with connection.cursor() as cursor:
        cursor.execute("SELECT key, user_id, created FROM authtoken_token")
        rows = cursor.fetchall()
    keys = ApiKey.objects.bulk_create(
        ApiKey(
            user_id=user_id,
            name="Migrated API token",
            prefix=key[:8],
            key_hash=hashlib.sha256(key.encode()).hexdigest(),
            expires_at=expires_at,
        )
        for key, user_id, _created in rows
    )
    # auto_now_add set the creation time to now; keep the token's own.
    for api_key, (_key, _user, created) in zip(keys, rows, strict=True):
        ApiKey.objects.filter(pk=api_key.pk).update(created_at=created)
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE authtoken_token")
        cursor.execute("DELETE FROM django_migrations WHERE app = 'authtoken'")


class Migration(migrations.Migration):
    replaces = [("portal", "0002_a_api_keys")]
    dependencies = [
        ("core", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="ApiKey",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("name", models.CharField(max_length=100)),
                ("prefix", models.CharField(max_length=16)),
                ("key_hash", models.CharField(max_length=64, unique=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("last_used_at", models.DateTimeField(blank=True, null=True)),
                ("expires_at", models.DateTimeField()),
                ("revoked_at", models.DateTimeField(blank=True, null=True)),
                (
                    "user",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="api_keys",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "db_table": "portal_apikey",
                "ordering": ["-created_at", "-id"],
                "indexes": [
                    models.Index(
                        fields=["user", "revoked_at"], name="portal_apik_user_id_70a8e2_idx"
                    )
                ],
            },
        ),
        migrations.RunPython(carry_over_drf_tokens, migrations.RunPython.noop),
    ]
