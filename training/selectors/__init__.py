"""Reads shared by the training pages, the API and the CLI. Callers pass a project they got
from `core.selectors.project_access_get`, so every query here is scoped to it."""

from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any

from django.db.models import Q, QuerySet
from django.http import Http404

from annotation.models import Dataset, Snapshot
from annotation.selectors import snapshot_sources
from core.models import Membership, Project, RoleSet, User
from training.models import (
    BaseModel,
    BaseModelRegistration,
    ModelVersion,
    TrainingCheckpoint,
    TrainingJob,
    TrainingLogLine,
    TrainingMetric,
)

CHART_SERIES = (
    ("loss", "train loss"),
    ("eval_loss", "eval loss"),
)
LOG_TAIL = 200


def base_model_list_for_project(*, project: Project) -> QuerySet[BaseModel]:
    return BaseModel.objects.filter(Q(project=project) | Q(project__isnull=True)).order_by(
        "name", "id"
    )


def base_model_get(*, project: Project, base_model_id: int | str) -> BaseModel:
    try:
        return base_model_list_for_project(project=project).get(pk=int(base_model_id))
    except (BaseModel.DoesNotExist, TypeError, ValueError):
        raise Http404("No such base model.") from None


def registration_list_for_project(*, project: Project) -> QuerySet[BaseModelRegistration]:
    return BaseModelRegistration.objects.filter(project=project).select_related("base_model")


def registration_get(*, project: Project, registration_id: int | str) -> BaseModelRegistration:
    try:
        return registration_list_for_project(project=project).get(pk=int(registration_id))
    except (BaseModelRegistration.DoesNotExist, TypeError, ValueError):
        raise Http404("No such registration.") from None


def job_list_for_project(*, project: Project) -> QuerySet[TrainingJob]:
    return TrainingJob.objects.filter(project=project).select_related("base_model", "created_by")


def job_get(*, project: Project, job_id: int | str) -> TrainingJob:
    try:
        return job_list_for_project(project=project).get(pk=int(job_id))
    except (TrainingJob.DoesNotExist, TypeError, ValueError):
        raise Http404("No such training job.") from None


def job_metrics(*, job: TrainingJob, after_id: int = 0) -> QuerySet[TrainingMetric]:
    return job.metrics.filter(pk__gt=after_id).order_by("step", "id")


def job_log_tail(*, job: TrainingJob, limit: int = LOG_TAIL) -> list[TrainingLogLine]:
    return list(reversed(job.log_lines.order_by("-id")[:limit]))


def job_log_lines(
    *, job: TrainingJob, after_id: int = 0, limit: int = 1000
) -> QuerySet[TrainingLogLine]:
    return job.log_lines.filter(pk__gt=after_id).order_by("id")[:limit]


def job_checkpoints(*, job: TrainingJob) -> QuerySet[TrainingCheckpoint]:
    return job.checkpoints.order_by("step")


def job_chart_series(*, job: TrainingJob) -> dict[str, list[tuple[float, float]]]:
    """(step, value) series for the live chart: training loss and evaluation loss (or the
    kind's own headline figures when a trainer logs no plain loss)."""
    series: dict[str, list[tuple[float, float]]] = {label: [] for _, label in CHART_SERIES}
    extra = {"rewards/accuracies": "reward accuracy", "reward": "mean reward"}
    for step, values in job.metrics.order_by("step", "id").values_list("step", "values"):
        for key, label in CHART_SERIES:
            if key in values:
                series[label].append((step, values[key]))
        for key, label in extra.items():
            if key in values:
                series.setdefault(label, []).append((step, values[key]))
    return series


def job_latest_values(*, job: TrainingJob) -> dict[str, Any]:
    """The last value of every metric, for the figures beside the chart."""
    latest: dict[str, Any] = {}
    for values in job.metrics.order_by("step", "id").values_list("values", flat=True):
        latest.update(values)
    return latest


ESTIMATE_LABELS = {
    "preflight": "Pre-flight (loading, tokenising, smoke run), as it took",
    "training": "Training steps",
    "checkpoints": "Checkpoint saves",
    "evaluation": "Evaluations during training",
    "final_save": "Final save",
    "sanity_check": "Sanity check (tuned vs frozen base)",
}


