"""Pages of the serving app: a project's deployments, the form that creates one, and the
deployment page (arms, actions, settings, gateway keys, the decision history and live
charts). Engineers and admins change deployments; compliance reads."""

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from core.access import project_page
from core.forms import form_errors_text, form_submit
from core.models import RoleSet
from core.selectors import ProjectAccess
from serving import selectors
from serving.charts import deployment_charts
from serving.forms import (
    SETTINGS_ALIASES,
    DeploymentCreateForm,
    KeyCreateForm,
    PlaceForm,
    ReweightForm,
    RolloutForm,
    SettingsForm,
)
from serving.models import Deployment
from serving.selectors.series import DEFAULT_WINDOW, WINDOWS, deployment_series, window_totals
from serving.services import deployments as services
from training.models import JobKind, ModelVersion
from training.selectors import base_model_list_for_project, model_version_list_for_project

# How often the page asks for fresh chart data (static/js/serving.js reads it).
LIVE_INTERVAL_MS = 3000


def _placeable_versions(project) -> list[ModelVersion]:
    # The services decide which stage fits which arm; the list offers only what could fit.
    stages = (
        ModelVersion.Stage.CANDIDATE,
        ModelVersion.Stage.CANARY,
        ModelVersion.Stage.PRODUCTION,
    )
    return list(model_version_list_for_project(project=project).filter(stage__in=stages))


def _classifier_versions(project) -> list[ModelVersion]:
    # A guardrail classifier is a reward model (a sequence classifier) of the project.
    return list(model_version_list_for_project(project=project).filter(task=JobKind.REWARD))


