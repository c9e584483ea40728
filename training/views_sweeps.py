"""Sweep pages: the list with the create form, the live sweep page (trials, the parallel-
coordinates chart, parameter importances), cancel, and registering the best trial."""

import json

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from core.access import project_page
from core.forms import form_errors_text, form_submit, validation_error_text
from core.models import RoleSet
from core.selectors import ProjectAccess
from training import selectors, services
from training.forms_sweeps import EXAMPLE_SPACE, SweepForm
from training.selectors.sweeps import (
    sweep_base_job_choices,
    sweep_get,
    sweep_list_for_project,
    sweep_parallel_chart,
    sweep_param_importances,
    sweep_trials,
)


def _create(request: HttpRequest, access: ProjectAccess, data: dict):
    return services.sweep_create(
        actor=request.user,
        project=access.project,
        name=data["name"],
        base_job=selectors.job_get(project=access.project, job_id=data["base_job"]),
        search_space=data["search_space"],
        initial_trials=data["initial_trials"],
        n_trials=data["n_trials"],
        concurrency=data["concurrency"],
        max_minutes=data["max_minutes"],
        sampler=data["sampler"],
        pruner=data["pruner"],
        seed=data["seed"],
    )


@require_http_methods(["GET", "POST"])
@project_page({"GET": RoleSet.OVERSIGHT, "POST": RoleSet.ENGINEERS})
def sweep_list(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    project = access.project
    form = SweepForm(
        request.POST if request.method == "POST" else None,
        initial={"search_space": json.dumps(EXAMPLE_SPACE, indent=2)},
    )
    error = None
    if request.method == "POST":
        sweep = form_submit(form, lambda data: _create(request, access, data))
        if sweep is not None:
            messages.success(request, f"Sweep {sweep.name} started.")
            return redirect("training:sweep", project_id=project.pk, sweep_id=sweep.pk)
        error = form_errors_text(form)
    context = {
        "access": access,
        "project": project,
        "sweeps": list(sweep_list_for_project(project=project)[:100]),
        "jobs": sweep_base_job_choices(project=project) if access.has(*RoleSet.ENGINEERS) else [],
        "form": form,
        "error": error,
        "can_launch": access.has(*RoleSet.ENGINEERS),
    }
    return render(request, "training/sweeps.html", context)


@require_GET
@project_page(RoleSet.OVERSIGHT)
def sweep_detail(request: HttpRequest, access: ProjectAccess, sweep_id: int) -> HttpResponse:
    sweep = sweep_get(project=access.project, sweep_id=sweep_id)
    trials = sweep_trials(sweep=sweep)
    chart = sweep_parallel_chart(sweep=sweep, trials=trials).with_source(
        f"{request.path}?part=chart"
    )
    part = request.GET.get("part")
    if part == "chart":
        return JsonResponse(chart.payload())
    best = sweep.best_trial
    context = {
        "access": access,
        "project": access.project,
        "sweep": sweep,
        "trials": trials,
        "chart": chart,
        "importances": sweep_param_importances(sweep=sweep, trials=trials),
        "best_version": getattr(best.job, "model_version", None) if best and best.job else None,
        "can_manage": access.has(*RoleSet.ENGINEERS),
    }
    if request.htmx and part == "live":
        return render(request, "training/sweep_detail.html#live", context)
    return render(request, "training/sweep_detail.html", context)


@require_POST
@project_page(RoleSet.ENGINEERS)
def sweep_cancel(request: HttpRequest, access: ProjectAccess, sweep_id: int) -> HttpResponse:
    sweep = sweep_get(project=access.project, sweep_id=sweep_id)
    try:
        services.sweep_cancel(actor=request.user, sweep=sweep)
    except ValidationError as error:
        messages.error(request, validation_error_text(error))
    else:
        messages.success(request, "Sweep cancelled; its running trials are stopping.")
    return redirect("training:sweep", project_id=access.project.pk, sweep_id=sweep.pk)


@require_POST
@project_page(RoleSet.ENGINEERS)
def sweep_register_best(request: HttpRequest, access: ProjectAccess, sweep_id: int) -> HttpResponse:
    sweep = sweep_get(project=access.project, sweep_id=sweep_id)
    try:
        version = services.sweep_register_best(actor=request.user, sweep=sweep)
    except ValidationError as error:
        messages.error(request, validation_error_text(error))
        return redirect("training:sweep", project_id=access.project.pk, sweep_id=sweep.pk)
    messages.success(request, f"Registered {version.name}.")
    return redirect("training:version", project_id=access.project.pk, version_id=version.pk)
