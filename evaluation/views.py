"""Pages for blind review (reviewers) and for campaigns, results, metrics and gates
(engineers, compliance, admins)."""

from functools import partial
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from annotation.conversations import display_turns, prompt_text
from core import charts
from core.access import project_page
from core.forms import (
    WhichForm,
    form_errors_text,
    form_submit,
)
from core.models import Role, RoleSet
from core.selectors import ProjectAccess
from evaluation import selectors, services
from evaluation.forms import (
    CampaignActionForm,
    CampaignForm,
    ContestantForm,
    GateForm,
    GateRunForm,
    GenerationForm,
    JudgmentForm,
    MetricRunForm,
    OutputFilterForm,
    PromptSetFromSnapshotForm,
    PromptSetUploadForm,
    gate_check_formset,
)
from evaluation.models import Campaign, Generation
from evaluation.selectors import listing
from evaluation.selectors.compare import version_comparison
from training.selectors.compare import compare_ids

JOBS_SHOWN = 50
GATE_RUNS_SHOWN = 20
OUTPUTS_SHOWN = 25


def _campaign(access, campaign_id) -> Campaign:
    try:
        return selectors.campaign_get(project=access.project, campaign_id=campaign_id)
    except Campaign.DoesNotExist:
        raise Http404("No such campaign.") from None


# --- reviewers ---------------------------------------------------------------------------------


@require_GET
@project_page(RoleSet.REVIEWERS)
def review_home(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    campaigns = selectors.review_campaign_list(project=access.project, reviewer=request.user)
    return render(
        request,
        "evaluation/review_home.html",
        {"project": access.project, "campaigns": campaigns},
    )


# How the confirmation names a saved verdict (the outcomes of JudgmentForm).
VERDICT_WORDS = {"a": "A is better", "b": "B is better", "tie": "Tie", "both_bad": "Both bad"}


def _render_pair(request, access, campaign, error=None, saved="") -> HttpResponse:
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
        "saved": saved,
    }
    template = "evaluation/review.html#pair" if request.htmx else "evaluation/review.html"
    response = render(request, template, context)
    response["Cache-Control"] = "no-store"
    return response


@require_GET
@project_page(RoleSet.REVIEWERS)
def review(request: HttpRequest, access: ProjectAccess, campaign_id: int) -> HttpResponse:
    return _render_pair(request, access, _campaign(access, campaign_id))


@require_POST
@project_page(RoleSet.REVIEWERS)
def review_submit(request: HttpRequest, access: ProjectAccess, campaign_id: int) -> HttpResponse:
    campaign = _campaign(access, campaign_id)
    form = JudgmentForm(request.POST)
    judgment = form_submit(
        form,
        lambda data: services.judgment_submit(
            campaign=campaign,
            reviewer=request.user,
            token=data["token"],
            outcome=data["outcome"],
            criteria=data["criteria"],
            rationale=data["rationale"],
            seconds_spent=data["seconds"],
            unsafe_a=data["unsafe_a"],
            unsafe_b=data["unsafe_b"],
        ),
    )
    if judgment is None:
        return _render_pair(request, access, campaign, error=form_errors_text(form))
    saved = VERDICT_WORDS.get(form.cleaned_data["outcome"], form.cleaned_data["outcome"])
    return _render_pair(request, access, campaign, saved=saved)


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
        "error": error or form_errors_text(*bound.values(), by_label=True),
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


def _back_to(access: ProjectAccess, section: str) -> HttpResponse:
    return redirect(reverse("evaluation:overview", args=[access.project.pk]) + f"#{section}")


