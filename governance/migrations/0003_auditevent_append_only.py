"""The database itself refuses UPDATE and DELETE on the audit log."""

from django.db import migrations

POSTGRES_UP = """
CREATE OR REPLACE FUNCTION governance_auditevent_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'governance_auditevent is append-only: % of event % refused',
        TG_OP, OLD.seq USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER auditevent_append_only
    BEFORE UPDATE OR DELETE ON governance_auditevent
    FOR EACH ROW EXECUTE FUNCTION governance_auditevent_refuse_change();
"""
POSTGRES_DOWN = """
DROP TRIGGER IF EXISTS auditevent_append_only ON governance_auditevent;
DROP FUNCTION IF EXISTS governance_auditevent_refuse_change();
"""
SQLITE_UP = [
    """CREATE TRIGGER auditevent_no_update BEFORE UPDATE ON governance_auditevent
       BEGIN SELECT RAISE(ABORT, 'governance_auditevent is append-only: UPDATE refused'); END;""",
    """CREATE TRIGGER auditevent_no_delete BEFORE DELETE ON governance_auditevent
       BEGIN SELECT RAISE(ABORT, 'governance_auditevent is append-only: DELETE refused'); END;""",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS auditevent_no_update;",
    "DROP TRIGGER IF EXISTS auditevent_no_delete;",
]


def install(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_UP, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_UP:
            schema_editor.execute(statement)
    else:
        raise RuntimeError(f"no append-only trigger for the {vendor} backend")


def uninstall(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_DOWN)
    elif vendor == "sqlite":
        for statement in SQLITE_DOWN:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("governance", "0002_initial")]
    operations = [migrations.RunPython(install, uninstall)]
