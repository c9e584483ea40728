"""Answers, gold labels and snapshot members stop holding free text in clear: each label
value is split into `choice` (plain jsonb: only what the label schema fixes, which
agreement and stratified splits read in SQL) and `free_text` (a Fernet token, under the
keys and rotation of item payloads). Gold-label reasons and skip reasons are encrypted
too (a lease that was not skipped has NULL). Rows written
before are split and encrypted in place, batch by batch (core.fields.rewrite_rows).

Snapshot members stay immutable: the new trigger lets an UPDATE change `free_text` only,
and only to another Fernet token, which is what key rotation does."""

import json

from django.db import migrations, models

import core.fields

TABLES = {
    "annotation_annotation": "value",
    "annotation_goldlabel": "value",
    "annotation_snapshotmember": "label",
}
FREE_TEXT_KEYS = ("response", "steps", "reason")  # as annotation.models.FREE_TEXT_KEYS
MEMBERS = "annotation_snapshotmember"
MEMBER_FIXED = ("snapshot_id", "position", "item_id", "content_hash", "choice", "method", "split")

POSTGRES_MEMBER_GUARD = """
CREATE OR REPLACE FUNCTION annotation_snapshotmember_refuse_change() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND (to_jsonb(NEW) - 'free_text') = (to_jsonb(OLD) - 'free_text')
       AND (NEW.free_text IS NULL) = (OLD.free_text IS NULL)
       AND (NEW.free_text IS NULL OR NEW.free_text LIKE 'gAAAAA%') THEN
        RETURN NEW;  -- a re-encryption under another key
    END IF;
    RAISE EXCEPTION '% is immutable: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS snapshotmember_immutable ON annotation_snapshotmember;
CREATE TRIGGER snapshotmember_immutable
    BEFORE UPDATE OR DELETE ON annotation_snapshotmember
    FOR EACH ROW EXECUTE FUNCTION annotation_snapshotmember_refuse_change();
"""
POSTGRES_MEMBER_GUARD_UNDO = """
DROP TRIGGER IF EXISTS snapshotmember_immutable ON annotation_snapshotmember;
DROP FUNCTION IF EXISTS annotation_snapshotmember_refuse_change();
CREATE TRIGGER snapshotmember_immutable
    BEFORE UPDATE OR DELETE ON annotation_snapshotmember
    FOR EACH ROW EXECUTE FUNCTION annotation_snapshot_refuse_change();
"""


def _sqlite_member_triggers(schema_editor, *, fixed_columns):
    for op in ("update", "delete", "update_text"):
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {MEMBERS}_no_{op};")
    if fixed_columns is None:  # before 0005: every UPDATE is refused
        update = f"BEFORE UPDATE ON {MEMBERS}"
    else:
        update = f"BEFORE UPDATE OF {', '.join(fixed_columns)} ON {MEMBERS}"
        schema_editor.execute(
            f"CREATE TRIGGER {MEMBERS}_no_update_text BEFORE UPDATE OF free_text ON {MEMBERS} "
            "WHEN (NEW.free_text IS NULL) <> (OLD.free_text IS NULL) "
            "OR NEW.free_text NOT LIKE 'gAAAAA%' "
            f"BEGIN SELECT RAISE(ABORT, '{MEMBERS} is immutable: UPDATE refused'); END;",
            params=None,
        )
    schema_editor.execute(
        f"CREATE TRIGGER {MEMBERS}_no_update {update} "
        f"BEGIN SELECT RAISE(ABORT, '{MEMBERS} is immutable: UPDATE refused'); END;"
    )
    schema_editor.execute(
        f"CREATE TRIGGER {MEMBERS}_no_delete BEFORE DELETE ON {MEMBERS} "
        f"BEGIN SELECT RAISE(ABORT, '{MEMBERS} is immutable: DELETE refused'); END;"
    )


def _members_writable(schema_editor, writable: bool) -> None:
    """The migration itself rewrites members: lift the immutability guard meanwhile."""
    if schema_editor.connection.vendor == "postgresql":
        action = "DISABLE" if writable else "ENABLE"
        schema_editor.execute(f"ALTER TABLE {MEMBERS} {action} TRIGGER snapshotmember_immutable")
    elif writable:
        for op in ("update", "delete", "update_text"):
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {MEMBERS}_no_{op};")


def _fire_deferred_checks(schema_editor) -> None:
    """The rows' deferred foreign-key checks run now: PostgreSQL refuses to ALTER a table
    with trigger events pending, and the next operations alter these tables."""
    schema_editor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    schema_editor.execute("SET CONSTRAINTS ALL DEFERRED")


def _json(value):
    return json.loads(value) if isinstance(value, str) else value


def _choice_part(value, column, pk):
    part = {k: v for k, v in _json(value).items() if k not in FREE_TEXT_KEYS}
    return json.dumps(part) if part else None


