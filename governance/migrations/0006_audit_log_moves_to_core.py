"""The audit log now belongs to core (core 0003): governance forgets the models, the
database keeps the tables."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0003_audit_log_moves_here"),
        ("governance", "0005_d_audit_checkpoints"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(
                    name="AuditChainHead",
                ),
                migrations.DeleteModel(
                    name="AuditCheckpoint",
                ),
                migrations.DeleteModel(
                    name="AuditEvent",
                ),
            ],
            database_operations=[],
        ),
    ]
