"""Prompt sets, contestants and their generations."""

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from annotation import conversations
from annotation.conversations import ConversationError
from annotation.services.exports import export_lines
from core.jobs import runs_under_job_lock
from core.models import Project, User
from core.services.audit import audit_record
from core.services.jobs import job_claim, job_fail, job_finish, job_progress, jobs_requeue
from evaluation import tasks
from evaluation.identity import self_identification
from evaluation.models import Contestant, Generation, GenerationJob, Prompt, PromptSet

MAX_PROMPTS = 100_000
NO_ASSERTION = "NOASSERTION"  # SPDX: nobody stated a licence


def snapshot_provenance(snapshot: Any) -> tuple[str, bool]:
    """(licence, synthetic) of prompts taken from a snapshot's test split: the licences of
    its datasets as one SPDX expression (joined by AND: all of them apply), and synthetic
    when any test-split member is."""
    licenses = sorted({d["license"] for d in snapshot.stats.get("datasets", []) if d["license"]})
    expression = " AND ".join(licenses)
    if not expression or len(expression) > 100:
        expression = NO_ASSERTION  # too many to name here: the snapshot's datasheet lists them
    return expression, bool(snapshot.stats.get("synthetic", {}).get("test"))


def _prompt_rows(rows: Iterable[Mapping[str, Any]]) -> list[Prompt]:
    prompts = []
    for n, row in enumerate(rows):
        where = f"row {n + 1}"
        if not isinstance(row, Mapping):
            raise ValidationError(f"{where}: expected an object with a 'prompt' field")
        text = row.get("prompt")
        if conversations.is_conversation(text):
            # A dialogue keeps its turns: generation continues it, reviewers read it by turn.
            try:
                text = conversations.messages_checked(text)
            except ConversationError as error:
                raise ValidationError(f"{where}: {error}") from None
        elif not isinstance(text, str) or not text.strip():
            raise ValidationError(
                f"{where}: 'prompt' must be a non-empty string or a list of {{role, content}} turns"
            )
        for key in ("category", "reference"):
            if row.get(key) is not None and not isinstance(row.get(key), str):
                raise ValidationError(f"{where}: '{key}' must be a string")
        metadata = row.get("metadata") or {}
        if not isinstance(metadata, Mapping):
            raise ValidationError(f"{where}: 'metadata' must be an object")
        prompts.append(
            Prompt(
                position=n,
                text=text,
                category=(row.get("category") or "")[:100],
                reference=row.get("reference") or "",
                metadata=dict(metadata),
            )
        )
        if len(prompts) > MAX_PROMPTS:
            raise ValidationError(f"a prompt set holds at most {MAX_PROMPTS} prompts")
    if not prompts:
        raise ValidationError("the prompt set has no prompts")
    return prompts


@transaction.atomic
def prompt_set_create(
    *,
    actor: User,
    project: Project,
    name: str,
    rows: Iterable[Mapping[str, Any]],
    adversarial: bool = False,
    general: bool = False,
    snapshot: Any = None,
    license: str = NO_ASSERTION,
    synthetic: bool = False,
) -> PromptSet:
    """Rows: {"prompt", "category"?, "reference"?, "metadata"?}; errors name the row. A
    prompt is text or a conversation (a list of {role, content} turns ending with the
    user's). `license` and `synthetic` describe the prompts; a snapshot's set takes them
    from the snapshot's datasets instead."""
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": "A prompt set needs a name."})
    if PromptSet.objects.filter(project=project, name=name).exists():
        raise ValidationError({"name": f"A prompt set called {name!r} already exists."})
    if snapshot is not None:
        license, synthetic = snapshot_provenance(snapshot)
    license = (license or "").strip() or NO_ASSERTION
    if len(license) > 100:
        raise ValidationError({"license": "is longer than 100 characters"})
    prompts = _prompt_rows(rows)
    prompt_set = PromptSet.objects.create(
        project=project,
        name=name,
        source=PromptSet.Source.SNAPSHOT if snapshot else PromptSet.Source.UPLOAD,
        snapshot=snapshot,
        adversarial=adversarial,
        general=general,
        prompt_count=len(prompts),
        license=license,
        synthetic=bool(synthetic),
        created_by=actor,
    )
    for p in prompts:
        p.prompt_set = prompt_set
    Prompt.objects.bulk_create(prompts, batch_size=2000)
    audit_record(
        actor=actor,
        action="evaluation.prompt_set.create",
        target=prompt_set,
        data={
            "name": name,
            "prompts": len(prompts),
            "adversarial": adversarial,
            "license": license,
            "synthetic": bool(synthetic),
        },
        project_id=project.pk,
    )
    return prompt_set