@dataclass(frozen=True)
class TrackingLink:
    """Where a tracker outside the portal keeps the job's run."""

    tracker: str
    url: str  # "" when no UI is known (an MLflow file store without MLFLOW_UI_URL)
    run_id: str


TRACKERS = {"mlflow": "MLflow", "wandb": "Weights & Biases"}


def job_tracking_links(*, job: TrainingJob) -> list[TrackingLink]:
    """The job's runs in MLflow and the trainer's trackers; only http(s) links are kept,
    whatever a tracker reported."""
    links = []
    for service, label in TRACKERS.items():
        entry = job.tracking.get(service)
        if not isinstance(entry, dict):
            continue
        url = str(entry.get("url") or "")
        if not url.startswith(("https://", "http://")):
            url = ""
        run_id = str(entry.get("run_id") or "")
        if url or run_id:
            links.append(TrackingLink(tracker=label, url=url, run_id=run_id))
    return links


def job_estimate(*, job: TrainingJob) -> list[tuple[str, float]]:
    """The pre-flight's estimate of each phase, labelled, in the order they run."""
    parts = (job.preflight or {}).get("estimate_seconds") or {}
    return [(ESTIMATE_LABELS.get(name, name), seconds) for name, seconds in parts.items()]


def model_version_list_for_project(*, project: Project) -> QuerySet[ModelVersion]:
    return ModelVersion.objects.filter(project=project).select_related("base_model", "job")


def model_version_get(*, project: Project, version_id: int | str) -> ModelVersion:
    try:
        return model_version_list_for_project(project=project).get(pk=int(version_id))
    except (ModelVersion.DoesNotExist, TypeError, ValueError):
        raise Http404("No such model version.") from None


def model_version_list_for_projects(
    *, project_ids: list[int], query: str = "", limit: int
) -> list[ModelVersion]:
    """The first `limit` versions of the given projects, by project name and newest first;
    `query` keeps those whose name or project's name contains it."""
    versions = ModelVersion.objects.filter(project_id__in=project_ids).select_related("project")
    if query:
        versions = versions.filter(Q(name__icontains=query) | Q(project__name__icontains=query))
    return list(versions.order_by("project__name", "-created_at", "-id")[:limit])


def model_version_list_live(*, project_id: int, limit: int) -> list[ModelVersion]:
    """The project's newest `limit` versions that are not archived."""
    return list(
        ModelVersion.objects.filter(project_id=project_id)
        .exclude(stage=ModelVersion.Stage.ARCHIVED)
        .select_related("project")
        .order_by("-created_at", "-id")[:limit]
    )


def model_version_get_in_projects(
    *, version_id: int, project_ids: list[int]
) -> ModelVersion | None:
    return (
        ModelVersion.objects.filter(pk=version_id, project_id__in=project_ids)
        .select_related("project", "base_model", "job")
        .first()
    )


def model_version_in_stage(*, project: Project, stage: str) -> ModelVersion | None:
    """The project's newest version in `stage` (production holds one at a time)."""
    return ModelVersion.objects.filter(project=project, stage=stage).order_by("-id").first()


@dataclass
class Lineage:
    """A version and everything it came from; `edges` are (from, to, relation) between node
    keys "kind:pk" (kinds dataset, snapshot, base, job, version)."""

    version: ModelVersion
    versions: list[ModelVersion] = field(default_factory=list)
    jobs: list[TrainingJob] = field(default_factory=list)
    base_models: list[BaseModel] = field(default_factory=list)
    snapshots: list[Snapshot] = field(default_factory=list)
    datasets: list[Dataset] = field(default_factory=list)
    edges: list[tuple[str, str, str]] = field(default_factory=list)
    snapshot_by_job: dict[int, Snapshot] = field(default_factory=dict)


