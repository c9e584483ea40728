"""Pages for blind review (reviewers) and for campaigns, results, metrics and gates
(engineers, compliance, admins)."""

import json
from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from core import strict_json
from core.models import Role
from core.selectors import ProjectAccess, project_access_get
from evaluation import selectors, services
from evaluation.forms import (
    ContestantForm,
    GateForm,
    GateRunForm,
    GenerationForm,
    MetricRunForm,
    PromptSetFromSnapshotForm,
    gate_check_formset,
)
from evaluation.models import Campaign, Contestant

RESULT_READERS = (Role.ENGINEER, Role.COMPLIANCE, Role.ADMIN)
JOBS_SHOWN = 50
GATE_RUNS_SHOWN = 20


def _messages(error: ValidationError) -> str:
    if hasattr(error, "error_dict"):
        return "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in error.message_dict.items())
    return " ".join(error.messages)


def _campaign(access, campaign_id) -> Campaign:
    try:
        return selectors.campaign_get(project=access.project, campaign_id=campaign_id)
    except Campaign.DoesNotExist:
        raise Http404("No such campaign.") from None


# --- reviewers ---------------------------------------------------------------------------------


@login_required
@require_GET
def review_home(request: HttpRequest, project_id: int) -> HttpResponse:
    access = project_access_get(project_id=project_id, user=request.user).require(Role.REVIEWER)
    campaigns = selectors.review_campaign_list(project=access.project, reviewer=request.user)
    return render(
        request,
        "evaluation/review_home.html",
        {"project": access.project, "campaigns": campaigns},
    )


def _render_pair(request, access, campaign, error=None) -> HttpResponse:
    """The reviewer's current pair as a BlindPair: the template never sees a Judgment."""
    judgment = services.judgment_next(campaign=campaign, reviewer=request.user)
    pair = (
        selectors.blind_pair_from_judgment(judgment=judgment, campaign=campaign)
        if judgment
        else None
    )
    context = {
        "project": access.project,
        "campaign_id": campaign.pk,
        "campaign_open": campaign.status == Campaign.Status.OPEN,
        "pair": pair,
        "notice": pair.notice
        if pair
        else selectors.rater_notice(campaign=campaign, reviewer_id=request.user.pk),
        "progress": selectors.review_progress(campaign=campaign, reviewer=request.user),
        "error": error,
    }
    template = "evaluation/review.html#pair" if request.htmx else "evaluation/review.html"
    response = render(request, template, context)
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_GET
def review(request: HttpRequest, project_id: int, campaign_id: int) -> HttpResponse:
    access = project_access_get(project_id=project_id, user=request.user).require(Role.REVIEWER)
    return _render_pair(request, access, _campaign(access, campaign_id))


def criteria_from_post(post) -> dict[str, dict[str, str]]:
    """Form fields `crit-<key>-a` / `crit-<key>-b` → {key: {a, b}}."""
    out: dict[str, dict[str, str]] = {}
    for name, value in post.items():
        if name.startswith("crit-") and value != "":
            key, _, side = name[5:].rpartition("-")
            out.setdefault(key, {})[side] = value
    return out


@login_required
@require_POST
def review_submit(request: HttpRequest, project_id: int, campaign_id: int) -> HttpResponse:
    access = project_access_get(project_id=project_id, user=request.user).require(Role.REVIEWER)
    campaign = _campaign(access, campaign_id)
    try:
        seconds = float(request.POST.get("seconds") or "nan")
    except ValueError:
        seconds = float("nan")
    try:
        services.judgment_submit(
            campaign=campaign,
            reviewer=request.user,
            token=request.POST.get("token", ""),
            outcome=request.POST.get("outcome", ""),
            criteria=criteria_from_post(request.POST),
            rationale=request.POST.get("rationale", ""),
            seconds_spent=None if seconds != seconds else seconds,
            unsafe_a=request.POST.get("unsafe_a") == "on",
            unsafe_b=request.POST.get("unsafe_b") == "on",
        )
    except ValidationError as error:
        return _render_pair(request, access, campaign, error=_messages(error))
    return _render_pair(request, access, campaign)


# --- engineers, compliance, admins ---------------------------------------------------------