@require_http_methods(["GET", "POST"])
@project_page({"GET": RoleSet.OVERSIGHT, "POST": RoleSet.ENGINEERS})
def overview(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    error = None
    if request.method == "POST":
        error = _overview_post(request, access.project)
        if error is None:
            return redirect("evaluation:overview", project_id=access.project.pk)
    return _render_overview(request, access, error=error)


@require_GET
@project_page(RoleSet.OVERSIGHT)
def generation_jobs(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    """The generation jobs table alone, which the overview polls while a job may change."""
    context = {"project": access.project, **_generation_jobs_context(access.project)}
    return render(request, "evaluation/overview.html#generation_jobs", context)


@require_POST
@project_page(RoleSet.ENGINEERS)
def prompt_set_from_snapshot(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    form = PromptSetFromSnapshotForm(request.POST, project=access.project)
    prompt_set = form_submit(
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


@require_POST
@project_page(RoleSet.ENGINEERS)
def contestant_create(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    form = ContestantForm(request.POST, project=access.project)
    contestant = form_submit(
        form,
        lambda data: services.contestant_create(actor=request.user, project=access.project, **data),
    )
    if contestant is None:
        return _render_overview(request, access, contestant_form=form)
    messages.success(request, f"Contestant {contestant.label} added.")
    return _back_to(access, "contestants")


@require_POST
@project_page(RoleSet.ENGINEERS)
def generation_start(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    form = GenerationForm(request.POST, project=access.project)
    jobs = form_submit(
        form,
        lambda data: services.generation_jobs_start(actor=request.user, **data),
        aliases={"contestant": "contestants", "decoding": "temperature"},
    )
    if jobs is None:
        return _render_overview(request, access, generation_form=form)
    messages.success(request, f"{len(jobs)} generation job(s) queued.")
    return _back_to(access, "generations")


@require_POST
@project_page(RoleSet.ENGINEERS)
def metric_runs_start(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    form = MetricRunForm(request.POST, project=access.project)
    runs = form_submit(form, lambda data: services.metric_runs_start(actor=request.user, **data))
    if runs is None:
        return _render_overview(request, access, metric_form=form)
    messages.success(request, f"{len(runs)} metric run(s) queued.")
    return _back_to(access, "metrics")


@require_POST
@project_page(RoleSet.ENGINEERS)
def gate_create(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    form = GateForm(request.POST)
    checks = gate_check_formset(request.POST, project=access.project)
    gate = None
    if checks.is_valid():
        gate = form_submit(
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


@require_POST
@project_page(RoleSet.ENGINEERS)
def gate_run(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    form = GateRunForm(request.POST, project=access.project)
    run = form_submit(
        form,
        lambda data: services.gate_run(actor=request.user, **data),
    )
    if run is None:
        return _render_overview(request, access, gate_run_form=form)
    outcome = "passed" if run.passed else "failed"
    say = messages.success if run.passed else messages.warning
    say(request, f"Gate {run.gate.name} {outcome} for {run.candidate.label}.")
    return _back_to(access, "gates")


def _prompt_set_upload(request: HttpRequest, project, data: dict[str, Any]):
    return services.prompt_set_create(
        actor=request.user,
        project=project,
        name=data["name"],
        rows=data["file"],
        adversarial=data["adversarial"],
        general=data["general"],
        license=data["license"],
        synthetic=data["synthetic"],
    )


def _campaign_create(request: HttpRequest, project, data: dict[str, Any]):
    return services.campaign_create(
        actor=request.user,
        project=project,
        name=data["name"],
        prompt_set=selectors.prompt_set_get(project=project, prompt_set_id=data["prompt_set"]),
        contestants=list(data["contestants"]),
        question=data["question"],
        raters_per_pair=data["raters_per_pair"] or 1,
        rater_quota=data["rater_quota"] or 0,
        pair_selection=data["pair_selection"] or "all",
    )


def _overview_post(request: HttpRequest, project) -> str | None:
    """Upload a prompt set or start a campaign (the overview's `action` input): the
    refusal as one line, or None when it was done."""
    action = WhichForm(request.POST).chosen("action")
    if action == "prompt_set":
        form = PromptSetUploadForm(request.POST, request.FILES)
        done = form_submit(form, partial(_prompt_set_upload, request, project))
    elif action == "campaign":
        form = CampaignForm(request.POST, project=project)
        done = form_submit(form, partial(_campaign_create, request, project))
    else:
        return f"Unknown action {action!r}."
    return form_errors_text(form) if done is None else None


@require_GET
@project_page(RoleSet.OVERSIGHT)
def results(request: HttpRequest, access: ProjectAccess, campaign_id: int) -> HttpResponse:
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


@require_GET
@project_page(RoleSet.OVERSIGHT)
def version_compare(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    comparison = version_comparison(
        project=access.project, version_ids=compare_ids(request.GET.getlist("versions"))
    )
    rating_charts = [
        (
            ratings,
            charts.interval_chart(
                rows=ratings.rows,
                title=f"{ratings.campaign.name}: rating with 95% interval",
                x_label="rating (Elo-like scale, mean 1000)",
            ),
        )
        for ratings in comparison.ratings
    ]
    job_ids = [v.job_id for v in comparison.versions if v.job_id]
    context = {
        "access": access,
        "project": access.project,
        "comparison": comparison,
        "rating_charts": rating_charts,
        "job_query": "&".join(f"jobs={pk}" for pk in job_ids) if len(job_ids) > 1 else "",
    }
    return render(request, "evaluation/compare.html", context)


def _campaign_act(request: HttpRequest, campaign: Campaign, data: dict[str, Any]) -> str:
    """Do what the results page's button asked; what to tell the engineer ("" for nothing)."""
    action = data["action"]
    if action == "bootstrap":
        services.ratings_bootstrap_start(actor=request.user, campaign=campaign)
        return "Bootstrap queued (1000 rounds)."
    if action == "close":
        services.campaign_close(actor=request.user, campaign=campaign)
        return "Campaign closed; final bootstrap queued."
    if action in ("exclude", "include"):
        services.rater_set_excluded(
            actor=request.user,
            campaign=campaign,
            reviewer_id=data["reviewer"],
            excluded=action == "exclude",
        )
        return ""
    if action == "export":
        snapshot = services.campaign_export_preferences(
            actor=request.user, campaign=campaign, name=data["name"]
        )
        return f"Preference snapshot {snapshot} created."
    raise ValidationError(f"Unknown action {action!r}.")


@require_POST
@project_page(RoleSet.ENGINEERS)
def campaign_action(request: HttpRequest, access: ProjectAccess, campaign_id: int) -> HttpResponse:
    campaign = _campaign(access, campaign_id)
    form = CampaignActionForm(request.POST)
    said = form_submit(form, partial(_campaign_act, request, campaign))
    if said is None:
        messages.error(request, form_errors_text(form))
    elif said:
        messages.success(request, said)
    return redirect("evaluation:results", project_id=access.project.pk, campaign_id=campaign.pk)


@require_GET
@project_page(RoleSet.OVERSIGHT)
def outputs(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    """Generated outputs beside their prompts and references, filtered as the API's
    generation-outputs/ is; the same selector leaves out what the caller may not see."""
    project = access.project
    form = OutputFilterForm(request.GET)
    if form.is_valid():
        rows = listing.generation_output_list_for_user(access=access, **form.filters())
        page = Paginator(rows, OUTPUTS_SHOWN).get_page(request.GET.get("page"))
    else:
        page = None
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "project": project,
        "form": form,
        "page": page,
        "rows": [_output_row(generation) for generation in page] if page else [],
        "query": query.urlencode(),
        "error": form_errors_text(form),
        "contestants": selectors.contestant_list_for_project(project=project),
        "withheld": listing.generation_outputs_withheld(access=access),
    }
    return render(request, "evaluation/outputs.html", context)


def _output_row(generation: Generation) -> dict[str, Any]:
    prompt = generation.prompt
    return {
        "generation": generation,
        "prompt": prompt_text(prompt.text),
        "turns": display_turns(prompt.text),
        "reference": prompt_text(prompt.reference or ""),
    }