@require_GET
@project_page(RoleSet.OVERSIGHT)
def deployment_list(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    context = {
        "access": access,
        "project": access.project,
        "deployments": list(selectors.deployment_list_for_project(project=access.project)),
        "can_manage": access.has(*RoleSet.MANAGERS),
    }
    return render(request, "serving/deployments.html", context)


@require_http_methods(["GET", "POST"])
@project_page({"GET": RoleSet.MANAGERS, "POST": RoleSet.MANAGERS})
def deployment_create(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    project = access.project
    versions = model_version_list_for_project(project=project).filter(
        stage=ModelVersion.Stage.PRODUCTION
    )
    bases = base_model_list_for_project(project=project)
    options = {"versions": list(versions), "base_models": list(bases)}
    form = DeploymentCreateForm(request.POST or None, **options)
    if request.method == "POST":
        created = form_submit(
            form,
            lambda data: services.deployment_create(
                actor=request.user,
                project=project,
                name=data["name"],
                engine=data["engine"],
                description=data["description"],
                settings={
                    "price_per_1k_tokens": data["price_per_1k_tokens"],
                    "price_per_gpu_hour": data["price_per_gpu_hour"],
                },
                **form.stable_objects(),
            ),
            aliases={"stable_version": "stable", "stable_base_model": "stable"},
        )
        if created is not None:
            messages.success(request, f"Deployment {created.name} created.")
            return redirect("serving:deployment", project_id=project.pk, deployment_id=created.pk)
    context = {
        "access": access,
        "project": project,
        "form": form,
        "error": form_errors_text(form) if form.is_bound else None,
    }
    return render(request, "serving/deployment_new.html", context)


def _window(request: HttpRequest) -> str:
    window = request.GET.get("window", DEFAULT_WINDOW)
    return window if window in WINDOWS else DEFAULT_WINDOW


def _charts_payload(deployment: Deployment, window: str) -> dict:
    series = deployment_series(deployment=deployment, window=window)
    return {
        "window": window,
        "charts": {key: chart.payload() for key, chart in deployment_charts(series).items()},
    }


def _context(request: HttpRequest, access: ProjectAccess, deployment: Deployment, **forms):
    """The page's context; `forms` replaces a blank form by the bound one being answered."""
    project = access.project
    versions = _placeable_versions(project)
    window = _window(request)
    series = deployment_series(deployment=deployment, window=window)
    can_manage = access.has(*RoleSet.MANAGERS)
    return {
        "access": access,
        "project": project,
        "deployment": deployment,
        "can_manage": can_manage,
        "stable_share": 100 - deployment.canary_weight if deployment.canary_version_id else 100,
        "charts": deployment_charts(series),
        "totals": window_totals(series),
        "window": window,
        "windows": list(WINDOWS),
        "live_interval_ms": LIVE_INTERVAL_MS,
        "keys": list(selectors.deployment_key_list(deployment=deployment)),
        "decisions": list(selectors.deployment_decisions(deployment=deployment)[:100]),
        "place_form": forms.get("place_form") or PlaceForm(versions=versions),
        "reweight_form": forms.get("reweight_form")
        or ReweightForm(initial={"weight": deployment.canary_weight}),
        "rollout_form": forms.get("rollout_form") or RolloutForm(),
        "settings_form": forms.get("settings_form")
        or SettingsForm.for_deployment(deployment, classifiers=_classifier_versions(project)),
        "key_form": forms.get("key_form") or KeyCreateForm(),
        "error": forms.get("error"),
        "new_key": forms.get("new_key"),
        "new_secret": forms.get("new_secret"),
        "gateway_url": request.build_absolute_uri("/v1"),
    }


@require_GET
@project_page(RoleSet.OVERSIGHT)
def deployment_detail(
    request: HttpRequest, access: ProjectAccess, deployment_id: int
) -> HttpResponse:
    deployment = selectors.deployment_get(project=access.project, deployment_id=deployment_id)
    part = request.GET.get("part")
    if part == "charts":
        return JsonResponse(_charts_payload(deployment, _window(request)))
    context = _context(request, access, deployment)
    if request.htmx and part in ("arms", "decisions", "keys"):
        return render(request, f"serving/deployment.html#{part}", context)
    return render(request, "serving/deployment.html", context)


def _answer(request, access, deployment, *, done: str | None, **forms) -> HttpResponse:
    """After an action: back to the page on success; the page with the refused form (its
    errors on the fields they name) otherwise."""
    if done is not None:
        messages.success(request, done)
        return redirect(
            "serving:deployment", project_id=access.project.pk, deployment_id=deployment.pk
        )
    bound = next(iter(forms.values()))
    context = _context(request, access, deployment, error=form_errors_text(bound), **forms)
    return render(request, "serving/deployment.html", context, status=400)


@require_POST
@project_page(RoleSet.MANAGERS)
def deployment_place(request: HttpRequest, access: ProjectAccess, deployment_id: int):
    deployment = selectors.deployment_get(project=access.project, deployment_id=deployment_id)
    form = PlaceForm(request.POST, versions=_placeable_versions(access.project))
    placed = form_submit(
        form,
        lambda data: services.deployment_place(
            actor=request.user,
            deployment=deployment,
            arm=data["arm"],
            version=form.version(),
            weight=data["weight"],
            reason=data["reason"],
        ),
    )
    done = None if placed is None else f"Placed on the {form.cleaned_data['arm']} arm."
    return _answer(request, access, deployment, done=done, place_form=form)


@require_POST
@project_page(RoleSet.MANAGERS)
def deployment_reweight(request: HttpRequest, access: ProjectAccess, deployment_id: int):
    deployment = selectors.deployment_get(project=access.project, deployment_id=deployment_id)
    form = ReweightForm(request.POST)
    changed = form_submit(
        form,
        lambda data: services.deployment_reweight(
            actor=request.user, deployment=deployment, weight=data["weight"], reason=data["reason"]
        ),
    )
    done = None if changed is None else f"The canary takes {changed.canary_weight} % of traffic."
    return _answer(request, access, deployment, done=done, reweight_form=form)


@require_POST
@project_page(RoleSet.MANAGERS)
def deployment_rollout(request: HttpRequest, access: ProjectAccess, deployment_id: int):
    deployment = selectors.deployment_get(project=access.project, deployment_id=deployment_id)
    form = RolloutForm(request.POST)
    changed = form_submit(
        form,
        lambda data: services.deployment_rollout_set(
            actor=request.user, deployment=deployment, action=data["action"], reason=data["reason"]
        ),
    )
    done = None if changed is None else f"Rollout {changed.get_rollout_display().lower()}."
    return _answer(request, access, deployment, done=done, rollout_form=form)


@require_POST
@project_page(RoleSet.MANAGERS)
def deployment_settings(request: HttpRequest, access: ProjectAccess, deployment_id: int):
    deployment = selectors.deployment_get(project=access.project, deployment_id=deployment_id)
    form = SettingsForm(request.POST, classifiers=_classifier_versions(access.project))
    changed = form_submit(
        form,
        lambda data: services.deployment_configure(
            actor=request.user, deployment=deployment, values=form.values(deployment)
        ),
        aliases=SETTINGS_ALIASES,
    )
    done = None if changed is None else "Settings saved."
    return _answer(request, access, deployment, done=done, settings_form=form)


@require_POST
@project_page(RoleSet.MANAGERS)
def deployment_key_create(request: HttpRequest, access: ProjectAccess, deployment_id: int):
    deployment = selectors.deployment_get(project=access.project, deployment_id=deployment_id)
    form = KeyCreateForm(request.POST)
    made = form_submit(
        form,
        lambda data: services.deployment_key_create(
            actor=request.user, deployment=deployment, **data
        ),
    )
    if made is None:
        return _answer(request, access, deployment, done=None, key_form=form)
    key, secret = made
    # The secret is in this answer only: no redirect (it would have to be stored to show
    # it), and no cache may keep the page.
    context = _context(request, access, deployment, new_key=key, new_secret=secret)
    response = render(request, "serving/deployment.html", context)
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@project_page(RoleSet.MANAGERS)
def deployment_key_revoke(
    request: HttpRequest, access: ProjectAccess, deployment_id: int, key_id: int
) -> HttpResponse:
    deployment = selectors.deployment_get(project=access.project, deployment_id=deployment_id)
    key = selectors.deployment_key_get(deployment=deployment, key_id=key_id)
    services.deployment_key_revoke(actor=request.user, key=key)
    messages.success(request, f"Key {key.prefix}… revoked.")
    return redirect("serving:deployment", project_id=access.project.pk, deployment_id=deployment.pk)