def prompt_set_create_from_snapshot(
    *, actor: User, snapshot: Any, name: str, adversarial: bool = False
) -> PromptSet:
    """The snapshot's test split as prompts, its gold completions as references.

    A snapshot that cannot give prompts (its task type has none, an item lacks its prompt
    field, the test split is empty) is refused with the error under `snapshot`."""
    rows = []
    try:
        for line in export_lines(snapshot=snapshot, fmt="prompt_completion", split="test"):
            record = json.loads(line)
            meta = record.get("metadata") or {}
            completion = record.get("completion") or ""
            if isinstance(completion, list):  # a conversational export: the assistant's turn
                completion = "".join(turn["content"] for turn in completion)
            rows.append(
                {
                    "prompt": record["prompt"],
                    "reference": completion,
                    "category": str(meta.get("category") or ""),
                    "metadata": meta,
                }
            )
    except ValidationError as error:
        # Keep the item an export error names ("item 12: payload has no 'text' field").
        detail = error.messages
        if hasattr(error, "error_dict"):
            detail = [
                f"{key}: {message}" if key.startswith("item") else message
                for key, messages in error.message_dict.items()
                for message in messages
            ]
        raise ValidationError({"snapshot": detail}) from None
    if not rows:
        raise ValidationError({"snapshot": f"{snapshot} has no items in its test split."})
    return prompt_set_create(
        actor=actor,
        project=snapshot.project,
        name=name,
        rows=rows,
        adversarial=adversarial,
        snapshot=snapshot,
    )


@transaction.atomic
def contestant_create(
    *,
    actor: User,
    project: Project,
    label: str,
    model_version: Any = None,
    base_model: Any = None,
    prompt_template: str = "",
) -> Contestant:
    """A model version, a base model (with an optional prompt template), or neither (outputs
    to be imported). The training rows must belong to this project (or be global). A model
    version competes under its registry name, so results, gates and the dossier name it as
    the registry does: `label` may be left empty for one, and may not differ."""
    label = (label or "").strip()
    if model_version is not None and model_version.project_id != project.pk:
        raise ValidationError({"model_version": "That model version belongs to another project."})
    if model_version is not None:
        if label and label != model_version.name:
            raise ValidationError(
                {
                    "label": f"A model version competes under its registry name "
                    f"{model_version.name!r}; leave the label empty or use that name."
                }
            )
        label = model_version.name
    if not label:
        raise ValidationError({"label": "A contestant needs a label."})
    if base_model is not None and base_model.project_id not in (None, project.pk):
        raise ValidationError({"base_model": "That base model belongs to another project."})
    if prompt_template and "{prompt}" not in prompt_template:
        raise ValidationError({"prompt_template": "The template must contain {prompt}."})
    if Contestant.objects.filter(project=project, label=label).exists():
        raise ValidationError({"label": f"A contestant called {label!r} already exists."})
    contestant = Contestant.objects.create(
        project=project,
        label=label,
        model_version=model_version,
        base_model=base_model,
        prompt_template=prompt_template,
        created_by=actor,
    )
    audit_record(
        actor=actor,
        action="evaluation.contestant.create",
        target=contestant,
        data={"label": label, "model_version": getattr(model_version, "pk", None)},
        project_id=project.pk,
    )
    return contestant


