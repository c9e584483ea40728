"""Answers record how their time spent was decided (portal.time_spent: the browser's
measure or the server's span) and whether it was under the reading time of what was
shown. Entity-matching schemas gain the `unsure` setting: schemas published before it
existed are stamped "category", the way their agreement figures have been computed, so
no published figure changes; new schemas default to "abstain"."""

from django.db import migrations, models


def stamp_unsure_as_category(apps, schema_editor):
    LabelSchema = apps.get_model("annotation", "LabelSchema")
    for schema in LabelSchema.objects.filter(task_type="entity_matching"):
        if "unsure" not in schema.config:
            schema.config = {**schema.config, "unsure": "category"}
            schema.save(update_fields=["config"])


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0005_c1_label_values_encrypted"),
    ]

    operations = [
        migrations.AddField(
            model_name="annotation",
            name="seconds_source",
            field=models.CharField(blank=True, db_default="", default="", max_length=10),
        ),
        migrations.AddField(
            model_name="annotation",
            name="too_fast",
            field=models.BooleanField(db_default=False, default=False),
        ),
        migrations.RunPython(stamp_unsure_as_category, migrations.RunPython.noop),
    ]