def _generation_jobs_context(project) -> dict[str, Any]:
    jobs = list(selectors.generation_job_list_for_project(project=project)[:JOBS_SHOWN])
    return {"generation_jobs": jobs, "generation_active": selectors.generation_jobs_active(jobs)}


def _render_overview(
    request: HttpRequest, access: ProjectAccess, *, error: str | None = None, **bound: Any
) -> HttpResponse:
    """The overview page; `bound` replaces the blank form of the one that was just posted,
    so its values and errors come back next to its fields."""
    project = access.project
    can_write = access.has(Role.ENGINEER)
    context = {
        "access": access,
        "project": project,
        "error": error or _form_errors(*bound.values()),
        "prompt_sets": selectors.prompt_set_list_for_project(project=project),
        "contestants": selectors.contestant_list_for_project(project=project),
        "campaigns": selectors.campaign_list_for_project(project=project),
        "metric_runs": selectors.metric_run_list_for_project(project=project)[:20],
        "gates": selectors.gate_list_for_project(project=project),
        "gate_runs": selectors.gate_run_list_for_project(project=project)[:GATE_RUNS_SHOWN],
        "can_write": can_write,
        **_generation_jobs_context(project),
    }
    if can_write:
        context.update(
            snapshot_form=PromptSetFromSnapshotForm(project=project),
            contestant_form=ContestantForm(project=project),
            generation_form=GenerationForm(project=project),
            metric_form=MetricRunForm(project=project),
            gate_form=GateForm(),
            gate_checks=gate_check_formset(project=project),
            gate_run_form=GateRunForm(project=project),
        )
        context.update(bound)
    return render(request, "evaluation/overview.html", context)


def _form_errors(*bound: forms.Form | forms.BaseFormSet) -> str | None:
    """One line for the top of the page that names each field with an error."""
    parts = []
    for form in bound:
        if isinstance(form, forms.BaseFormSet):
            for n, row in enumerate(form.forms, start=1):
                parts.extend(
                    f"check {n}, {_label(row, field)}: {' '.join(msgs)}"
                    for field, msgs in row.errors.items()
                )
            parts.extend(form.non_form_errors())
        else:
            parts.extend(
                f"{_label(form, field)}: {' '.join(msgs)}" if field != "__all__" else " ".join(msgs)
                for field, msgs in form.errors.items()
            )
    return "; ".join(parts) or None


def _label(form: forms.Form, field: str) -> str:
    return str(form[field].label) if field in form.fields else field


def _add_service_error(
    form: forms.Form, error: ValidationError, aliases: dict[str, str] | None = None
) -> None:
    """A service's ValidationError onto the form: under the field it names where the form
    has that field, else at the top of the form, still named."""
    if not hasattr(error, "error_dict"):
        form.add_error(None, error.messages)
        return
    for name, msgs in error.message_dict.items():
        field = (aliases or {}).get(name, name)
        if field in form.fields:
            form.add_error(field, msgs)
        else:
            form.add_error(None, [f"{name}: {m}" for m in msgs])


def _submit(
    form: forms.Form, write: Callable[[dict[str, Any]], Any], aliases: dict[str, str] | None = None
) -> Any:
    """Validate `form` and hand its data to `write` (one service call); None on any error,
    which is then on the form."""
    if not form.is_valid():
        return None
    try:
        return write(form.cleaned_data)
    except ValidationError as error:
        _add_service_error(form, error, aliases)
        return None


def _back_to(access: ProjectAccess, section: str) -> HttpResponse:
    return redirect(reverse("evaluation:overview", args=[access.project.pk]) + f"#{section}")


@login_required
@require_http_methods(["GET", "POST"])
def overview(request: HttpRequest, project_id: int) -> HttpResponse:
    access = project_access_get(project_id=project_id, user=request.user)
    access.require(*RESULT_READERS)
    error = None
    if request.method == "POST":
        access.require(Role.ENGINEER)
        try:
            _overview_post(request, access.project)
        except ValidationError as invalid:
            error = _messages(invalid)
        except (ValueError, KeyError, json.JSONDecodeError) as bad:
            error = f"Could not read the form: {bad}"
        else:
            return redirect("evaluation:overview", project_id=access.project.pk)
    return _render_overview(request, access, error=error)


