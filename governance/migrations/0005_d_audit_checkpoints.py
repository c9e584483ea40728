"""Signed checkpoints of the audit chain, and the database refusing every way to rewrite
the audit tables: TRUNCATE on all three, DELETE on all three, UPDATE on events and
checkpoints, and any UPDATE that does not move the chain head forward.

A superuser can still switch triggers off (ALTER TABLE ... DISABLE TRIGGER, or
session_replication_role = replica, which is how the test suite's flush empties the
tables); what such a rewrite cannot do is reproduce a signed checkpoint, which
verify_audit_log checks. SQLite (the embedded demo) has no TRUNCATE statement, and its
DELETE without WHERE fires row triggers, so row triggers cover it there."""

from django.db import migrations, models

POSTGRES_UP = """
CREATE OR REPLACE FUNCTION governance_audit_refuse() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE OR REPLACE FUNCTION governance_auditchainhead_forward() RETURNS trigger AS $$
BEGIN
    IF NEW.id <> OLD.id OR NEW.seq <= OLD.seq THEN
        RAISE EXCEPTION 'governance_auditchainhead only moves forward: head #% to #% refused',
            OLD.seq, NEW.seq USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER auditevent_no_truncate BEFORE TRUNCATE ON governance_auditevent
    FOR EACH STATEMENT EXECUTE FUNCTION governance_audit_refuse();
CREATE TRIGGER auditchainhead_no_truncate BEFORE TRUNCATE ON governance_auditchainhead
    FOR EACH STATEMENT EXECUTE FUNCTION governance_audit_refuse();
CREATE TRIGGER auditcheckpoint_no_truncate BEFORE TRUNCATE ON governance_auditcheckpoint
    FOR EACH STATEMENT EXECUTE FUNCTION governance_audit_refuse();
CREATE TRIGGER auditchainhead_no_delete BEFORE DELETE ON governance_auditchainhead
    FOR EACH ROW EXECUTE FUNCTION governance_audit_refuse();
CREATE TRIGGER auditchainhead_forward_only BEFORE UPDATE ON governance_auditchainhead
    FOR EACH ROW EXECUTE FUNCTION governance_auditchainhead_forward();
CREATE TRIGGER auditcheckpoint_append_only BEFORE UPDATE OR DELETE ON governance_auditcheckpoint
    FOR EACH ROW EXECUTE FUNCTION governance_audit_refuse();
"""
POSTGRES_DOWN = """
DROP TRIGGER IF EXISTS auditevent_no_truncate ON governance_auditevent;
DROP TRIGGER IF EXISTS auditchainhead_no_truncate ON governance_auditchainhead;
DROP TRIGGER IF EXISTS auditcheckpoint_no_truncate ON governance_auditcheckpoint;
DROP TRIGGER IF EXISTS auditchainhead_no_delete ON governance_auditchainhead;
DROP TRIGGER IF EXISTS auditchainhead_forward_only ON governance_auditchainhead;
DROP TRIGGER IF EXISTS auditcheckpoint_append_only ON governance_auditcheckpoint;
DROP FUNCTION IF EXISTS governance_auditchainhead_forward();
DROP FUNCTION IF EXISTS governance_audit_refuse();
"""
SQLITE_UP = [
    """CREATE TRIGGER auditchainhead_no_delete BEFORE DELETE ON governance_auditchainhead
       BEGIN SELECT RAISE(ABORT, 'governance_auditchainhead is append-only: DELETE refused');
       END;""",
    """CREATE TRIGGER auditchainhead_forward_only BEFORE UPDATE ON governance_auditchainhead
       WHEN NEW.id <> OLD.id OR NEW.seq <= OLD.seq
       BEGIN SELECT RAISE(ABORT, 'governance_auditchainhead only moves forward'); END;""",
    """CREATE TRIGGER auditcheckpoint_no_update BEFORE UPDATE ON governance_auditcheckpoint
       BEGIN SELECT RAISE(ABORT, 'governance_auditcheckpoint is append-only: UPDATE refused');
       END;""",
    """CREATE TRIGGER auditcheckpoint_no_delete BEFORE DELETE ON governance_auditcheckpoint
       BEGIN SELECT RAISE(ABORT, 'governance_auditcheckpoint is append-only: DELETE refused');
       END;""",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS auditchainhead_no_delete;",
    "DROP TRIGGER IF EXISTS auditchainhead_forward_only;",
    "DROP TRIGGER IF EXISTS auditcheckpoint_no_update;",
    "DROP TRIGGER IF EXISTS auditcheckpoint_no_delete;",
]


def install(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_UP, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_UP:
            schema_editor.execute(statement)
    else:
        raise RuntimeError(f"no append-only triggers for the {vendor} backend")


def uninstall(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_DOWN, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_DOWN:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("governance", "0004_approvals_dossiers")]

    operations = [
        migrations.CreateModel(
            name="AuditCheckpoint",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("tree_size", models.BigIntegerField(unique=True)),
                ("head_hash", models.CharField(max_length=64)),
                ("timestamp", models.CharField(max_length=40)),
                ("key_id", models.CharField(max_length=64)),
                ("public_key", models.TextField()),
                ("signature", models.CharField(max_length=100)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
            ],
            options={"ordering": ["tree_size"]},
        ),
        migrations.RunPython(install, uninstall),
    ]
