import sys

from django.contrib import messages
from django.contrib.auth import login, update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.templatetags.static import static
from django.views import defaults
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from annotation import selectors as annotation_selectors
from core import selectors, services
from core.access import project_page
from core.api_errors import RETRY_AFTER_SECONDS, DatabaseUnavailable, database_unavailable
from core.forms import form_submit
from core.models import Membership, Role, RoleSet
from core.selectors import ProjectAccess
from governance import selectors as governance_selectors
from portal.forms import (
    ApiKeyCreateForm,
    MemberAddForm,
    PortalPasswordChangeForm,
    ProjectForm,
    SignupForm,
    SignupToggleForm,
    UserCreateForm,
)
from portal.journey import journey_is_moving, project_journey


def server_error(request: HttpRequest) -> HttpResponse:
    """Django's 500 handler (handler500), which also sees errors raised in middleware.
    A database out of reach answers 503 with Retry-After instead: a plain page for
    browsers (the usual one needs the database), the API's error shape under /api/."""
    exc = sys.exc_info()[1]
    if exc is None or not database_unavailable(exc):
        return defaults.server_error(request)
    retry = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if request.path.startswith("/api/"):
        detail = {"detail": DatabaseUnavailable.default_detail}
        return JsonResponse(detail, status=503, headers=retry)
    page = render_to_string("503.html", {"retry_after": RETRY_AFTER_SECONDS})
    return HttpResponse(page, status=503, headers=retry)


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


# The main navigation's work links: the queue they open, the role they need, and the count
# of open_work_counts that says a project has work waiting there.
WORK_QUEUES = {
    "annotate": (Role.ANNOTATOR, "annotation:annotate", "to_label"),
    "adjudicate": (Role.ADJUDICATOR, "annotation:adjudicate", "to_adjudicate"),
    "review": (Role.REVIEWER, "evaluation:review_home", ""),
}


@require_GET
def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask for /favicon.ico whatever the page links; answer with the SVG one."""
    return redirect(static("img/favicon.svg"), permanent=True)


@login_required
@require_GET
def work_queue(request: HttpRequest, queue: str) -> HttpResponse:
    """The navigation's Annotate / Adjudicate / Review link: straight to the queue of the
    first of the user's projects with work waiting there (else their first such project)."""
    if queue not in WORK_QUEUES:
        raise Http404("no such queue")
    role, url_name, count = WORK_QUEUES[queue]
    projects = [
        p.project for p in selectors.project_list_for_user(user=request.user) if p.has(role)
    ]
    if not projects:
        return redirect("home")
    chosen = projects[0]
    if count:
        for project in projects:
            work = annotation_selectors.open_work_counts(project=project, user=request.user)
            if work[count]:
                chosen = project
                break
    return redirect(url_name, chosen.pk)


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    projects = selectors.project_list_for_user(user=request.user)
    roles_held = {role for p in projects for role in p.roles}
    for entry in projects:
        if entry.has(Role.ANNOTATOR) or entry.has(Role.ADJUDICATOR):
            entry.work = annotation_selectors.open_work_counts(
                project=entry.project, user=request.user
            )
    if Role.COMPLIANCE in roles_held:
        signoffs = governance_selectors.signoff_rows_for_user(user=request.user)
        for entry in projects:
            entry.versions = signoffs.get(entry.project.pk, [])
    context = {
        "projects": projects,
        "roles_held": roles_held,
        "Role": Role,
    }
    template = "portal/home.html#projects" if request.htmx else "portal/home.html"
    return render(request, template, context)


