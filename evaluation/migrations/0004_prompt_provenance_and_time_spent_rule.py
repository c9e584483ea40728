"""Prompt sets carry the licence and synthetic flag of their prompts (taken from the
snapshot's datasets for sets made from a snapshot, here too for existing ones), which
the dataset of exported judgments inherits. Judgments record how their time spent was
decided and whether it was too fast, by the annotation queue's rule."""

from django.db import migrations, models


def provenance_from_snapshots(apps, schema_editor):
    PromptSet = apps.get_model("evaluation", "PromptSet")
    for prompt_set in PromptSet.objects.filter(snapshot__isnull=False).select_related("snapshot"):
        stats = prompt_set.snapshot.stats or {}
        licenses = sorted({d["license"] for d in stats.get("datasets", []) if d.get("license")})
        expression = " AND ".join(licenses)
        prompt_set.license = expression if expression and len(expression) <= 100 else "NOASSERTION"
        prompt_set.synthetic = bool((stats.get("synthetic") or {}).get("test"))
        prompt_set.save(update_fields=["license", "synthetic"])


class Migration(migrations.Migration):
    dependencies = [
        ("evaluation", "0003_c2_outputs_encrypted"),
    ]

    operations = [
        migrations.AddField(
            model_name="judgment",
            name="seconds_source",
            field=models.CharField(blank=True, db_default="", default="", max_length=10),
        ),
        migrations.AddField(
            model_name="judgment",
            name="too_fast",
            field=models.BooleanField(db_default=False, default=False),
        ),
        migrations.AddField(
            model_name="promptset",
            name="license",
            field=models.CharField(
                default="NOASSERTION", help_text='An SPDX id, or "proprietary".', max_length=100
            ),
        ),
        migrations.AddField(
            model_name="promptset",
            name="synthetic",
            field=models.BooleanField(
                default=False, help_text="The prompts were written by a model."
            ),
        ),
        migrations.RunPython(provenance_from_snapshots, migrations.RunPython.noop),
    ]
