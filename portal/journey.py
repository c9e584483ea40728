"""Where a project stands, stage by stage: the card at the top of its page.

A read-only selector over every app's models; each stage names what was made last, how far
it got and the page to look at (links only for roles that may open that page).
"""

from dataclasses import dataclass

from django.db.models import Count, Sum
from django.urls import reverse

from core.models import Project, RoleSet


@dataclass(frozen=True)
class Stage:
    key: str
    title: str
    state: str  # "done", "active", "waiting", "failed", "todo"
    summary: str
    url: str = ""
    percent: int | None = None  # progress of the running step, when there is one


def project_journey(*, project: Project, roles: set[str]) -> list[Stage]:
    from annotation.models import Dataset, Item, QualityCheck, Snapshot
    from evaluation.models import Campaign, GateRun, GenerationJob, Judgment
    from governance.models import Dossier
    from training.models import ModelVersion, TrainingJob

    if not roles & set(RoleSet.OVERSIGHT):
        # Job, model and campaign names must never reach a blind reviewer; annotators and
        # adjudicators have their own queues. The card is for those who run the project.
        return []

    def link(name: str, *args) -> str:
        return reverse(name, args=[project.pk, *args])

    stages: list[Stage] = []
    datasets = Dataset.objects.filter(project=project).count()
    states = dict(
        Item.objects.filter(project=project)
        .values_list("state")
        .annotate(n=Count("id"))
        .values_list("state", "n")
    )
    items = sum(states.values())
    stages.append(
        Stage(
            "data",
            "Data",
            "done" if items else "todo",
            f"{datasets} dataset(s), {items} item(s)" if items else "No dataset uploaded yet.",
            link("annotation:datasets"),
        )
    )
    resolved, disputed = states.get("resolved", 0), states.get("disputed", 0)
    stages.append(
        Stage(
            "annotation",
            "Annotation and adjudication",
            "done" if items and resolved == items else ("active" if items else "todo"),
            f"{resolved} gold, {disputed} waiting for adjudication, "
            f"{states.get('open', 0)} being labelled",
            link("annotation:dashboard"),
            round(100 * resolved / items) if items else None,
        )
    )
    snapshot = Snapshot.objects.filter(project=project).order_by("-created_at").first()
    if snapshot is None:
        stages.append(Stage("snapshot", "Snapshot", "todo", "No snapshot yet."))
    else:
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
        stages.append(
            Stage(
                "snapshot",
                "Snapshot",
                "done",
                f"{snapshot} · {snapshot.member_count} items · {checked}",
                link("annotation:snapshot", snapshot.pk),
            )
        )
    job = TrainingJob.objects.filter(project=project).order_by("-created_at").first()
    if job is None:
        stages.append(Stage("training", "Training", "todo", "No training job yet."))
    else:
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
        stages.append(
            Stage(
                "training",
                "Training",
                state,
                summary,
                link("training:job", job.pk),
                round(100 * last / total) if job.is_active and total else None,
            )
        )
    campaign = Campaign.objects.filter(project=project).order_by("-created_at").first()
    generating = GenerationJob.objects.filter(
        project=project, status__in=("queued", "running")
    ).aggregate(done=Sum("done"), total=Sum("total"), jobs=Count("id"))
    if campaign is None and generating["jobs"]:
        done, total = generating["done"] or 0, generating["total"] or 0
        stages.append(
            Stage(
                "evaluation",
                "Blind evaluation",
                "active",
                f"generating answers to compare: {done} of {total}",
                link("evaluation:overview") + "#generations",
                round(100 * done / total) if total else None,
            )
        )
    elif campaign is None:
        stages.append(Stage("evaluation", "Blind evaluation", "todo", "No campaign yet."))
    else:
        judged = Judgment.objects.filter(
            campaign=campaign, submitted_at__isnull=False, is_attention=False
        ).count()
        stages.append(
            Stage(
                "evaluation",
                "Blind evaluation",
                "done" if judged else "active",
                f"{campaign.name}: {judged} judgment(s)",
                link("evaluation:results", campaign.pk),
            )
        )
    version = ModelVersion.objects.filter(project=project).order_by("-created_at").first()
    gate = (
        GateRun.objects.filter(model_version_id=version.pk).order_by("-created_at").first()
        if version
        else None
    )
    if gate is None:
        stages.append(Stage("gate", "Regression gate", "todo", "No gate run yet."))
    else:
        stages.append(
            Stage(
                "gate",
                "Regression gate",
                "done" if gate.passed else "failed",
                f"{gate.gate.name}: {'passed' if gate.passed else 'failed'}",
                link("evaluation:overview") + "#gates",
            )
        )
    if version is None:
        stages.append(Stage("approval", "Approval and dossier", "todo", "No model version yet."))
    else:
        dossier = Dossier.objects.filter(model_version=version).order_by("-created_at").first()
        approved = version.stage in ("canary", "production")
        summary = f"{version.name}: {version.get_stage_display().lower()}"
        if dossier is not None:
            summary += f" · dossier {dossier.get_status_display().lower()}"
        building = dossier is not None and dossier.status in ("queued", "running")
        stages.append(
            Stage(
                "approval",
                "Approval and dossier",
                "active" if building else ("done" if approved else "waiting"),
                summary,
                reverse("governance:version", args=[version.pk]),
                dossier.progress if building else None,
            )
        )
    return stages


def journey_is_moving(stages: list[Stage]) -> bool:
    """Something runs on a worker (training, generation, a dossier build): the card refreshes
    itself."""
    return any(
        s.state == "active"
        and (s.key in ("training", "approval") or (s.key == "evaluation" and s.percent is not None))
        for s in stages
    )
