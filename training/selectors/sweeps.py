"""Reads of hyperparameter sweeps: lists, a sweep's trials, its parallel-coordinates chart,
parameter importances, and a trial job's sweep for the lineage."""

import logging
import math
from typing import Any

import optuna
from django.db.models import QuerySet
from django.http import Http404

from core import charts
from core.models import Project
from training.models import Sweep, SweepTrial, TrainingJob
from training.services.sweeps import OBJECTIVE, sweep_study

logger = logging.getLogger(__name__)


def sweep_list_for_project(*, project: Project) -> QuerySet[Sweep]:
    return Sweep.objects.filter(project=project).select_related("base_job", "best_trial")


def sweep_get(*, project: Project, sweep_id: int | str) -> Sweep:
    try:
        return sweep_list_for_project(project=project).get(pk=int(sweep_id))
    except (Sweep.DoesNotExist, TypeError, ValueError):
        raise Http404("No such sweep.") from None


def sweep_trials(*, sweep: Sweep) -> list[SweepTrial]:
    return list(sweep.trials.select_related("job").order_by("number"))


def sweep_base_job_choices(*, project: Project) -> QuerySet[TrainingJob]:
    """The jobs a sweep may start from: this project's jobs that evaluate, newest first."""
    return (
        TrainingJob.objects.filter(project=project, sweep_trial__isnull=True)
        .exclude(config__eval_steps=0)
        .select_related("base_model")[:100]
    )


def _axis_value(value: Any) -> Any:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float):
        return value if math.isfinite(value) else None
    return str(value)


def sweep_parallel_chart(*, sweep: Sweep, trials: list[SweepTrial]) -> charts.Chart:
    """One line per finished trial across the searched settings and the objective; pruned
    trials drawn apart so a glance shows where the hopeless region lies."""
    names = sorted(sweep.search_space)
    axes: list[dict[str, Any]] = []
    for dim, name in enumerate(names):
        spec = sweep.search_space[name]
        axis: dict[str, Any] = {"dim": dim, "name": name}
        if spec.get("type") == "categorical":
            axis |= {"type": "category", "data": [str(c) for c in spec["choices"]]}
        elif spec.get("log"):
            axis |= {"type": "log"}
        axes.append(axis)
    axes.append({"dim": len(names), "name": OBJECTIVE, "nameTextStyle": {"fontWeight": "bold"}})
    series = []
    for state, colour in (
        (SweepTrial.State.COMPLETE, charts.SERIES_COLOURS[0]),
        (SweepTrial.State.PRUNED, charts.HIGHLIGHT),
    ):
        rows = [
            [_axis_value(t.params.get(n)) for n in names] + [_axis_value(t.value)]
            for t in trials
            if t.state == state
        ]
        series.append(
            {
                "type": "parallel",
                "name": str(state.label),
                "data": rows,
                "lineStyle": {"width": 2, "opacity": 0.7, "color": colour},
            }
        )
    title = "Trials across the search space"
    options: dict[str, Any] = {
        "animation": False,
        "title": {"text": title, "left": 8, "top": 4, "textStyle": {"fontSize": 14}},
        "legend": {"top": 30, "left": 8, "data": [s["name"] for s in series]},
        "parallel": {"left": 60, "right": 80, "top": 80, "bottom": 30},
        "parallelAxis": axes,
        "series": series,
        # charts.js's tooltip reads x/y series; a parallel line is read off its axes.
        "tooltip": {"show": False},
        "graphic": [],
    }
    return charts.Chart(options=options, title=title, height=320)


def sweep_param_importances(*, sweep: Sweep, trials: list[SweepTrial]) -> list[tuple[str, float]]:
    """Each searched setting's share of the objective's variance (fANOVA over the completed
    trials), largest first; empty until two trials have completed."""
    done = [t for t in trials if t.state == SweepTrial.State.COMPLETE]
    if len(done) < 2:
        return []
    try:
        found = optuna.importance.get_param_importances(sweep_study(sweep, done))
    except (ValueError, RuntimeError):  # e.g. every completed trial has the same parameters
        logger.info("sweep %s: no parameter importances yet", sweep.pk, exc_info=True)
        return []
    return sorted(((k, float(v)) for k, v in found.items()), key=lambda kv: -kv[1])


def sweep_lineage_row(*, job: TrainingJob) -> dict[str, Any] | None:
    """The sweep a trial job belonged to, as the lineage records it: the search that chose
    this job's settings, and where the job stood in it."""
    trial = SweepTrial.objects.filter(job=job).select_related("sweep").first()
    if trial is None:
        return None
    sweep = trial.sweep
    return {
        "id": sweep.pk,
        "name": sweep.name,
        "base_job": sweep.base_job_id,
        "search_space": sweep.search_space,
        "initial_trials": sweep.initial_trials,
        "sampler": sweep.sampler,
        "pruner": sweep.pruner,
        "pruner_settings": sweep.pruner_settings,
        "seed": sweep.seed,
        "n_trials": sweep.n_trials,
        "objective": OBJECTIVE,
        "trial": trial.number,
        "params": trial.params,
        "value": trial.value,
        "trials": [
            {"number": t.number, "state": t.state, "value": t.value, "params": t.params}
            for t in sweep.trials.order_by("number")
        ],
    }