@transaction.atomic
def generations_import(
    *, actor: User, contestant: Contestant, prompt_set: PromptSet, outputs: list[str]
) -> GenerationJob:
    """Outputs produced elsewhere, one per prompt in position order."""
    if contestant.project_id != prompt_set.project_id:
        raise ValidationError("The contestant and the prompt set belong to different projects.")
    prompts = list(prompt_set.prompts.order_by("position"))
    if len(outputs) != len(prompts):
        raise ValidationError(
            f"outputs: expected {len(prompts)} (one per prompt), got {len(outputs)}"
        )
    now = timezone.now()
    job = GenerationJob.objects.create(
        project=prompt_set.project,
        prompt_set=prompt_set,
        contestant=contestant,
        kind=GenerationJob.Kind.IMPORT,
        status=GenerationJob.Status.SUCCEEDED,
        done=len(prompts),
        total=len(prompts),
        created_by=actor,
        started_at=now,
        finished_at=now,
    )
    names = contestant_model_names(contestant)
    Generation.objects.bulk_create(
        [
            Generation(
                job=job,
                prompt=p,
                output=str(o),
                self_identification=self_identification(str(o), prompt=p.text, names=names),
            )
            for p, o in zip(prompts, outputs, strict=True)
        ]
    )
    audit_record(
        actor=actor,
        action="evaluation.generations.import",
        target=job,
        data={"contestant": contestant.pk, "prompt_set": prompt_set.pk, "rows": len(prompts)},
        project_id=prompt_set.project_id,
    )
    return job


