"""Pages for compliance staff: model versions with gates, approvals and dossiers; the audit
log and the access log; dossier download and verification. Compliance users read, download
and sign off; every other write here needs the engineer or admin role (the services check
it too)."""

import io
import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from dossier_verify.keyset import keyset_document

from core import keys
from core.access import project_page
from core.client_ip import client_ip_get
from core.forms import form_errors_text, form_submit
from core.models import RoleSet
from core.selectors import ProjectAccess, project_access_get
from core.signing import public_key_pem
from core.spreadsheets import csv_writer
from governance import selectors
from governance.forms import (
    DossierVerifyForm,
    PromoteForm,
    RollbackForm,
    SignOffForm,
    UseDeclarationForm,
)
from governance.models import Dossier, SignOffRole
from governance.services import approvals, dossiers, stages


def _version_or_404(request, version_id):
    row = selectors.version_get_for_user(user=request.user, version_id=version_id)
    if row is None:
        raise Http404("No such model version.")
    access = project_access_get(project_id=row.version.project_id, user=request.user)
    return row, access


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()
    rows = selectors.version_rows_for_user(user=request.user, query=query)
    if (
        not rows
        and not query
        and not selectors.project_ids_for_user(user=request.user, roles=RoleSet.OVERSIGHT)
    ):
        raise PermissionDenied(
            "The compliance screens need the compliance, engineer or admin role."
        )
    return render(
        request,
        "governance/home.html",
        {"rows": rows, "query": query, "key_id": keys.signing_key_id()},
    )


def _version_context(request, row, access, **extra) -> dict:
    version = row.version
    return {
        "row": row,
        "version": version,
        "access": access,
        "can_promote": access.has(*RoleSet.MANAGERS),
        "next_stage": stages.NEXT_STAGE.get(version.stage),
        "signoff_roles": [
            (role.value, role.label)
            for role in SignOffRole
            if access.has(approvals.SIGNOFF_ROLE_NEEDS[role])
        ],
        "stage_changes": selectors.stage_changes_for_version(version=version),
        "declaration": selectors.use_declaration_for(version=version),
        **extra,
    }


@login_required
@require_GET
def version_detail(request: HttpRequest, version_id: int) -> HttpResponse:
    row, access = _version_or_404(request, version_id)
    template = "governance/version.html#dossier" if request.htmx else "governance/version.html"
    return render(request, template, _version_context(request, row, access))


def _refused(request, row, access, form) -> HttpResponse:
    return render(
        request,
        "governance/version.html",
        _version_context(request, row, access, error=form_errors_text(form)),
        status=400,
    )


@login_required
@require_POST
def signoff(request: HttpRequest, version_id: int) -> HttpResponse:
    row, access = _version_or_404(request, version_id)
    form = SignOffForm(request.POST)
    done = form_submit(
        form, lambda data: approvals.signoff_record(actor=request.user, version=row.version, **data)
    )
    if done is None:
        return _refused(request, row, access, form)
    messages.success(request, "Sign-off recorded.")
    return redirect("governance:version", version_id=version_id)


@login_required
@require_POST
def promote(request: HttpRequest, version_id: int) -> HttpResponse:
    row, access = _version_or_404(request, version_id)
    access.require(*RoleSet.MANAGERS)
    form = PromoteForm(request.POST)
    done = form_submit(
        form,
        lambda data: stages.model_version_stage_change(
            actor=request.user, version=row.version, to_stage=data["stage"], reason=data["reason"]
        ),
    )
    if done is None:
        return _refused(request, row, access, form)
    messages.success(request, f"{row.version} is now {form.cleaned_data['stage']}.")
    return redirect("governance:version", version_id=version_id)


