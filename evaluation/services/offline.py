"""Offline metric runs on a contestant's outputs and a prompt set's references, with
fairness slices."""

from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.db import transaction

from core.jobs import runs_under_job_lock
from core.models import User
from core.services.audit import audit_record
from core.services.jobs import job_claim, job_fail, job_finish
from evaluation import metrics as M
from evaluation import tasks
from evaluation.models import Contestant, MetricRun, Prompt, PromptSet
from evaluation.services.prompts import generation_outputs


@transaction.atomic
def metric_run_start(
    *,
    actor: User,
    contestant: Contestant,
    prompt_set: PromptSet,
    kind: str = MetricRun.Kind.TEXT,
    slice_field: str = "",
    gap_threshold: float = 0.05,
) -> MetricRun:
    if contestant.project_id != prompt_set.project_id:
        raise ValidationError("The contestant and the prompt set belong to different projects.")
    if kind not in MetricRun.Kind.values:
        raise ValidationError({"kind": f"must be one of {', '.join(MetricRun.Kind.values)}"})
    # References are encrypted at rest: the database cannot tell an empty one apart.
    if not any(prompt_set.prompts.values_list("reference", flat=True)):
        raise ValidationError({"prompt_set": f"{prompt_set.name!r} has no reference answers."})
    if not 0 <= gap_threshold <= 1:
        raise ValidationError({"gap_threshold": "must be between 0 and 1"})
    run = MetricRun.objects.create(
        project=prompt_set.project,
        contestant=contestant,
        prompt_set=prompt_set,
        kind=kind,
        slice_field=slice_field.strip(),
        gap_threshold=gap_threshold,
        created_by=actor,
    )
    audit_record(
        actor=actor,
        action="evaluation.metric_run.start",
        target=run,
        data={"contestant": contestant.pk, "prompt_set": prompt_set.pk, "kind": kind},
        project_id=prompt_set.project_id,
    )
    transaction.on_commit(lambda: tasks.metric_run_task.delay(run.pk))
    return run


@transaction.atomic
def metric_runs_start(
    *,
    actor: User,
    contestants: Iterable[Contestant],
    prompt_set: PromptSet,
    slice_field: str = "",
) -> list[MetricRun]:
    """One run per contestant, all or none; nothing is enqueued before the batch commits."""
    return [
        metric_run_start(
            actor=actor, contestant=contestant, prompt_set=prompt_set, slice_field=slice_field
        )
        for contestant in contestants
    ]


def _slice_value(prompt: Prompt, field: str) -> str:
    if field == "category":
        return prompt.category or "(none)"
    value = prompt.metadata.get(field)
    return "(none)" if value in (None, "") else str(value)


@runs_under_job_lock(MetricRun, "run_id")
def metric_run_execute(*, run_id: int) -> None:
    """Runs on a worker; duplicate deliveries exit at the claim."""
    if not job_claim(MetricRun, pk=run_id):
        return
    run = MetricRun.objects.select_related("contestant", "prompt_set").get(pk=run_id)
    try:
        results, examples, slices = _compute(run)
    except Exception as error:  # the row must say why it stopped, whatever broke
        job_fail(MetricRun, pk=run_id, error=str(error)[:2000])
        raise
    job_finish(MetricRun, pk=run_id, results=results, examples=examples, slices=slices)


def _compute(run: MetricRun) -> tuple[dict, list, dict]:
    outputs = generation_outputs(contestant=run.contestant, prompt_set=run.prompt_set)
    if not outputs:
        raise ValueError(
            f"{run.contestant.label} has no generations on {run.prompt_set.name}: "
            "run a generation job first"
        )
    prompts = [
        p for p in run.prompt_set.prompts.order_by("position") if p.reference and p.pk in outputs
    ]
    preds = [outputs[p.pk] for p in prompts]
    refs = [p.reference for p in prompts]
    examples = []
    if run.kind == MetricRun.Kind.CLASSIFICATION:
        report = M.classification_report([x.strip() for x in preds], [x.strip() for x in refs])
        results = {"scored": len(prompts), **report.as_dict()}
        scores = [float(a.strip() == b.strip()) for a, b in zip(preds, refs, strict=True)]
        for p, pred, score in zip(prompts, preds, scores, strict=True):
            examples.append({"prompt": p.pk, "output": pred, "correct": score})
    else:
        results = {"scored": len(prompts), **M.text_metrics(preds, refs)}
        scores = []
        for p, pred, ref in zip(prompts, preds, refs, strict=True):
            em, f1 = M.exact_match(pred, ref), M.token_f1(pred, ref)
            scores.append(f1)
            examples.append({"prompt": p.pk, "output": pred, "exact_match": em, "token_f1": f1})
    slices = {}
    if run.slice_field:
        slice_report = M.fairness_slices(
            field_name=run.slice_field,
            groups=[_slice_value(p, run.slice_field) for p in prompts],
            scores=scores,
            gap_threshold=run.gap_threshold,
        )
        slices = slice_report.as_dict()
    return results, examples, slices
