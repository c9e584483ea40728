"""Prompts and reference answers are encrypted at rest, as item payloads are (a prompt set
built from a snapshot holds items' text). Each column holds a Fernet token of a JSON
string; rows written before are encrypted in place."""

from django.db import migrations

import core.fields

COLUMNS = ["text", "reference"]


def encrypt_existing(apps, schema_editor):
    from core.fields import encrypt_json, rewrite_rows

    rewrite_rows(
        schema_editor.connection,
        table="evaluation_prompt",
        columns=COLUMNS,
        change=lambda value, column, pk: encrypt_json(value),
    )


def decrypt_existing(apps, schema_editor):
    from core.fields import decrypt_json, rewrite_rows

    rewrite_rows(
        schema_editor.connection,
        table="evaluation_prompt",
        columns=COLUMNS,
        change=lambda value, column, pk: decrypt_json(
            value, where=f"evaluation_prompt.{column} row {pk}"
        ),
    )


class Migration(migrations.Migration):
    dependencies = [
        ("evaluation", "0001_initial"),
    ]

    operations = [
        migrations.AlterField(
            model_name="prompt",
            name="reference",
            field=core.fields.EncryptedJSONField(blank=True, default=""),
        ),
        migrations.AlterField(
            model_name="prompt",
            name="text",
            field=core.fields.EncryptedJSONField(),
        ),
        migrations.RunPython(encrypt_existing, decrypt_existing),
    ]