@login_required
@require_GET
def generation_jobs(request: HttpRequest, project_id: int) -> HttpResponse:
    """The generation jobs table alone, which the overview polls while a job may change."""
    access = project_access_get(project_id=project_id, user=request.user)
    access.require(*RESULT_READERS)
    context = {"project": access.project, **_generation_jobs_context(access.project)}
    return render(request, "evaluation/overview.html#generation_jobs", context)


def _engineer(request: HttpRequest, project_id: int) -> ProjectAccess:
    return project_access_get(project_id=project_id, user=request.user).require(Role.ENGINEER)


@login_required
@require_POST
def prompt_set_from_snapshot(request: HttpRequest, project_id: int) -> HttpResponse:
    access = _engineer(request, project_id)
    form = PromptSetFromSnapshotForm(request.POST, project=access.project)
    prompt_set = _submit(
        form,
        lambda data: services.prompt_set_create_from_snapshot(
            actor=request.user,
            snapshot=data["snapshot"],
            name=data["name"],
            adversarial=data["adversarial"],
        ),
    )
    if prompt_set is None:
        return _render_overview(request, access, snapshot_form=form)
    messages.success(
        request, f"Prompt set {prompt_set.name} created with {prompt_set.prompt_count} prompts."
    )
    return _back_to(access, "prompt-sets")


@login_required
@require_POST
def contestant_create(request: HttpRequest, project_id: int) -> HttpResponse:
    access = _engineer(request, project_id)
    form = ContestantForm(request.POST, project=access.project)
    contestant = _submit(
        form,
        lambda data: services.contestant_create(actor=request.user, project=access.project, **data),
    )
    if contestant is None:
        return _render_overview(request, access, contestant_form=form)
    messages.success(request, f"Contestant {contestant.label} added.")
    return _back_to(access, "contestants")


@login_required
@require_POST
def generation_start(request: HttpRequest, project_id: int) -> HttpResponse:
    access = _engineer(request, project_id)
    form = GenerationForm(request.POST, project=access.project)
    jobs = _submit(
        form,
        lambda data: services.generation_jobs_start(actor=request.user, **data),
        aliases={"contestant": "contestants", "decoding": "temperature"},
    )
    if jobs is None:
        return _render_overview(request, access, generation_form=form)
    messages.success(request, f"{len(jobs)} generation job(s) queued.")
    return _back_to(access, "generations")


@login_required
@require_POST
def metric_runs_start(request: HttpRequest, project_id: int) -> HttpResponse:
    access = _engineer(request, project_id)
    form = MetricRunForm(request.POST, project=access.project)
    runs = _submit(form, lambda data: services.metric_runs_start(actor=request.user, **data))
    if runs is None:
        return _render_overview(request, access, metric_form=form)
    messages.success(request, f"{len(runs)} metric run(s) queued.")
    return _back_to(access, "metrics")


@login_required
@require_POST
def gate_create(request: HttpRequest, project_id: int) -> HttpResponse:
    access = _engineer(request, project_id)
    form = GateForm(request.POST)
    checks = gate_check_formset(request.POST, project=access.project)
    gate = None
    if checks.is_valid():
        gate = _submit(
            form,
            lambda data: services.gate_create(
                actor=request.user,
                project=access.project,
                name=data["name"],
                checks=checks.checks(),
            ),
        )
    else:
        form.is_valid()  # its own errors show beside the checks' errors
    if gate is None:
        return _render_overview(request, access, gate_form=form, gate_checks=checks)
    messages.success(request, f"Gate {gate.name} created with {len(gate.checks)} check(s).")
    return _back_to(access, "gates")


@login_required
@require_POST
def gate_run(request: HttpRequest, project_id: int) -> HttpResponse:
    access = _engineer(request, project_id)
    form = GateRunForm(request.POST, project=access.project)
    run = _submit(
        form,
        lambda data: services.gate_run(actor=request.user, **data),
    )
    if run is None:
        return _render_overview(request, access, gate_run_form=form)
    outcome = "passed" if run.passed else "failed"
    say = messages.success if run.passed else messages.warning
    say(request, f"Gate {run.gate.name} {outcome} for {run.candidate.label}.")
    return _back_to(access, "gates")


