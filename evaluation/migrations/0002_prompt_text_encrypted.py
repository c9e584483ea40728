"""Prompts and reference answers are encrypted at rest, as item payloads are (a prompt set
built from a snapshot holds items' text). Each column holds a Fernet token of a JSON
string; rows written before are encrypted in place."""

from django.db import migrations

import governance.fields

BATCH = 2000


def _rewrite(schema_editor, change) -> None:
    connection = schema_editor.connection
    last = 0
    with connection.cursor() as cursor:
        while True:
            cursor.execute(
                "SELECT id, text, reference FROM evaluation_prompt WHERE id > %s "
                "ORDER BY id LIMIT %s",
                [last, BATCH],
            )
            rows = cursor.fetchall()
            if not rows:
                return
            last = rows[-1][0]
            for pk, text, reference in rows:
                cursor.execute(
                    "UPDATE evaluation_prompt SET text = %s, reference = %s WHERE id = %s",
                    [change(text), change(reference), pk],
                )


def encrypt_existing(apps, schema_editor):
    from governance.fields import encrypt_json

    _rewrite(schema_editor, lambda value: encrypt_json(value or ""))


def decrypt_existing(apps, schema_editor):
    from governance.fields import decrypt_json

    _rewrite(schema_editor, lambda value: decrypt_json(value, where="evaluation_prompt"))


class Migration(migrations.Migration):
    dependencies = [
        ("evaluation", "0001_initial"),
    ]

    operations = [
        migrations.AlterField(
            model_name="prompt",
            name="reference",
            field=governance.fields.EncryptedJSONField(blank=True, default=""),
        ),
        migrations.AlterField(
            model_name="prompt",
            name="text",
            field=governance.fields.EncryptedJSONField(),
        ),
        migrations.RunPython(encrypt_existing, decrypt_existing),
    ]
