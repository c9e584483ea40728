"""Item payloads (and honeypot answers) are encrypted at rest: the jsonb columns become
text holding Fernet tokens, and rows written before are encrypted in place."""

from django.db import migrations

import governance.fields

BATCH = 2000


def _rewrite(schema_editor, change) -> None:
    connection = schema_editor.connection
    last = 0
    with connection.cursor() as cursor:
        while True:
            cursor.execute(
                "SELECT id, payload, gold_answer FROM annotation_item WHERE id > %s "
                "ORDER BY id LIMIT %s",
                [last, BATCH],
            )
            rows = cursor.fetchall()
            if not rows:
                return
            last = rows[-1][0]
            for pk, payload, gold in rows:
                cursor.execute(
                    "UPDATE annotation_item SET payload = %s, gold_answer = %s WHERE id = %s",
                    [change(payload), change(gold), pk],
                )


def encrypt_existing(apps, schema_editor):
    from governance.fields import TOKEN_PREFIX, rotate_token

    def encrypt(value):
        if isinstance(value, str) and not value.startswith(TOKEN_PREFIX):
            return rotate_token(value)
        return value

    _rewrite(schema_editor, encrypt)


def decrypt_existing(apps, schema_editor):
    import json

    from governance.fields import TOKEN_PREFIX, decrypt_json

    def decrypt(value):
        if isinstance(value, str) and value.startswith(TOKEN_PREFIX):
            return json.dumps(decrypt_json(value, where="annotation_item"))
        return value

    _rewrite(schema_editor, decrypt)


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0003_curation"),
    ]

    operations = [
        migrations.AlterField(
            model_name="item",
            name="gold_answer",
            field=governance.fields.EncryptedJSONField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="item",
            name="payload",
            field=governance.fields.EncryptedJSONField(),
        ),
        migrations.RunPython(encrypt_existing, decrypt_existing),
    ]