def model_version_lineage_in_training(*, version: ModelVersion) -> Lineage:
    """The version's lineage within training: parent versions (and the reward model a GRPO
    job scored with), their jobs, base models and the jobs' snapshots, without the datasets
    the snapshots came from. Edges unsorted."""
    lineage = Lineage(version=version)
    seen: dict[int, ModelVersion] = {}
    todo = [version.pk]
    while todo:
        batch = [pk for pk in todo if pk not in seen]
        todo = []
        for v in ModelVersion.objects.filter(pk__in=batch).select_related(
            "job", "job__snapshot", "base_model"
        ):
            seen[v.pk] = v
            lineage.edges.append((f"base:{v.base_model_id}", f"version:{v.pk}", "base model"))
            if v.parent_id:
                todo.append(v.parent_id)
                lineage.edges.append((f"version:{v.parent_id}", f"version:{v.pk}", "parent"))
            job = v.job
            if job is None:
                continue
            lineage.edges.append((f"job:{job.pk}", f"version:{v.pk}", "produced"))
            for ref, relation in (
                (job.parent_version_id, "trained from"),
                (job.reward_version_id, "reward model"),
            ):
                if ref:
                    todo.append(ref)
                    lineage.edges.append((f"version:{ref}", f"job:{job.pk}", relation))
    lineage.versions = sorted(seen.values(), key=lambda v: v.pk)
    lineage.jobs = sorted((v.job for v in lineage.versions if v.job), key=lambda j: j.pk)
    lineage.base_models = list(
        BaseModel.objects.filter(pk__in={v.base_model_id for v in lineage.versions}).order_by("pk")
    )
    snapshots: dict[int, Snapshot] = {}
    for job in lineage.jobs:
        snapshot = job.snapshot
        if snapshot is not None:
            snapshots[snapshot.pk] = snapshot
            lineage.snapshot_by_job[job.pk] = snapshot
            lineage.edges.append((f"snapshot:{snapshot.pk}", f"job:{job.pk}", "training data"))
    lineage.snapshots = [snapshots[k] for k in sorted(snapshots)]
    return lineage


def model_version_lineage_full(*, version: ModelVersion) -> Lineage:
    """The version and everything it came from: parent versions (and the reward model a GRPO
    job scored with), their jobs, base models, snapshots and the snapshots' datasets: the
    graph the version's page and API show, and the one the dossier's lineage.json records
    (assembled there from each app's `lineage_section`). Unscoped: callers that show it to a
    person use `model_version_lineage_for_user`."""
    lineage = model_version_lineage_in_training(version=version)
    pairs, lineage.datasets = snapshot_sources(snapshot_ids=[s.pk for s in lineage.snapshots])
    for snapshot_id, dataset_id in pairs:
        lineage.edges.append((f"dataset:{dataset_id}", f"snapshot:{snapshot_id}", "items"))
    lineage.edges = sorted(set(lineage.edges))
    return lineage


KIND_ORDER = {"dataset": 0, "snapshot": 1, "base": 2, "job": 3, "version": 4}


@dataclass(frozen=True)
class LineageNode:
    key: str  # "kind:pk", or "hidden:n" for a node the caller may not see
    kind: str
    pk: int | None
    project_id: int | None  # None: a base model every project may use
    visible: bool
    name: str = ""
    detail: str = ""
    hashes: dict[str, str] = field(default_factory=dict)
    current: bool = False
    feeds: tuple[tuple[str, str], ...] = ()  # (relation, name of the node it feeds)


@dataclass(frozen=True)
class LineageView:
    nodes: list[LineageNode]  # sources first: every edge points to a later node
    edges: list[tuple[str, str, str]]


def _ranks(keys: list[str], edges: list[tuple[str, str, str]]) -> dict[str, int]:
    """Each node's longest distance from a source (a lineage has no cycles)."""
    incoming: dict[str, list[str]] = defaultdict(list)
    for source, target, _ in edges:
        incoming[target].append(source)
    rank: dict[str, int] = {}
    for _ in keys:  # relax until stable; lineages are a handful of nodes
        changed = False
        for key in keys:
            value = max((rank.get(p, 0) + 1 for p in incoming[key]), default=0)
            if rank.get(key) != value:
                rank[key], changed = value, True
        if not changed:
            break
    return rank


