"""Model outputs and every copy of them (battles' two responses, metric runs' examples) and
reviewers' rationales are encrypted at rest, as prompts are. Text columns become Fernet
tokens of JSON strings; `examples` (JSON) becomes a token of the same JSON. The check that a
battle's two responses differ compared them in SQL, which ciphertext cannot do: the
campaign service already skips identical pairs, and now it alone does."""

import json

from django.db import migrations

import core.fields

# table -> (column, whether the plaintext column holds JSON rather than text)
COLUMNS = {
    "evaluation_generation": [("output", False)],
    "evaluation_battle": [("text_x", False), ("text_y", False)],
    "evaluation_judgment": [("rationale", False)],
    "evaluation_metricrun": [("examples", True)],
}


def _walk(schema_editor, change):
    from core.fields import rewrite_rows

    for table, columns in COLUMNS.items():
        is_json = dict(columns)
        rewrite_rows(
            schema_editor.connection,
            table=table,
            columns=[c for c, _ in columns],
            change=lambda value, column, pk, table=table, is_json=is_json: change(
                value, table, column, pk, is_json[column]
            ),
        )


def encrypt_existing(apps, schema_editor):
    from core.fields import encrypt_json

    def change(value, table, column, pk, is_json):
        if not isinstance(value, str):  # a JSON column some drivers hand back decoded
            return encrypt_json(value)
        return encrypt_json(json.loads(value) if is_json else value)

    _walk(schema_editor, change)


def decrypt_existing(apps, schema_editor):
    from core.fields import decrypt_json

    def change(value, table, column, pk, is_json):
        plain = decrypt_json(value, where=f"{table}.{column} row {pk}")
        return json.dumps(plain) if is_json else plain

    _walk(schema_editor, change)


class Migration(migrations.Migration):
    dependencies = [
        ("evaluation", "0002_prompt_text_encrypted"),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="battle",
            name="battle_outputs_differ",
        ),
        migrations.AlterField(
            model_name="battle",
            name="text_x",
            field=core.fields.EncryptedJSONField(),
        ),
        migrations.AlterField(
            model_name="battle",
            name="text_y",
            field=core.fields.EncryptedJSONField(),
        ),
        migrations.AlterField(
            model_name="generation",
            name="output",
            field=core.fields.EncryptedJSONField(),
        ),
        migrations.AlterField(
            model_name="judgment",
            name="rationale",
            field=core.fields.EncryptedJSONField(blank=True, default=""),
        ),
        migrations.AlterField(
            model_name="metricrun",
            name="examples",
            field=core.fields.EncryptedJSONField(blank=True, default=list),
        ),
        migrations.RunPython(encrypt_existing, decrypt_existing),
    ]
