"""Training pages: job list, the job form, the live job page, the registry, base models and
the playground. Engineers launch and cancel; admins and compliance read."""

import time
from typing import Any

from django.contrib import messages
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from core import charts, realtime
from core.access import project_page
from core.forms import form_errors_text, form_submit, validation_error_text
from core.models import RoleSet
from core.selectors import ProjectAccess
from training import selectors, services, tasks
from training.forms import (
    BaseModelRegisterForm,
    CompressionForm,
    JobForm,
    PlaygroundForm,
    presets_json,
)
from training.selectors.compare import compare_ids, job_comparison
from training.selectors.compression import compression_family
from training.services.compression import compression_job_create

PLAYGROUND_RESULT_TTL_S = 3600


def _snapshots(project):
    from annotation import selectors as annotation_selectors

    finder = getattr(annotation_selectors, "snapshot_list_for_project", None)
    return list(finder(project=project)) if finder else []


@require_GET
@project_page(RoleSet.OVERSIGHT)
def job_list(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    jobs = list(selectors.job_list_for_project(project=access.project)[:200])
    context = {
        "access": access,
        "project": access.project,
        "jobs": jobs,
        "can_launch": access.has(*RoleSet.ENGINEERS),
        # As on the job page: poll while a job runs where no push reaches this process.
        "poll_live": any(job.is_active for job in jobs) and not realtime.pushes_cross_processes(),
    }
    template = "training/jobs.html#jobs" if request.htmx else "training/jobs.html"
    return render(request, template, context)


@require_GET
@project_page(RoleSet.OVERSIGHT)
def job_compare(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    comparison = job_comparison(
        project=access.project, job_ids=compare_ids(request.GET.getlist("jobs"))
    )
    eval_curves = comparison.curves["eval_loss"]
    context = {
        "access": access,
        "project": access.project,
        "comparison": comparison,
        "loss_chart": charts.line_chart(
            series=comparison.curves["loss"],
            title="Training loss",
            x_label="step",
            y_label="loss",
            smooth=True,
        ),
        # Jobs that never evaluated get no eval chart at all, not an empty one.
        "eval_chart": charts.line_chart(
            series=eval_curves, title="Eval loss", x_label="step", y_label="eval loss"
        )
        if any(eval_curves.values())
        else None,
    }
    return render(request, "training/compare.html", context)


@require_http_methods(["GET", "POST"])
@project_page(RoleSet.ENGINEERS)
def job_new(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    project = access.project
    bases = list(selectors.base_model_list_for_project(project=project))
    versions = list(selectors.model_version_list_for_project(project=project))
    snapshots = _snapshots(project)
    form_kwargs = {"base_models": bases, "versions": versions, "snapshots": snapshots}
    form = JobForm(**form_kwargs)
    if request.method == "POST":
        form = JobForm(request.POST, request.FILES, **form_kwargs)
        job = form_submit(
            form,
            lambda data: _create_from_form(
                request, project, data, form, bases, versions, snapshots
            ),
        )
        if job is not None:
            messages.success(request, f"Job {job.name} queued.")
            return redirect("training:job", project_id=project.pk, job_id=job.pk)
    context = {
        "access": access,
        "project": project,
        "form": form,
        "presets_json": presets_json(),
        "has_base_models": bool(bases),
    }
    return render(request, "training/job_new.html", context)


def _create_from_form(request, project, data, form, bases, versions, snapshots):
    by_id = {str(v.pk): v for v in versions}
    base = next(b for b in bases if str(b.pk) == data["base_model"])
    snapshot = next((s for s in snapshots if str(s.pk) == data.get("snapshot")), None)
    train_file = eval_file = None
    if snapshot is None:
        if not data.get("train_file"):
            raise ValidationError({"train_file": "Choose a snapshot or upload a training file."})
        train_file = services.training_file_store(
            project=project,
            upload=data["train_file"],
            name=data["train_file"].name,
            actor=request.user,
            field="train_file",
        )["path"]
        if data.get("eval_file"):
            eval_file = services.training_file_store(
                project=project,
                upload=data["eval_file"],
                name=data["eval_file"].name,
                actor=request.user,
                field="eval_file",
            )["path"]
    return services.training_job_create(
        actor=request.user,
        project=project,
        name=data.get("name") or "",
        kind=data["kind"],
        method=data["method"],
        base_model=base,
        values=form.hyperparameters(),
        preset=data.get("preset") or None,
        snapshot=snapshot,
        accept_leakage=bool(data.get("accept_leakage")),
        train_file=train_file,
        eval_file=eval_file,
        parent_version=by_id.get(data.get("parent_version") or ""),
        reward_version=by_id.get(data.get("reward_version") or ""),
    )


def _job_chart(request: HttpRequest, job) -> charts.Chart:
    """The loss chart; it refreshes in place from the same page's ?part=chart."""
    return charts.line_chart(
        series=selectors.job_chart_series(job=job),
        title="Loss by step",
        x_label="step",
        y_label="loss",
        height=300,
        smooth=True,
    ).with_source(f"{request.path}?part=chart")


def _job_context(request: HttpRequest, access, job) -> dict:
    progress = job.progress or {}
    return {
        # Without a channel layer that reaches the worker (the embedded default) the live
        # regions poll while the job runs; with one, pushes refresh them.
        "poll_live": job.is_active and not realtime.pushes_cross_processes(),
        "phase_seconds": time.time() - progress["started_at"]
        if progress.get("started_at")
        else None,
        "estimate": selectors.job_estimate(job=job),
        "access": access,
        "project": access.project,
        "job": job,
        "chart": _job_chart(request, job),
        "latest": selectors.job_latest_values(job=job),
        "log_lines": selectors.job_log_tail(job=job),
        "checkpoints": selectors.job_checkpoints(job=job),
        "tracking_links": selectors.job_tracking_links(job=job),
        "version": getattr(job, "model_version", None) if job.status == "succeeded" else None,
        "can_cancel": access.has(*RoleSet.ENGINEERS) and job.is_active,
        "can_resume": access.has(*RoleSet.ENGINEERS) and job.status in ("failed", "cancelled"),
    }


@require_GET
@project_page(RoleSet.OVERSIGHT)
def job_detail(request: HttpRequest, access: ProjectAccess, job_id: int) -> HttpResponse:
    job = selectors.job_get(project=access.project, job_id=job_id)
    part = request.GET.get("part")
    if part == "chart":
        return JsonResponse(_job_chart(request, job).payload())
    context = _job_context(request, access, job)
    if request.htmx and part in ("live", "log"):
        return render(request, f"training/job.html#{part}", context)
    return render(request, "training/job.html", context)


@require_POST
@project_page(RoleSet.ENGINEERS)
def job_cancel(request: HttpRequest, access: ProjectAccess, job_id: int) -> HttpResponse:
    job = selectors.job_get(project=access.project, job_id=job_id)
    try:
        services.training_job_cancel(actor=request.user, job=job)
    except ValidationError as error:
        messages.error(request, validation_error_text(error))
    else:
        messages.success(request, "Cancel requested; the job stops after its current step.")
    return redirect("training:job", project_id=access.project.pk, job_id=job.pk)


@require_POST
@project_page(RoleSet.ENGINEERS)
def job_resume(request: HttpRequest, access: ProjectAccess, job_id: int) -> HttpResponse:
    job = selectors.job_get(project=access.project, job_id=job_id)
    try:
        resumed = services.training_job_resume(actor=request.user, job=job)
    except ValidationError as error:
        messages.error(request, validation_error_text(error))
        return redirect("training:job", project_id=access.project.pk, job_id=job.pk)
    return redirect("training:job", project_id=access.project.pk, job_id=resumed.pk)


@require_GET
@project_page(RoleSet.OVERSIGHT)
def version_list(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    context = {
        "access": access,
        "project": access.project,
        "versions": selectors.model_version_list_for_project(project=access.project),
        "matrix": selectors.compatibility_matrix(project=access.project),
    }
    return render(request, "training/versions.html", context)


@require_GET
@project_page(RoleSet.OVERSIGHT)
def version_detail(request: HttpRequest, access: ProjectAccess, version_id: int) -> HttpResponse:
    version = selectors.model_version_get(project=access.project, version_id=version_id)
    sanity = version.metrics.get("sanity")
    context = {
        "access": access,
        "project": access.project,
        "version": version,
        "lineage": selectors.model_version_lineage_for_user(version=version, user=request.user),
        "sanity": sanity,
        "metrics": {k: v for k, v in version.metrics.items() if k != "sanity"},
    }
    return render(request, "training/version.html", context)


def _compress(request: HttpRequest, access: ProjectAccess, version: Any, data: dict) -> Any:
    """Store the prompts upload (distill) and queue the compression: one service each."""
    prompts = None
    if data.get("prompts"):
        upload = data["prompts"]
        prompts = services.training_file_store(
            project=access.project,
            upload=upload,
            name=upload.name,
            actor=request.user,
            field="prompts",
        )["path"]
    return compression_job_create(
        actor=request.user,
        version=version,
        kind=data["kind"],
        name=data["name"],
        quantization=data["quantization"] or "int8_weight_only",
        student_base=data["student_base"],
        method=data["method"] or "lora",
        distill_method=data["distill_method"] or "sequence",
        prompts_file=prompts,
        values={"max_steps": data["max_steps"]} if data.get("max_steps") else {},
        gate_tolerance=data["gate_tolerance"],
    )


@require_http_methods(["GET", "POST"])
@project_page({"GET": RoleSet.OVERSIGHT, "POST": RoleSet.ENGINEERS})
def version_compression(
    request: HttpRequest, access: ProjectAccess, version_id: int
) -> HttpResponse:
    """A version and its compressed children side by side, and (engineers) a form to
    compress it: merge, quantize or distill."""
    version = selectors.model_version_get(project=access.project, version_id=version_id)
    bases = selectors.base_model_list_for_project(project=access.project)
    form = CompressionForm(request.POST or None, request.FILES or None, bases=bases)
    if request.method == "POST":
        job = form_submit(form, lambda data: _compress(request, access, version, data))
        if job is not None:
            messages.success(request, f"Compression job {job.name} queued.")
            return redirect("training:job", access.project.pk, job.pk)
    family = compression_family(project=access.project, version_id=version.pk)
    charts_by_key = {}
    for key, title, label in (
        ("size_bytes", "Size on disk", "bytes"),
        ("tokens_per_second", "Tokens per second (CPU, one request)", "tokens/s"),
        ("cost_per_million_tokens", f"Cost per 1M tokens ({family.price['unit']})", "cost"),
    ):
        names, values = family.series(key)
        charts_by_key[key] = charts.bar_chart(
            categories=names, values=values, title=title, y_label=label
        )
    context = {
        "access": access,
        "project": access.project,
        "version": version,
        "family": family,
        "charts": charts_by_key,
        "form": form,
        "can_launch": access.has(*RoleSet.ENGINEERS),
    }
    return render(request, "training/compression.html", context)


@require_http_methods(["GET", "POST"])
@project_page({"GET": RoleSet.OVERSIGHT, "POST": RoleSet.ENGINEERS})
def base_models(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    project = access.project
    error = None
    if request.method == "POST":
        form = BaseModelRegisterForm(request.POST)
        # Reading (and converting) a model takes a worker up to minutes: queue it and
        # show its progress, never hold the request.
        registration = form_submit(
            form,
            lambda data: services.base_model_registration_start(
                actor=request.user,
                project=project,
                name=data["name"],
                source=data["source"],
                path=data["path"],
                license=data["license"],
                packaged=data["action"] == "default",
            ),
        )
        if registration is None:
            error = form_errors_text(form)
        else:
            messages.success(request, f"Registering {registration.name}: follow it below.")
            return redirect(
                "training:registration", project_id=project.pk, registration_id=registration.pk
            )
    registrations = list(selectors.registration_list_for_project(project=project)[:10])
    context = {
        "access": access,
        "project": project,
        "base_models": selectors.base_model_list_for_project(project=project),
        "registrations": registrations,
        "registering": any(r.is_active for r in registrations),
        "error": error,
        "can_launch": access.has(*RoleSet.ENGINEERS),
    }
    if request.htmx and request.method == "GET":
        return render(request, "training/base_models.html#registrations", context)
    return render(request, "training/base_models.html", context)


@require_GET
@project_page(RoleSet.OVERSIGHT)
def registration_detail(
    request: HttpRequest, access: ProjectAccess, registration_id: int
) -> HttpResponse:
    registration = selectors.registration_get(
        project=access.project, registration_id=registration_id
    )
    progress = registration.progress or {}
    context = {
        "access": access,
        "project": access.project,
        "registration": registration,
        "phase_seconds": time.time() - progress["started_at"]
        if progress.get("started_at")
        else None,
    }
    template = "training/registration.html#live" if request.htmx else "training/registration.html"
    return render(request, template, context)


def _playground_choice(project, value: str):
    """ "b<id>" is a base model alone, "v<id>" a version over its base model."""
    if value.startswith("v"):
        version = selectors.model_version_get(project=project, version_id=value[1:])
        return version.base_model, version, str(version)
    base = selectors.base_model_get(project=project, base_model_id=value[1:])
    return base, None, f"{base} (base)"


def _playground_start(request, project, data: dict) -> list[dict]:
    """Queue the prompt on the left and right models; the result pages are kept for the
    user who asked."""
    chosen = [_playground_choice(project, data[side]) for side in ("left", "right")]
    task_ids = services.playground_generate(
        actor=request.user,
        project=project,
        prompt=data["prompt"],
        max_new_tokens=int(data["max_new_tokens"]),
        models=[(base, version) for base, version, _ in chosen],
    )
    for task_id in task_ids:
        cache.set(f"training:playground:{task_id}", request.user.pk, PLAYGROUND_RESULT_TTL_S)
    return [
        {"label": label, "task_id": task_id}
        for (_, _, label), task_id in zip(chosen, task_ids, strict=True)
    ]


@require_http_methods(["GET", "POST"])
@project_page(RoleSet.ENGINEERS)
def playground(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    project = access.project
    choices = [
        (f"b{b.pk}", f"{b} (base)") for b in selectors.base_model_list_for_project(project=project)
    ]
    choices += [
        (f"v{v.pk}", str(v))
        for v in selectors.model_version_list_for_project(project=project)
        if v.task != "reward"
    ]
    context = {"access": access, "project": project, "choices": choices, "runs": None}
    if request.method == "POST":
        form = PlaygroundForm(request.POST)
        runs = form_submit(form, lambda data: _playground_start(request, project, data))
        # The form comes back as it was sent, whatever happened.
        context.update({k: form[k].value() or "" for k in PlaygroundForm.base_fields})
        if runs is None:
            context["error"] = form_errors_text(form)
        else:
            context["runs"] = runs
    return render(request, "training/playground.html", context)


@require_GET
@project_page(RoleSet.ENGINEERS)
def playground_result(request: HttpRequest, access: ProjectAccess, task_id: str) -> HttpResponse:
    if cache.get(f"training:playground:{task_id}") != request.user.pk:
        return HttpResponse(status=404)
    result = tasks.generate_task.AsyncResult(task_id)
    context = {"project": access.project, "task_id": task_id, "ready": result.ready()}
    if result.ready():
        if result.successful():
            context["text"] = (result.result or [""])[0]
        else:
            context["error"] = str(result.result)
    return render(request, "training/playground.html#result", context)