@transaction.atomic
def generation_job_start(
    *,
    actor: User,
    contestant: Contestant,
    prompt_set: PromptSet,
    max_new_tokens: int = 128,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    batch_size: int = 8,
) -> GenerationJob:
    if contestant.project_id != prompt_set.project_id:
        raise ValidationError("The contestant and the prompt set belong to different projects.")
    if contestant.base_model_id is None and contestant.model_version_id is None:
        raise ValidationError(
            {"contestant": "This contestant has no model to run; import its outputs instead."}
        )
    if not 1 <= max_new_tokens <= 4096:
        raise ValidationError({"max_new_tokens": "must be between 1 and 4096"})
    if temperature < 0 or not 0 < top_p <= 1:
        raise ValidationError({"decoding": "temperature must be ≥ 0 and top_p in (0, 1]"})
    job = GenerationJob.objects.create(
        project=prompt_set.project,
        prompt_set=prompt_set,
        contestant=contestant,
        decoding={"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p},
        seed=seed,
        batch_size=max(1, batch_size),
        total=prompt_set.prompt_count,
        created_by=actor,
    )
    audit_record(
        actor=actor,
        action="evaluation.generation.start",
        target=job,
        data={
            "contestant": contestant.pk,
            "prompt_set": prompt_set.pk,
            **job.decoding,
            "seed": seed,
        },
        project_id=prompt_set.project_id,
    )
    transaction.on_commit(lambda: tasks.generation_run_task.delay(job.pk))
    return job


@transaction.atomic
def generation_jobs_start(
    *,
    actor: User,
    contestants: Iterable[Contestant],
    prompt_set: PromptSet,
    **decoding: Any,
) -> list[GenerationJob]:
    """One job per contestant, all or none: a contestant that cannot run refuses the lot,
    and nothing is enqueued before the whole batch commits."""
    contestants = list(contestants)
    if not contestants:
        raise ValidationError({"contestants": "Choose at least one contestant."})
    jobs = []
    for contestant in contestants:
        try:
            jobs.append(
                generation_job_start(
                    actor=actor, contestant=contestant, prompt_set=prompt_set, **decoding
                )
            )
        except ValidationError as error:
            if hasattr(error, "error_dict") and "contestant" in error.error_dict:
                raise ValidationError(
                    {"contestants": f"{contestant.label}: {' '.join(error.messages)}"}
                ) from None
            raise
    return jobs


@runs_under_job_lock(GenerationJob, "job_id")
def generation_job_run(*, job_id: int) -> None:
    """Runs on a GPU worker; duplicate deliveries exit at the claim."""
    if not job_claim(GenerationJob, pk=job_id):
        return
    job = GenerationJob.objects.select_related(
        "contestant__model_version__base_model", "contestant__base_model"
    ).get(pk=job_id)
    try:
        # The one function-level import: inference loads torch, which web processes must not.
        from training.services import inference  # noqa: PLC0415

        base_model, model_version = _inference_targets(job.contestant)
        names = contestant_model_names(job.contestant)
        # A requeued job (its worker was stopped) carries on after the prompts it answered.
        answered = set(Generation.objects.filter(job=job).values_list("prompt_id", flat=True))
        prompts = [p for p in job.prompt_set.prompts.order_by("position") if p.pk not in answered]
        done = len(answered)
        for start in range(0, len(prompts), job.batch_size):
            batch = prompts[start : start + job.batch_size]
            completions = inference.generate_completions(
                base_model=base_model,
                model_version=model_version,
                prompts=[p.text for p in batch],
                seed=job.seed,
                prompt_template=job.contestant.prompt_template or None,
                **job.decoding,
            )
            # Flagged here, while the worker holds the plain text: outputs are encrypted
            # at rest, so nothing can search them later in SQL.
            Generation.objects.bulk_create(
                [
                    Generation(
                        job=job,
                        prompt=p,
                        output=c.text,
                        truncated=c.truncated,
                        self_identification=self_identification(c.text, prompt=p.text, names=names),
                    )
                    for p, c in zip(batch, completions, strict=True)
                ],
                ignore_conflicts=True,
            )
            done += len(batch)
            job_progress(GenerationJob, pk=job_id, done=done)
    except Exception as error:  # the job row must say why it stopped, whatever broke
        job_fail(GenerationJob, pk=job_id, error=str(error)[:2000])
        raise
    job_finish(GenerationJob, pk=job_id)


def _inference_targets(contestant: Contestant) -> tuple[Any, Any]:
    model_version = contestant.model_version
    base_model = contestant.base_model or (model_version.base_model if model_version else None)
    return base_model, model_version


def contestant_model_names(contestant: Contestant) -> list[str]:
    """The registry names behind a contestant (its version, that version's base, its base
    model and where that came from), which its answers must not mention."""
    version, base = contestant.model_version, contestant.base_model
    names = []
    for row in (version, getattr(version, "base_model", None), base):
        if row is not None:
            names.append(row.name)
    for row in (getattr(version, "base_model", None), base):
        if row is not None and row.source == "hub":
            names.append(row.path)
    return names


@dataclass(frozen=True)
class GeneratedOutput:
    text: str
    truncated: bool
    self_identification: str


def _latest_job(contestant: Contestant, prompt_set: PromptSet) -> GenerationJob | None:
    return (
        GenerationJob.objects.filter(
            contestant=contestant, prompt_set=prompt_set, status=GenerationJob.Status.SUCCEEDED
        )
        .order_by("-finished_at", "-pk")
        .first()
    )


def generation_outputs(*, contestant: Contestant, prompt_set: PromptSet) -> dict[int, str]:
    """prompt id → output from the contestant's latest succeeded job on this set."""
    job = _latest_job(contestant, prompt_set)
    if job is None:
        return {}
    return dict(job.generations.values_list("prompt_id", "output"))


def generation_records(
    *, contestant: Contestant, prompt_set: PromptSet
) -> dict[int, GeneratedOutput]:
    """As generation_outputs, with each output's truncation and self-identification flags."""
    job = _latest_job(contestant, prompt_set)
    if job is None:
        return {}
    return {
        prompt_id: GeneratedOutput(text, truncated, reason)
        for prompt_id, text, truncated, reason in job.generations.values_list(
            "prompt_id", "output", "truncated", "self_identification"
        )
    }


@transaction.atomic
def work_requeue_abandoned(*, actor: User | None, project: Any) -> int:
    """Generation jobs and metric runs left queued or running when the workers of an
    embedded portal were stopped (their messages went with them): back in the queue, sent
    again. Call it only while no worker runs, as `seed_demo` does before serving. A
    generation job carries on after the prompts it had answered. Returns how many."""
    from evaluation.models import MetricRun  # noqa: PLC0415 - offline imports this module

    generations = jobs_requeue(GenerationJob.objects.filter(project=project))
    runs = jobs_requeue(MetricRun.objects.filter(project=project))
    for job in generations:
        transaction.on_commit(partial(tasks.generation_run_task.delay, job.pk))
    for run in runs:
        transaction.on_commit(partial(tasks.metric_run_task.delay, run.pk))
    if generations or runs:
        audit_record(
            actor=actor,
            action="evaluation.work.requeue",
            target=project,
            data={
                "generation_jobs": [j.pk for j in generations],
                "metric_runs": [r.pk for r in runs],
            },
            project_id=project.pk,
        )
    return len(generations) + len(runs)