def _overview_post(request: HttpRequest, project) -> None:
    action = request.POST.get("action")
    if action == "prompt_set":
        upload = request.FILES.get("file")
        if upload is None:
            raise ValidationError({"file": "Choose a JSONL file with one {prompt, ...} per line."})
        rows = []
        for n, line in enumerate(upload.read().decode("utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(strict_json.decode(line))
                except json.JSONDecodeError as bad:
                    raise ValidationError({"file": f"line {n}: not JSON ({bad.msg})"}) from None
                except strict_json.JSONLimitError as bad:
                    field = f", field {bad.path!r}" if bad.path else ""
                    raise ValidationError({"file": f"line {n}{field}: {bad.reason}"}) from None
        services.prompt_set_create(
            actor=request.user,
            project=project,
            name=request.POST.get("name", ""),
            rows=rows,
            adversarial=request.POST.get("adversarial") == "on",
            general=request.POST.get("general") == "on",
            license=request.POST.get("license", ""),
            synthetic=request.POST.get("synthetic") == "on",
        )
    elif action == "campaign":
        prompt_set = selectors.prompt_set_get(
            project=project, prompt_set_id=int(request.POST["prompt_set"])
        )
        contestants = list(
            Contestant.objects.filter(
                project=project, pk__in=[int(x) for x in request.POST.getlist("contestants")]
            )
        )
        services.campaign_create(
            actor=request.user,
            project=project,
            name=request.POST.get("name", ""),
            prompt_set=prompt_set,
            contestants=contestants,
            question=request.POST.get("question", ""),
            raters_per_pair=int(request.POST.get("raters_per_pair") or 1),
            rater_quota=int(request.POST.get("rater_quota") or 0),
            pair_selection=request.POST.get("pair_selection", "all"),
        )
    else:
        raise ValidationError(f"Unknown action {action!r}.")


@login_required
@require_GET
def results(request: HttpRequest, project_id: int, campaign_id: int) -> HttpResponse:
    access = project_access_get(project_id=project_id, user=request.user)
    access.require(*RESULT_READERS)
    campaign = _campaign(access, campaign_id)
    res = selectors.campaign_results(
        campaign=campaign,
        include_self_identified=request.GET.get("self_identified") == "include",
    )
    context = {
        "access": access,
        "project": access.project,
        "campaign": campaign,
        "results": res,
        "can_write": access.has(Role.ENGINEER),
        "interval_rows": [
            (
                r.label,
                r.rating,
                r.boot_lower if r.boot_lower is not None else r.lower,
                r.boot_upper if r.boot_upper is not None else r.upper,
            )
            for r in res.rows
        ],
        "criteria_rows": [
            (criterion, label, value)
            for criterion, by_label in res.criteria.items()
            for label, value in by_label.items()
        ],
        "battles": selectors.battle_count(campaign=campaign),
    }
    template = "evaluation/results.html#live" if request.htmx else "evaluation/results.html"
    response = render(request, template, context)
    response["Vary"] = "HX-Request"
    return response


def _int_or_zero(value: str) -> int:
    """A posted id; 0 (no such row) for anything that is not one."""
    return int(value) if value.isdigit() else 0


@login_required
@require_POST
def campaign_action(request: HttpRequest, project_id: int, campaign_id: int) -> HttpResponse:
    access = project_access_get(project_id=project_id, user=request.user).require(Role.ENGINEER)
    campaign = _campaign(access, campaign_id)
    action = request.POST.get("action")
    try:
        if action == "bootstrap":
            services.ratings_bootstrap_start(actor=request.user, campaign=campaign)
            messages.success(request, "Bootstrap queued (1000 rounds).")
        elif action == "close":
            services.campaign_close(actor=request.user, campaign=campaign)
            messages.success(request, "Campaign closed; final bootstrap queued.")
        elif action in ("exclude", "include"):
            services.rater_set_excluded(
                actor=request.user,
                campaign=campaign,
                reviewer_id=_int_or_zero(request.POST.get("reviewer", "")),
                excluded=action == "exclude",
            )
        elif action == "export":
            snapshot = services.campaign_export_preferences(
                actor=request.user, campaign=campaign, name=request.POST.get("name", "")
            )
            messages.success(request, f"Preference snapshot {snapshot} created.")
        else:
            raise ValidationError(f"Unknown action {action!r}.")
    except ValidationError as error:
        messages.error(request, _messages(error))
    return redirect("evaluation:results", project_id=access.project.pk, campaign_id=campaign.pk)