@require_POST
@project_page(RoleSet.MANAGERS)
def rollback(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    form = RollbackForm(request.POST)
    restored = form_submit(
        form,
        lambda data: stages.model_version_rollback(
            actor=request.user, project=access.project, reason=data["reason"]
        ),
    )
    if restored is None:
        messages.error(request, form_errors_text(form))
        return redirect("governance:home")
    messages.success(request, f"Production rolled back to {restored}.")
    return redirect("governance:version", version_id=restored.pk)


@login_required
@require_POST
def declare(request: HttpRequest, version_id: int) -> HttpResponse:
    row, access = _version_or_404(request, version_id)
    access.require(*RoleSet.MANAGERS)
    form = UseDeclarationForm(request.POST)
    done = form_submit(
        form,
        lambda data: approvals.use_declaration_set(actor=request.user, version=row.version, **data),
    )
    if done is None:
        return _refused(request, row, access, form)
    messages.success(request, "Intended use recorded.")
    return redirect("governance:version", version_id=version_id)


@login_required
@require_POST
def dossier_request(request: HttpRequest, version_id: int) -> HttpResponse:
    row, access = _version_or_404(request, version_id)
    access.require(*RoleSet.OVERSIGHT)
    dossiers.dossier_request(actor=request.user, version=row.version)
    if request.htmx:
        row, access = _version_or_404(request, version_id)
        return render(
            request, "governance/version.html#dossier", _version_context(request, row, access)
        )
    return redirect("governance:version", version_id=version_id)


@login_required
@require_GET
def dossier_download(request: HttpRequest, dossier_id: int) -> FileResponse:
    dossier = selectors.dossier_get_for_user(user=request.user, dossier_id=dossier_id)
    if dossier is None or dossier.status != Dossier.Status.SUCCEEDED:
        raise Http404("No such dossier, or it is not built yet.")
    project_access_get(project_id=dossier.project_id, user=request.user).require(*RoleSet.OVERSIGHT)
    try:
        handle = open(dossier.file_path, "rb")  # noqa: SIM115 - FileResponse closes it
    except OSError:
        raise Http404("The dossier file is gone; request it again to rebuild it.") from None
    dossiers.dossier_download_record(
        actor=request.user,
        dossier=dossier,
        ip_address=client_ip_get(request),
        user_agent=request.META.get("HTTP_USER_AGENT", ""),
    )
    return FileResponse(
        handle, as_attachment=True, filename=dossier.file_name, content_type="application/zip"
    )


@login_required
@require_http_methods(["GET", "POST"])
def verify(request: HttpRequest) -> HttpResponse:
    if not selectors.project_ids_for_user(user=request.user, roles=RoleSet.OVERSIGHT):
        raise PermissionDenied("Verifying dossiers needs the compliance, engineer or admin role.")
    context: dict = {"key_id": keys.signing_key_id()}
    status = 200
    if request.method == "POST":
        form = DossierVerifyForm(request.POST, request.FILES)
        if not form.is_valid():
            context["error"] = form_errors_text(form)
            status = 400
        else:
            upload = form.cleaned_data["dossier"]
            # Read in pieces from the upload's temporary file, never whole.
            context["report"] = dossiers.dossier_verify(data=upload.file)
            context["file_name"] = upload.name
    return render(request, "governance/verify.html", context, status=status)


def _public(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "public, max-age=300"
    response["Access-Control-Allow-Origin"] = "*"  # public keys: any page may read them
    return response


@require_GET
def published_keys(request: HttpRequest) -> HttpResponse:
    """The portal's public keys, current and retired, for auditors without an account:
    `dossier-verify --keys-url` reads this. No log-in, by design."""
    document = keyset_document(selectors.published_key_list())
    for entry in document["keys"]:
        entry["pem_url"] = request.build_absolute_uri(
            reverse("published_key_pem", args=[entry["key_id"]])
        )
    return _public(JsonResponse(document, json_dumps_params={"indent": 2}))


@require_GET
def published_key_pem(request: HttpRequest, key_id: str) -> HttpResponse:
    key = next((k for k in selectors.published_key_list() if k.key_id == key_id), None)
    if key is None:
        raise Http404("This portal publishes no key with that id.")
    return _public(HttpResponse(public_key_pem(key.key), content_type="application/x-pem-file"))


@login_required
@require_GET
def public_key(request: HttpRequest) -> HttpResponse:
    pem = public_key_pem(keys.signing_key().public_key())
    return HttpResponse(pem, content_type="application/x-pem-file")


AUDIT_EXPORT_FIELDS = [
    "seq",
    "created_at",
    "project_id",
    "actor_username",
    "action",
    "target_type",
    "target_id",
    "data",
    "prev_hash",
    "hash",
]


@login_required
@require_GET
def audit_log(request: HttpRequest) -> HttpResponse:
    if not selectors.project_ids_for_user(user=request.user, roles=RoleSet.AUDITORS):
        raise PermissionDenied("The audit log needs the compliance or admin role.")
    filters = {k: request.GET.get(k, "").strip() for k in selectors.AUDIT_SCREEN_FILTERS}
    export = request.GET.get("export", "")
    try:
        events = selectors.audit_event_list_for_user(user=request.user, filters=filters)
    except ValueError as error:
        return render(
            request,
            "governance/audit.html",
            {"error": str(error), "filters": filters, "projects": _audit_projects(request)},
            status=400,
        )
    if export in ("csv", "jsonl"):
        return _audit_export(events, export)
    page = Paginator(events, 100).get_page(request.GET.get("page"))
    query = "&".join(f"{k}={v}" for k, v in filters.items() if v)
    return render(
        request,
        "governance/audit.html",
        {"page": page, "filters": filters, "query": query, "projects": _audit_projects(request)},
    )


def _audit_projects(request):
    return selectors.audit_projects_for_user(user=request.user)


def _audit_export(events, fmt: str) -> HttpResponse:
    rows = events.order_by("seq").values_list(*AUDIT_EXPORT_FIELDS)
    out = io.StringIO()
    if fmt == "csv":
        writer = csv_writer(out, lineterminator="\n")
        writer.writerow(AUDIT_EXPORT_FIELDS)
        for row in rows.iterator(chunk_size=2000):
            writer.writerow([json.dumps(v) if isinstance(v, dict) else v for v in row])
        content_type = "text/csv"
    else:
        for row in rows.iterator(chunk_size=2000):
            out.write(json.dumps(dict(zip(AUDIT_EXPORT_FIELDS, row, strict=True)), default=str))
            out.write("\n")
        content_type = "application/x-ndjson"
    response = HttpResponse(out.getvalue(), content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="audit-log.{fmt}"'
    return response


@login_required
@require_GET
def access_log(request: HttpRequest) -> HttpResponse:
    if not selectors.project_ids_for_user(user=request.user, roles=RoleSet.AUDITORS):
        raise PermissionDenied("The access log needs the compliance or admin role.")
    page = Paginator(selectors.download_list_for_user(user=request.user), 100).get_page(
        request.GET.get("page")
    )
    return render(request, "governance/access_log.html", {"page": page})
