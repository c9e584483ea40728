"""The audit log (events, chain head, signed checkpoints) moves from governance into core
(issue 19). Only Django's model state moves: the tables keep their names, rows, triggers
and indexes, so nothing is copied and the hash chain is untouched."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("governance", "0005_d_audit_checkpoints"),
        ("core", "0002_a_api_keys"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="AuditChainHead",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        ("seq", models.BigIntegerField(default=0)),
                        (
                            "hash",
                            models.CharField(
                                default="0000000000000000000000000000000000000000000000000000000000000000",
                                max_length=64,
                            ),
                        ),
                    ],
                    options={
                        "db_table": "governance_auditchainhead",
                    },
                ),
                migrations.CreateModel(
                    name="AuditCheckpoint",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
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
                    options={
                        "db_table": "governance_auditcheckpoint",
                        "ordering": ["tree_size"],
                    },
                ),
                migrations.CreateModel(
                    name="AuditEvent",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        ("seq", models.BigIntegerField(unique=True)),
                        ("created_at", models.DateTimeField()),
                        ("actor_username", models.CharField(blank=True, max_length=150)),
                        ("action", models.CharField(max_length=100)),
                        ("target_type", models.CharField(blank=True, max_length=100)),
                        ("target_id", models.CharField(blank=True, max_length=64)),
                        ("data", models.JSONField(default=dict)),
                        ("prev_hash", models.CharField(max_length=64)),
                        ("hash", models.CharField(max_length=64, unique=True)),
                        (
                            "actor",
                            models.ForeignKey(
                                null=True,
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="+",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                        (
                            "project",
                            models.ForeignKey(
                                null=True,
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="+",
                                to="core.project",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "governance_auditevent",
                        "ordering": ["seq"],
                        "indexes": [
                            models.Index(
                                fields=["project", "seq"], name="governance__project_f736d4_idx"
                            ),
                            models.Index(
                                fields=["target_type", "target_id"],
                                name="governance__target__e5d48d_idx",
                            ),
                            models.Index(fields=["action"], name="governance__action_a0b3a0_idx"),
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
