"""Where a project stands, stage by stage: the card at the top of its page.

A read-only selector over every app's models; each stage names what was made last, how far
it got and the page to look at (links only for roles that may open that page).
"""

from dataclasses import dataclass

from django.db.models import Count, Sum
from django.urls import reverse

from annotation.models import Dataset, Item, QualityCheck, Snapshot
from core.models import Project, RoleSet
from evaluation.models import Campaign, GateRun, GenerationJob, Judgment
from governance.models import Dossier
from training.models import ModelVersion, TrainingJob


@dataclass(frozen=True)
class Stage:
    key: str
    title: str
    state: str  # "done", "active", "waiting", "failed", "todo"
    summary: str
    url: str = ""
    percent: int | None = None  # progress of the running step, when there is one


def project_journey(*, project: Project, roles: set[str]) -> list[Stage]:
    """The card's stages in order; empty for roles the card is not meant for."""
    if not roles & set(RoleSet.OVERSIGHT):
        # Job, model and campaign names must never reach a blind reviewer; annotators and
        # adjudicators have their own queues. The card is for those who run the project.
        return []
    stages = [
        *_data_and_annotation_stages(project),
        _snapshot_stage(project),
        _training_stage(project),
        _evaluation_stage(project),
    ]
    version = ModelVersion.objects.filter(project=project).order_by("-created_at").first()
    stages += [_gate_stage(project, version), _approval_stage(version)]
    return stages


def _link(project: Project, name: str, *args) -> str:
    return reverse(name, args=[project.pk, *args])


def _data_and_annotation_stages(project: Project) -> list[Stage]:
    """Data (datasets and items) and annotation (how many items are gold), from one count
    of items by state."""
    datasets = Dataset.objects.filter(project=project).count()
    states = dict(
        Item.objects.filter(project=project)
        .values_list("state")
        .annotate(n=Count("id"))
        .values_list("state", "n")
    )
    items = sum(states.values())
    data = Stage(
        "data",
        "Data",
        "done" if items else "todo",
        f"{datasets} dataset(s), {items} item(s)" if items else "No dataset uploaded yet.",
        _link(project, "annotation:datasets"),
    )
    resolved, disputed = states.get("resolved", 0), states.get("disputed", 0)
    annotation = Stage(
        "annotation",
        "Annotation and adjudication",
        "done" if items and resolved == items else ("active" if items else "todo"),
        f"{resolved} gold, {disputed} waiting for adjudication, "
        f"{states.get('open', 0)} being labelled",
        _link(project, "annotation:dashboard"),
        round(100 * resolved / items) if items else None,
    )
    return [data, annotation]


def _snapshot_stage(project: Project) -> Stage:
    """The newest snapshot and what its leakage check found."""
    snapshot = Snapshot.objects.filter(project=project).order_by("-created_at").first()
    if snapshot is None:
        return Stage("snapshot", "Snapshot", "todo", "No snapshot yet.")
    leakage = (
        QualityCheck.objects.filter(snapshot=snapshot, kind="leakage")
        .order_by("-created_at")
        .first()
    )
    checked = (
        f"leakage: {leakage.result.get('leaks', 0)} group(s)"
        if leakage and leakage.status == "succeeded"
        else "leakage not checked"
    )
    return Stage(
        "snapshot",
        "Snapshot",
        "done",
        f"{snapshot} · {snapshot.member_count} items · {checked}",
        _link(project, "annotation:snapshot", snapshot.pk),
    )


def _training_stage(project: Project) -> Stage:
    """The newest training job, with its step while it runs."""
    job = TrainingJob.objects.filter(project=project).order_by("-created_at").first()
    if job is None:
        return Stage("training", "Training", "todo", "No training job yet.")
    last = job.metrics.order_by("-step").values_list("step", flat=True).first() or 0
    total = job.preflight.get("steps") or job.config.get("max_steps") or 0
    state = {
        "succeeded": "done",
        "failed": "failed",
        "cancelled": "failed",
    }.get(job.status, "active")
    summary = f"{job.name}: {job.get_status_display().lower()}"
    if job.is_active and total:
        summary += f", step {last} of {total}"
    return Stage(
        "training",
        "Training",
        state,
        summary,
        _link(project, "training:job", job.pk),
        round(100 * last / total) if job.is_active and total else None,
    )


def _evaluation_stage(project: Project) -> Stage:
    """The newest campaign's judgments; before there is one, the generations running."""
    campaign = Campaign.objects.filter(project=project).order_by("-created_at").first()
    generating = GenerationJob.objects.filter(
        project=project, status__in=("queued", "running")
    ).aggregate(done=Sum("done"), total=Sum("total"), jobs=Count("id"))
    if campaign is None and generating["jobs"]:
        done, total = generating["done"] or 0, generating["total"] or 0
        return Stage(
            "evaluation",
            "Blind evaluation",
            "active",
            f"generating answers to compare: {done} of {total}",
            _link(project, "evaluation:overview") + "#generations",
            round(100 * done / total) if total else None,
        )
    if campaign is None:
        return Stage("evaluation", "Blind evaluation", "todo", "No campaign yet.")
    judged = Judgment.objects.filter(
        campaign=campaign, submitted_at__isnull=False, is_attention=False
    ).count()
    return Stage(
        "evaluation",
        "Blind evaluation",
        "done" if judged else "active",
        f"{campaign.name}: {judged} judgment(s)",
        _link(project, "evaluation:results", campaign.pk),
    )


def _gate_stage(project: Project, version: ModelVersion | None) -> Stage:
    """The newest version's latest regression gate run."""
    gate = (
        GateRun.objects.filter(model_version_id=version.pk).order_by("-created_at").first()
        if version
        else None
    )
    if gate is None:
        return Stage("gate", "Regression gate", "todo", "No gate run yet.")
    return Stage(
        "gate",
        "Regression gate",
        "done" if gate.passed else "failed",
        f"{gate.gate.name}: {'passed' if gate.passed else 'failed'}",
        _link(project, "evaluation:overview") + "#gates",
    )


def _approval_stage(version: ModelVersion | None) -> Stage:
    """The newest version's stage and its dossier, with the build's progress."""
    if version is None:
        return Stage("approval", "Approval and dossier", "todo", "No model version yet.")
    dossier = Dossier.objects.filter(model_version=version).order_by("-created_at").first()
    approved = version.stage in ("canary", "production")
    summary = f"{version.name}: {version.get_stage_display().lower()}"
    if dossier is not None:
        summary += f" · dossier {dossier.get_status_display().lower()}"
    building = dossier is not None and dossier.status in ("queued", "running")
    return Stage(
        "approval",
        "Approval and dossier",
        "active" if building else ("done" if approved else "waiting"),
        summary,
        reverse("governance:version", args=[version.pk]),
        dossier.progress if building else None,
    )


def journey_is_moving(stages: list[Stage]) -> bool:
    """Something runs on a worker (training, generation, a dossier build): the card refreshes
    itself."""
    return any(
        s.state == "active"
        and (s.key in ("training", "approval") or (s.key == "evaluation" and s.percent is not None))
        for s in stages
    )