def _lineage_nodes(lineage: Lineage) -> list[LineageNode]:
    nodes = [
        LineageNode(
            f"dataset:{d.pk}",
            "dataset",
            d.pk,
            d.project_id,
            True,
            d.name,
            f"{d.row_count} rows · {d.file_name} · license {d.license or 'not recorded'}",
            {"file sha256": d.file_sha256},
        )
        for d in lineage.datasets
    ]
    nodes += [
        LineageNode(
            f"snapshot:{s.pk}",
            "snapshot",
            s.pk,
            s.project_id,
            True,
            f"{s.name} v{s.version}",
            f"{s.member_count} items · {s.task_type}",
            {"manifest sha256": s.manifest_sha256},
        )
        for s in lineage.snapshots
    ]
    nodes += [
        LineageNode(
            f"base:{b.pk}",
            "base",
            b.pk,
            b.project_id,
            True,
            b.name,
            f"base model · license {b.license or 'not recorded'}",
            {"weights sha256": b.weights_sha256},
        )
        for b in lineage.base_models
    ]
    nodes += [
        LineageNode(
            f"job:{j.pk}",
            "job",
            j.pk,
            j.project_id,
            True,
            f"{j.name} #{j.pk}",
            f"{j.kind} · {j.method} · {j.status}",
            {"training data sha256": j.manifest_sha256} if j.manifest_sha256 else {},
        )
        for j in lineage.jobs
    ]
    nodes += [
        LineageNode(
            f"version:{v.pk}",
            "version",
            v.pk,
            v.project_id,
            True,
            v.name,
            f"{v.get_kind_display().lower()} · {v.stage}",
            dict(sorted(v.checkpoint_sha256.items())),
            current=v.pk == lineage.version.pk,
        )
        for v in lineage.versions
    ]
    return nodes


def model_version_lineage_for_user(*, version: ModelVersion, user: User) -> LineageView:
    """The whole lineage of `version` as `user` may see it: every node in a project where
    they hold a reading role (or a base model shared by all projects) with its name, hashes
    and key; any other node only as its kind, under an opaque key."""
    lineage = model_version_lineage_full(version=version)
    # The roles that open the lineage pages themselves.
    readable = set(
        Membership.objects.filter(user_id=user.pk, role__in=RoleSet.OVERSIGHT).values_list(
            "project_id", flat=True
        )
    )
    nodes = _lineage_nodes(lineage)
    rank = _ranks([n.key for n in nodes], lineage.edges)
    hidden = [n.key for n in nodes if n.project_id is not None and n.project_id not in readable]
    renamed = {key: f"hidden:{n}" for n, key in enumerate(sorted(hidden), start=1)}
    edges = [(renamed.get(a, a), renamed.get(b, b), r) for a, b, r in lineage.edges]
    shown_name = {
        renamed.get(n.key, n.key): f"{n.kind} (hidden)" if n.key in renamed else n.name
        for n in nodes
    }
    shown: list[LineageNode] = []
    for node in sorted(nodes, key=lambda n: (rank[n.key], KIND_ORDER[n.kind], n.pk)):
        key = renamed.get(node.key, node.key)
        feeds = tuple((r, shown_name[b]) for a, b, r in edges if a == key)
        if node.key in renamed:
            shown.append(LineageNode(key, node.kind, None, None, False, feeds=feeds))
        else:
            shown.append(replace(node, feeds=feeds))
    return LineageView(nodes=shown, edges=edges)


@dataclass(frozen=True)
class Compatibility:
    base_models: list[BaseModel]
    rows: list[tuple[ModelVersion, list[bool]]]


def compatibility_matrix(*, project: Project) -> Compatibility:
    """Which versions fit which base models: an adapter fits exactly the weights (by hash)
    it was trained on; full weights stand alone and fit their own base only."""
    bases = list(base_model_list_for_project(project=project))
    versions = list(model_version_list_for_project(project=project).order_by("name"))
    rows = [(v, [b.weights_sha256 == v.base_weights_sha256 for b in bases]) for v in versions]
    return Compatibility(base_models=bases, rows=rows)