def _free_text_part(value, column, pk):
    from core.fields import encrypt_json

    part = {k: v for k, v in _json(value).items() if k in FREE_TEXT_KEYS}
    return encrypt_json(part) if part else None


def split_existing(apps, schema_editor):
    from core.fields import encrypt_json, rewrite_rows

    connection = schema_editor.connection
    _members_writable(schema_editor, True)
    for table, source in TABLES.items():
        schema_editor.execute(
            f"UPDATE {table} SET choice = {source}, free_text = CAST({source} AS text)"  # noqa: S608 - constants
        )
        rewrite_rows(connection, table=table, columns=["choice"], change=_choice_part)
        rewrite_rows(connection, table=table, columns=["free_text"], change=_free_text_part)
    rewrite_rows(
        connection,
        table="annotation_goldlabel",
        columns=["reason"],
        change=lambda value, column, pk: encrypt_json(value),
    )
    rewrite_rows(
        connection,
        table="annotation_lease",
        columns=["skip_reason"],
        change=lambda value, column, pk: encrypt_json(value) if value else None,
    )
    if connection.vendor == "postgresql":
        _fire_deferred_checks(schema_editor)
        _members_writable(schema_editor, False)


def install_member_guard(apps, schema_editor):
    """Last, because SQLite drops a table's triggers whenever a migration rebuilds it."""
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRES_MEMBER_GUARD, params=None)
    else:
        _sqlite_member_triggers(schema_editor, fixed_columns=MEMBER_FIXED)


def restore_member_guard(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRES_MEMBER_GUARD_UNDO, params=None)
    else:
        _sqlite_member_triggers(schema_editor, fixed_columns=None)


def join_existing(apps, schema_editor):
    from core.fields import decrypt_json, rewrite_rows

    connection = schema_editor.connection
    _members_writable(schema_editor, True)
    quote = connection.ops.quote_name
    for table, target in TABLES.items():
        after = 0
        while True:
            with connection.cursor() as cursor:
                cursor.execute(
                    f"SELECT id, choice, free_text FROM {table} WHERE id > %s ORDER BY id LIMIT 2000",  # noqa: S608 - constants
                    [after],
                )
                rows = cursor.fetchall()
                if not rows:
                    break
                cursor.executemany(
                    f"UPDATE {table} SET {quote(target)} = %s WHERE id = %s",  # noqa: S608 - constants
                    [
                        (
                            json.dumps(
                                {
                                    **(_json(choice) or {}),
                                    **(decrypt_json(text) if text is not None else {}),
                                }
                            ),
                            pk,
                        )
                        for pk, choice, text in rows
                    ],
                )
            after = rows[-1][0]
    rewrite_rows(
        connection,
        table="annotation_goldlabel",
        columns=["reason"],
        change=lambda value, column, pk: decrypt_json(value),
    )
    rewrite_rows(
        connection,
        table="annotation_lease",
        columns=["skip_reason"],
        change=lambda value, column, pk: decrypt_json(value),
    )
    schema_editor.execute("UPDATE annotation_lease SET skip_reason = '' WHERE skip_reason IS NULL")
    if connection.vendor == "postgresql":
        _fire_deferred_checks(schema_editor)
        _members_writable(schema_editor, False)


def _split_fields(model_name):
    return [
        migrations.AddField(
            model_name=model_name,
            name="choice",
            field=models.JSONField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name=model_name,
            name="free_text",
            field=core.fields.EncryptedJSONField(blank=True, null=True),
        ),
    ]


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0004_item_payload_encrypted"),
    ]

    operations = [
        migrations.RunPython(migrations.RunPython.noop, restore_member_guard),
        *_split_fields("annotation"),
        *_split_fields("goldlabel"),
        *_split_fields("snapshotmember"),
        # Nullable first, so that going back re-adds the columns before refilling them.
        migrations.AlterField(
            model_name="annotation", name="value", field=models.JSONField(null=True)
        ),
        migrations.AlterField(
            model_name="goldlabel", name="value", field=models.JSONField(null=True)
        ),
        migrations.AlterField(
            model_name="snapshotmember", name="label", field=models.JSONField(null=True)
        ),
        migrations.AlterField(
            model_name="goldlabel",
            name="reason",
            field=core.fields.EncryptedJSONField(blank=True, default=""),
        ),
        migrations.AlterField(
            model_name="lease",
            name="skip_reason",
            field=core.fields.EncryptedJSONField(blank=True, null=True),
        ),
        migrations.RunPython(split_existing, join_existing),
        migrations.RemoveField(model_name="annotation", name="value"),
        migrations.RemoveField(model_name="goldlabel", name="value"),
        migrations.RemoveField(model_name="snapshotmember", name="label"),
        migrations.RunPython(install_member_guard, migrations.RunPython.noop),
    ]
