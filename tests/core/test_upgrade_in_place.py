"""A database migrated at main before the foundation moved into `core` upgrades in place:
same rows, same audit chain, content types following their models."""

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from django.db import connection

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
BEFORE_CORE = Path(__file__).parent / "fixtures" / "db_before_core.sql"
TABLES = [
    "portal_user",
    "portal_project",
    "portal_membership",
    "portal_apikey",
    "governance_auditevent",
    "governance_auditchainhead",
    "annotation_dataset",
    "annotation_item",
    "annotation_annotation",
]
ORM_COUNTS = """
import json, django
django.setup()
from core.models import ApiKey, AuditEvent, Membership, Project, User
from annotation.models import Annotation, Item
print(json.dumps({
    "portal_user": User.objects.count(),
    "portal_project": Project.objects.count(),
    "portal_membership": Membership.objects.count(),
    "portal_apikey": ApiKey.objects.count(),
    "governance_auditevent": AuditEvent.objects.count(),
    "annotation_item": Item.objects.count(),
    "annotation_annotation": Annotation.objects.count(),
}))
"""


@pytest.fixture
def database_before_core():
    settings = connection.settings_dict
    name = f"{settings['NAME']}_before_core"
    server = {
        "host": settings["HOST"] or "127.0.0.1",
        "port": settings["PORT"] or 5432,
        "user": settings["USER"],
        "autocommit": True,
    }
    with psycopg.connect(dbname="postgres", **server) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(dbname=name, **server) as restore:
        restore.execute(BEFORE_CORE.read_text())
    url = f"postgres://{server['user']}@{server['host']}:{server['port']}/{name}"
    yield url, {**server, "dbname": name}
    with psycopg.connect(dbname="postgres", **server) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _manage(url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": url}
    return subprocess.run(  # noqa: S603 - fixed argv
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _counts(conninfo: dict) -> dict[str, int]:
    with psycopg.connect(**conninfo) as db:
        return {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}  # noqa: S608


def test_a_database_from_before_core_upgrades_in_place(database_before_core):
    url, conninfo = database_before_core
    before = _counts(conninfo)
    assert before["annotation_annotation"] > 0
    assert before["governance_auditevent"] > 0

    migrated = _manage(url, "migrate", "--noinput")

    assert migrated.returncode == 0, migrated.stderr
    applied = [line.split()[1] for line in migrated.stdout.splitlines() if "Applying" in line]
    # The foundation's first migrations are the ones portal applied: nothing is recreated.
    assert not [name for name in applied if name.startswith(("core.0001", "core.0002"))]
    moves = [
        "core.0003_audit_log_moves_here...",
        "governance.0006_audit_log_moves_to_core...",
        "core.0004_content_types_follow_the_models...",
    ]
    assert [name for name in applied if name in moves] == moves
    assert _counts(conninfo) == before
    orm = subprocess.run(  # noqa: S603 - fixed argv
        [sys.executable, "-c", ORM_COUNTS],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert orm.returncode == 0, orm.stderr
    assert json.loads(orm.stdout) == {
        k: v for k, v in before.items() if k in json.loads(orm.stdout)
    }
    verified = _manage(url, "verify_audit_log")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"audit log verified: {before['governance_auditevent']} events" in verified.stdout
    with psycopg.connect(**conninfo) as db:
        labels = dict(
            db.execute(
                "SELECT model, app_label FROM django_content_type WHERE model IN "
                "('user', 'project', 'membership', 'apikey', 'auditevent')"
            ).fetchall()
        )
    assert labels == dict.fromkeys(
        ["user", "project", "membership", "apikey", "auditevent"], "core"
    )
