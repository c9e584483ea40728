"""The automatic evaluation of a compressed child (merge, quantize, distill) against its
parent: the child answers every prompt set its parent was evaluated on, both get offline
metrics, and a compression gate decides whether the quality dropped by more than the
engineer's tolerance (a paired bootstrap over per-prompt scores, as regression gates do).

Training announces each new version through training.hooks (registered in
evaluation.apps); the work runs in a Celery task after the version's transaction commits.
The result goes back onto the child through training's service."""

import logging
import time
from typing import Any

from django.db import transaction

from core.models import JOB_FINAL
from evaluation import metrics as M
from evaluation import tasks
from evaluation.models import Contestant, GenerationJob, MetricRun, PromptSet
from evaluation.services.gates import metric_rule
from evaluation.services.offline import metric_run_execute, metric_run_start
from evaluation.services.prompts import contestant_create, generation_job_run, generation_job_start
from training.models import COMPRESSION_KINDS, ModelVersion
from training.services.compression import (
    DEFAULT_ALPHA,
    DEFAULT_TOLERANCE,
    model_version_compression_gate_record,
)

logger = logging.getLogger(__name__)

# How long the evaluation waits for a generation or metric run another worker claimed.
WAIT_S = 1800


def compression_evaluation_schedule(version: ModelVersion) -> None:
    """training.hooks callback: a version made by a compression job is evaluated against
    its parent once its transaction commits. Other versions are left alone."""
    job = version.job
    if job is None or job.kind not in COMPRESSION_KINDS or version.parent_id is None:
        return
    transaction.on_commit(lambda: tasks.compression_evaluate_task.delay(version.pk))


def _wait_final(model: Any, pk: int) -> Any:
    """A run this task started may have been claimed by the worker its own task reached
    first: wait for it to end either way."""
    deadline = time.monotonic() + WAIT_S
    while True:
        row = model.objects.get(pk=pk)
        if row.status in JOB_FINAL or time.monotonic() > deadline:
            return row
        time.sleep(0.5)


def _latest_succeeded(model: Any, contestant: Contestant, prompt_set: PromptSet) -> Any:
    return (
        model.objects.filter(
            contestant=contestant, prompt_set=prompt_set, status=model.Status.SUCCEEDED
        )
        .order_by("-finished_at", "-pk")
        .first()
    )


def _parent_prompt_sets(parent: ModelVersion) -> list[tuple[Contestant, PromptSet, dict]]:
    """(parent's contestant, prompt set, its decoding) for every set with references that
    the parent has answered."""
    found: dict[int, tuple[Contestant, PromptSet, dict]] = {}
    jobs = GenerationJob.objects.filter(
        contestant__model_version=parent, status=GenerationJob.Status.SUCCEEDED
    ).select_related("contestant", "prompt_set")
    for job in jobs.order_by("-finished_at", "-pk"):
        if job.prompt_set_id in found:
            continue
        if any(job.prompt_set.prompts.values_list("reference", flat=True)):
            found[job.prompt_set_id] = (job.contestant, job.prompt_set, job.decoding)
    return list(found.values())


def _metric_run(actor: Any, contestant: Contestant, prompt_set: PromptSet) -> MetricRun:
    run = _latest_succeeded(MetricRun, contestant, prompt_set)
    if run is None:
        run = metric_run_start(actor=actor, contestant=contestant, prompt_set=prompt_set)
        metric_run_execute(run_id=run.pk)
        run = _wait_final(MetricRun, run.pk)
    if run.status != MetricRun.Status.SUCCEEDED:
        raise RuntimeError(f"the metric run of {contestant.label} failed: {run.error}")
    return run


def _child_contestant(child: ModelVersion, actor: Any) -> Contestant:
    existing = Contestant.objects.filter(project=child.project, model_version=child).first()
    return existing or contestant_create(
        actor=actor, project=child.project, label="", model_version=child
    )


