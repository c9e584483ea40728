"""Entity-matching schemas gain the `unsure` setting: schemas published before it
existed are stamped "category", the way their agreement figures have been computed, so
no published figure changes; new schemas default to "abstain"."""

from django.db import migrations


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
        migrations.RunPython(stamp_unsure_as_category, migrations.RunPython.noop),
    ]
