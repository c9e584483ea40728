"""Item payloads (and honeypot answers) are encrypted at rest: the jsonb columns become
text holding Fernet tokens, and rows written before are encrypted in place."""

from django.db import migrations

import core.fields

COLUMNS = ["payload", "gold_answer"]


def encrypt_existing(apps, schema_editor):
    from core.fields import TOKEN_PREFIX, rewrite_rows, rotate_token

    rewrite_rows(
        schema_editor.connection,
        table="annotation_item",
        columns=COLUMNS,
        change=lambda value, column, pk: (
            value if value.startswith(TOKEN_PREFIX) else rotate_token(value)
        ),
    )


def decrypt_existing(apps, schema_editor):
    import json

    from core.fields import TOKEN_PREFIX, decrypt_json, rewrite_rows

    rewrite_rows(
        schema_editor.connection,
        table="annotation_item",
        columns=COLUMNS,
        change=lambda value, column, pk: (
            json.dumps(decrypt_json(value, where=f"annotation_item.{column} row {pk}"))
            if value.startswith(TOKEN_PREFIX)
            else value
        ),
    )


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0003_curation"),
    ]

    operations = [
        migrations.AlterField(
            model_name="item",
            name="gold_answer",
            field=core.fields.EncryptedJSONField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="item",
            name="payload",
            field=core.fields.EncryptedJSONField(),
        ),
        migrations.RunPython(encrypt_existing, decrypt_existing),
    ]
