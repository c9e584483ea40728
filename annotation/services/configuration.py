from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max

from annotation.models import AnnotationSettings, Guideline, LabelSchema
from annotation.schemas import normalize_config
from core.models import Project, User
from core.services.audit import audit_record


def annotation_settings_get(*, project: Project) -> AnnotationSettings:
    row, _ = AnnotationSettings.objects.get_or_create(project=project)
    return row


SETTINGS_FIELDS = (
    "labels_per_item",
    "agreement_rule",
    "majority_min",
    "order",
    "random_seed",
    "lease_seconds",
    "gold_rate",
)


@transaction.atomic
def annotation_settings_update(
    *, project: Project, changed_by: User, **changes: Any
) -> AnnotationSettings:
    unknown = set(changes) - set(SETTINGS_FIELDS)
    if unknown:
        raise ValidationError({sorted(unknown)[0]: "is not an annotation setting"})
    annotation_settings_get(project=project)
    row = AnnotationSettings.objects.select_for_update().get(project=project)
    diff = {}
    for field, value in changes.items():
        if getattr(row, field) != value:
            diff[field] = {"from": getattr(row, field), "to": value}
            setattr(row, field, value)
    if row.majority_min > row.labels_per_item:
        raise ValidationError({"majority_min": "cannot exceed the labels per item (k)"})
    if not 1 <= row.labels_per_item <= 20:
        raise ValidationError({"labels_per_item": "is between 1 and 20"})
    if not 0 <= row.gold_rate <= 0.5:
        raise ValidationError({"gold_rate": "is between 0 and 0.5"})
    if row.lease_seconds < 30:
        raise ValidationError({"lease_seconds": "is at least 30 seconds"})
    row.full_clean()
    if diff:
        row.save()
        audit_record(
            actor=changed_by,
            action="annotation.settings.update",
            target=row,
            data=diff,
            project_id=project.pk,
        )
    return row


@transaction.atomic
def label_schema_publish(
    *, project: Project, task_type: str, config: dict[str, Any], published_by: User
) -> LabelSchema:
    """A new schema version; earlier annotations keep pointing at theirs."""
    normalized = normalize_config(task_type, config)
    # Lock the project row so two publishers cannot take the same version number.
    Project.objects.select_for_update().get(pk=project.pk)
    latest = LabelSchema.objects.filter(project=project).aggregate(v=Max("version"))["v"] or 0
    schema = LabelSchema.objects.create(
        project=project,
        version=latest + 1,
        task_type=task_type,
        config=normalized,
        created_by=published_by,
    )
    audit_record(
        actor=published_by,
        action="annotation.schema.publish",
        target=schema,
        data={"version": schema.version, "task_type": task_type, "config": normalized},
    )
    return schema


@transaction.atomic
def guideline_publish(
    *,
    project: Project,
    markdown: str,
    examples: list[dict[str, Any]] | None = None,
    published_by: User,
) -> Guideline:
    if not markdown.strip():
        raise ValidationError({"markdown": "a guideline needs text"})
    for i, example in enumerate(examples or []):
        if not isinstance(example, dict) or not str(example.get("title", "")).strip():
            raise ValidationError({f"examples[{i}]": "needs a title"})
    Project.objects.select_for_update().get(pk=project.pk)
    latest = Guideline.objects.filter(project=project).aggregate(v=Max("version"))["v"] or 0
    guideline = Guideline.objects.create(
        project=project,
        version=latest + 1,
        markdown=markdown,
        examples=examples or [],
        created_by=published_by,
    )
    audit_record(
        actor=published_by,
        action="annotation.guideline.publish",
        target=guideline,
        data={"version": guideline.version, "chars": len(markdown)},
    )
    return guideline
