"""Content types (and so permissions and admin log entries) follow the models that moved
into core (issue 19), instead of core getting new ones beside stale rows."""

from django.db import migrations

MOVED = {
    "portal": ["user", "project", "membership", "sitesettings", "apikey"],
    "governance": ["auditevent", "auditchainhead", "auditcheckpoint"],
}


def relabel(apps, schema_editor, forward=True):
    ContentType = apps.get_model("contenttypes", "ContentType")
    for old_label, models in MOVED.items():
        source, target = (old_label, "core") if forward else ("core", old_label)
        for model in models:
            if ContentType.objects.filter(app_label=target, model=model).exists():
                continue
            ContentType.objects.filter(app_label=source, model=model).update(app_label=target)


def relabel_back(apps, schema_editor):
    relabel(apps, schema_editor, forward=False)


class Migration(migrations.Migration):
    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("core", "0003_audit_log_moves_here"),
        ("governance", "0006_audit_log_moves_to_core"),
    ]

    operations = [migrations.RunPython(relabel, relabel_back)]
