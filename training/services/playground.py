"""The playground: one prompt tried on a few models side by side, each answered by the
generation task on a worker."""

import uuid
from collections.abc import Sequence
from functools import partial

from django.core.exceptions import ValidationError
from django.db import transaction

from core.models import Project, User
from core.services.audit import audit_record, content_hash
from training import tasks
from training.models import BaseModel, ModelVersion

PLAYGROUND_MAX_NEW_TOKENS = 1024


def _check_in_project(project: Project, base: BaseModel, version: ModelVersion | None) -> None:
    if base.project_id not in (None, project.pk):
        raise ValidationError("That base model belongs to another project.")
    if version is not None and version.project_id != project.pk:
        raise ValidationError("That model version belongs to another project.")


@transaction.atomic
def playground_generate(
    *,
    actor: User,
    project: Project,
    prompt: str,
    max_new_tokens: int,
    models: Sequence[tuple[BaseModel, ModelVersion | None]],
) -> list[str]:
    """Queue one generation of `prompt` per (base model, version or None), after commit.
    Returns their Celery task ids, drawn here so the caller can poll for the results (the
    tasks are sent only once the audit event is committed)."""
    prompt = prompt.strip()
    if not prompt:
        raise ValidationError("Write a prompt.")
    if not 1 <= max_new_tokens <= PLAYGROUND_MAX_NEW_TOKENS:
        raise ValidationError("Max new tokens: a whole number from 1 to 1024.")
    for base, version in models:
        _check_in_project(project, base, version)
    task_ids = [str(uuid.uuid4()) for _ in models]
    audit_record(
        actor=actor,
        action="training.playground.generate",
        project_id=project.pk,
        data={
            "models": [
                {"base_model": base.pk, "model_version": version.pk if version else None}
                for base, version in models
            ],
            "prompt_sha256": content_hash(prompt),
            "max_new_tokens": max_new_tokens,
            "tasks": task_ids,
        },
    )
    for task_id, (base, version) in zip(task_ids, models, strict=True):
        transaction.on_commit(
            partial(
                tasks.generate_task.apply_async,
                args=(base.pk, version.pk if version else None, [prompt], max_new_tokens),
                task_id=task_id,
            )
        )
    return task_ids