@require_GET
@project_page(RoleSet.MEMBERS)
def project_detail(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    """The project's page: links for the caller's roles and where the project stands (the
    journey card refreshes itself while training or a dossier build runs)."""
    stages = project_journey(project=access.project, roles=set(access.roles))
    context = {
        "access": access,
        "project": access.project,
        "stages": stages,
        "journey_moving": journey_is_moving(stages),
    }
    template = "portal/project_detail.html"
    return render(request, f"{template}#journey" if request.htmx else template, context)


@login_required
@require_http_methods(["GET", "POST"])
def project_create(request: HttpRequest) -> HttpResponse:
    if not request.user.is_staff:
        raise PermissionDenied("Only portal administrators create projects.")
    form = ProjectForm(request.POST or None)
    if request.method == "POST":
        project = form_submit(
            form, lambda data: services.project_create(created_by=request.user, **data)
        )
        if project is not None:
            messages.success(
                request, f"Project {project.name} created; you are its admin and an engineer."
            )
            return redirect("project_members", project_id=project.pk)
    return render(request, "portal/project_create.html", {"form": form})


def _members_context(request: HttpRequest, access, form: MemberAddForm) -> dict:
    return {
        "access": access,
        "project": access.project,
        "members": selectors.memberships_by_user_for_project(project=access.project),
        "form": form,
        "Role": Role,
    }


@require_http_methods(["GET", "POST"])
@project_page(RoleSet.ADMINS)
def project_members(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    form = MemberAddForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = selectors.user_addable_get(username=form.cleaned_data["username"], by=request.user)
        if user is None:
            form.add_error("username", "No active account has that username.")
        else:
            services.membership_set_roles(
                project=access.project,
                user=user,
                changed_by=request.user,
                roles=set(form.cleaned_data["roles"])
                | set(
                    Membership.objects.filter(project=access.project, user=user).values_list(
                        "role", flat=True
                    )
                ),
            )
            messages.success(request, f"{user.username} now has those roles.")
            form = MemberAddForm()
    context = _members_context(request, access, form)
    template = (
        "portal/project_members.html#members" if request.htmx else ("portal/project_members.html")
    )
    return render(request, template, context)


@require_POST
@project_page(RoleSet.ADMINS)
def membership_remove(
    request: HttpRequest, access: ProjectAccess, membership_id: int
) -> HttpResponse:
    membership = get_object_or_404(Membership, pk=membership_id, project=access.project)
    try:
        services.membership_remove(membership=membership, removed_by=request.user)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    if request.htmx:
        context = _members_context(request, access, MemberAddForm())
        return render(request, "portal/project_members.html#members", context)
    return redirect("project_members", project_id=access.project.pk)


@login_required
@require_http_methods(["GET", "POST"])
def people(request: HttpRequest) -> HttpResponse:
    if not request.user.is_staff:
        raise PermissionDenied("Only portal administrators manage accounts.")
    form = UserCreateForm(request.POST or None)
    if request.method == "POST":
        user = form_submit(form, lambda data: services.user_create(created_by=request.user, **data))
        if user is not None:
            messages.success(request, f"Account {user.username} created.")
            return redirect("people")
    context = {
        "form": form,
        "users": selectors.user_list_active(),
        "site": services.site_settings_get(),
    }
    return render(request, "portal/people.html", context)


@login_required
@require_POST
def signup_toggle(request: HttpRequest) -> HttpResponse:
    form = SignupToggleForm(request.POST)
    row = services.site_settings_set_signup(
        open_=form.is_valid() and form.cleaned_data["open"] == "1", changed_by=request.user
    )
    messages.success(request, "Sign-up is now " + ("open." if row.signup_open else "closed."))
    return redirect("people")


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if not services.site_settings_get().signup_open:
        return render(request, "registration/signup_closed.html", status=403)
    form = SignupForm(request.POST or None)
    if request.method == "POST":
        user = form_submit(form, lambda data: services.user_signup(**data))
        if user is not None:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            return redirect("home")
    return render(request, "registration/signup.html", {"form": form})


def _account_context(request: HttpRequest, **extra) -> dict:
    return {
        "form": PortalPasswordChangeForm(request.user),
        "key_form": ApiKeyCreateForm(),
        "api_keys": selectors.api_key_list_for_user(user=request.user),
        **extra,
    }


def _render_account(request: HttpRequest, status: int = 200, **extra) -> HttpResponse:
    template = "portal/account.html#api-keys" if request.htmx else "portal/account.html"
    return render(request, template, _account_context(request, **extra), status=status)


@login_required
@require_http_methods(["GET", "POST"])
def account(request: HttpRequest) -> HttpResponse:
    form = PortalPasswordChangeForm(request.user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        services.user_password_change(
            user=request.user, new_password=form.cleaned_data["new_password1"]
        )
        update_session_auth_hash(request, request.user)
        messages.success(request, "Password changed; your API keys were revoked.")
        return redirect("account")
    return render(request, "portal/account.html", {**_account_context(request), "form": form})


@never_cache  # the answer holds a secret: no cache, no back-button copy
@login_required
@require_POST
def api_key_create(request: HttpRequest) -> HttpResponse:
    """Make a key and show its secret this once (it is stored only as a hash)."""
    key_form = ApiKeyCreateForm(request.POST)
    made = form_submit(key_form, lambda data: services.api_key_create(user=request.user, **data))
    if made is not None:
        key, raw = made
        return _render_account(request, new_key=key, new_secret=raw)
    # htmx swaps only 2xx answers; a plain form post gets the 400 it deserves.
    return _render_account(request, status=200 if request.htmx else 400, key_form=key_form)


@login_required
@require_POST
def api_key_revoke(request: HttpRequest, key_id: int) -> HttpResponse:
    key = selectors.api_key_get_for_user(user=request.user, key_id=key_id)
    services.api_key_revoke(key=key, revoked_by=request.user)
    return _render_account(request)