def compression_gate(
    *, parent_scores: list[float], child_scores: list[float], tolerance: float, alpha: float
) -> dict[str, Any]:
    """The gate's decision on paired per-prompt scores: the child passes unless it is worse
    than the parent by more than `tolerance` at significance `alpha` (the regression gate's
    rule, evaluation.services.gates.metric_rule)."""
    result = M.paired_bootstrap(
        metric="mean", candidate=child_scores, baseline=parent_scores, tolerance=tolerance
    )
    passed = result.p_value >= alpha
    return {
        "status": "passed" if passed else "failed",
        "passed": passed,
        "parent": result.baseline,
        "child": result.candidate,
        "drop": result.baseline - result.candidate,
        # The 95% interval of child − parent; the drop's is its negation.
        "interval": [result.lower, result.upper],
        "p_value": result.p_value,
        "rounds": result.rounds,
        "tolerance": tolerance,
        "alpha": alpha,
        "prompts": len(child_scores),
        "rule": metric_rule(tolerance=tolerance, alpha=alpha),
    }


def compression_evaluate(*, version_id: int) -> dict[str, Any]:
    """Run on a worker: generate the child's answers on its parent's evaluated prompt sets,
    score both, decide the gate and record it on the child. Returns the gate record."""
    child = ModelVersion.objects.select_related("parent", "job", "project").get(pk=version_id)
    job, parent = child.job, child.parent
    if job is None or parent is None:
        return {}
    tolerance = float(job.config.get("gate_tolerance", DEFAULT_TOLERANCE))
    alpha = float(job.config.get("gate_alpha", DEFAULT_ALPHA))
    metric = job.config.get("gate_metric", "token_f1")
    actor = job.created_by
    gate: dict[str, Any]
    try:
        sets = _parent_prompt_sets(parent)
        if not sets:
            gate = {
                "status": "not_evaluated",
                "passed": None,
                "tolerance": tolerance,
                "reason": f"{parent.name} has answered no prompt set with reference answers; "
                "evaluate it on one and the child can be compared.",
            }
            return _record(child, gate)
        contestant = _child_contestant(child, actor)
        parent_scores: list[float] = []
        child_scores: list[float] = []
        per_set = []
        for parent_contestant, prompt_set, decoding in sets:
            generation = generation_job_start(
                actor=actor, contestant=contestant, prompt_set=prompt_set, **decoding
            )
            generation_job_run(job_id=generation.pk)
            generation = _wait_final(GenerationJob, generation.pk)
            if generation.status != GenerationJob.Status.SUCCEEDED:
                raise RuntimeError(f"generating on {prompt_set.name} failed: {generation.error}")
            parent_run = _metric_run(actor, parent_contestant, prompt_set)
            child_run = _metric_run(actor, contestant, prompt_set)
            parent_by_prompt = {e["prompt"]: float(e[metric]) for e in parent_run.examples}
            shared = [e for e in child_run.examples if e["prompt"] in parent_by_prompt]
            set_parent = [parent_by_prompt[e["prompt"]] for e in shared]
            set_child = [float(e[metric]) for e in shared]
            parent_scores += set_parent
            child_scores += set_child
            per_set.append(
                {
                    "prompt_set": prompt_set.pk,
                    "name": prompt_set.name,
                    "prompts": len(shared),
                    "parent": sum(set_parent) / max(len(shared), 1),
                    "child": sum(set_child) / max(len(shared), 1),
                    "parent_metrics": parent_run.results,
                    "child_metrics": child_run.results,
                    "parent_run": parent_run.pk,
                    "child_run": child_run.pk,
                }
            )
        if not child_scores:
            raise RuntimeError("the parent's and the child's runs share no prompts")
        gate = {
            **compression_gate(
                parent_scores=parent_scores,
                child_scores=child_scores,
                tolerance=tolerance,
                alpha=alpha,
            ),
            "metric": metric,
            "prompt_sets": per_set,
        }
    except Exception as error:  # the child must say why it has no gate, whatever broke
        logger.exception("compression evaluation of version %s failed", version_id)
        gate = {
            "status": "error",
            "passed": None,
            "tolerance": tolerance,
            "reason": f"{type(error).__name__}: {error}"[:2000],
        }
    return _record(child, gate)


def _record(child: ModelVersion, gate: dict[str, Any]) -> dict[str, Any]:
    model_version_compression_gate_record(version_id=child.pk, gate=gate)
    return gate
