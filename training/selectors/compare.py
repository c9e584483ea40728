"""Side-by-side reads for the run comparison page (W&B's and MLflow's "compare runs"): the
jobs' curves on shared axes, their settings with the differing ones marked, and their final
figures. Scoped by project like every training read: an id from another project reaches
nothing."""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from core.models import Project
from training.models import TrainingJob
from training.presets import relevant_settings
from training.selectors import job_list_for_project

MAX_COMPARED = 8  # one Okabe-Ito colour each
MISSING = "—"
CURVES = (("loss", "train loss"), ("eval_loss", "eval loss"))


@dataclass(frozen=True)
class CompareRow:
    name: str
    values: list[str]
    differs: bool


@dataclass(frozen=True)
class JobComparison:
    jobs: list[TrainingJob]
    # Metric key ("loss", "eval_loss") -> job label -> (step, value) points.
    curves: dict[str, dict[str, list[tuple[float, float]]]]
    settings: list[CompareRow]
    finals: list[CompareRow]

    @property
    def differing(self) -> int:
        return sum(row.differs for row in self.settings)


def compare_ids(raw: Iterable[str]) -> list[int]:
    """Job or version ids from a query string, de-duplicated, in the order given; anything
    that is not a positive integer is dropped."""
    ids: list[int] = []
    for value in raw:
        if value.isdigit() and int(value) not in ids:
            ids.append(int(value))
    return ids[:MAX_COMPARED]


def _shown(value: Any) -> str:
    if value is None or value == "":
        return MISSING
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value)) or MISSING
    return str(value)


def compare_row(name: str, values: list[Any]) -> CompareRow:
    shown = [_shown(v) for v in values]
    return CompareRow(name=name, values=shown, differs=len(set(shown)) > 1)


def job_label(job: TrainingJob) -> str:
    return f"{job.name} #{job.pk}"


def job_comparison(*, project: Project, job_ids: list[int]) -> JobComparison:
    by_id = {
        job.pk: job
        for job in job_list_for_project(project=project)
        .select_related("parent_version", "reward_version", "snapshot")
        .filter(pk__in=job_ids[:MAX_COMPARED])
    }
    jobs = [by_id[pk] for pk in job_ids if pk in by_id]
    curves: dict[str, dict[str, list[tuple[float, float]]]] = {key: {} for key, _ in CURVES}
    latest: list[dict[str, Any]] = []
    lowest_eval: list[float | None] = []
    last_step: list[int | None] = []
    for job in jobs:
        last: dict[str, Any] = {}
        step = None
        for key, _ in CURVES:
            curves[key][job_label(job)] = []
        for step, values in job.metrics.order_by("step", "id").values_list("step", "values"):
            last.update(values)
            for key, _ in CURVES:
                if isinstance(values.get(key), int | float):
                    curves[key][job_label(job)].append((step, values[key]))
        latest.append(last)
        last_step.append(step)
        evals = [v for _, v in curves["eval_loss"][job_label(job)]]
        lowest_eval.append(min(evals) if evals else None)

    settings = [
        compare_row("kind", [j.get_kind_display() for j in jobs]),
        compare_row("method", [j.get_method_display() for j in jobs]),
        compare_row("base model", [j.base_model for j in jobs]),
        compare_row("from version", [j.parent_version for j in jobs]),
        compare_row("reward model", [j.reward_version for j in jobs]),
        compare_row("data", [j.snapshot or (j.data.get("train") or {}).get("name") for j in jobs]),
        compare_row("seed", [j.seed for j in jobs]),
    ]
    relevant = [relevant_settings(j.config, kind=j.kind, method=j.method) for j in jobs]
    shown = {"kind", "method", "seed"}  # already in the rows above
    for name in sorted({name for config in relevant for name in config} - shown):
        settings.append(compare_row(name, [config.get(name) for config in relevant]))

    metric_names = sorted(
        {
            name
            for last in latest
            for name, value in last.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        }
    )
    finals = [
        compare_row("status", [j.get_status_display() for j in jobs]),
        compare_row("last logged step", last_step),
        compare_row("lowest eval loss", lowest_eval),
        *(
            compare_row(f"final {name}", [last.get(name) for last in latest])
            for name in metric_names
        ),
    ]
    return JobComparison(jobs=jobs, curves=curves, settings=settings, finals=finals)
