"""Curation pages: quality checks and their reports, snapshots, comparisons and exports."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from annotation import pii, selectors
from annotation.forms import CURATION_FORMS, CheckActionForm, LeakageCheckForm
from annotation.models import Item, QualityCheck, Snapshot
from annotation.services import quality
from annotation.services.exports import export_formats_for, export_lines
from annotation.services.snapshots import snapshot_create
from core import charts
from core.access import project_page
from core.forms import WhichForm, form_errors_text, form_submit, validation_error_text
from core.models import Role, RoleSet
from core.selectors import ProjectAccess

# Reports show counts, spans and charts; the rows themselves only to engineers.
CURATION_PAGE = {"GET": RoleSet.OVERSIGHT, "POST": RoleSet.ENGINEERS}


def _start_check(request: HttpRequest, project, data: dict) -> HttpResponse:
    check = quality.quality_check_start(
        actor=request.user,
        project=project,
        kind=data["kind"],
        dataset=data["dataset"],
        params={"threshold": data["threshold"] or 0.8},
    )
    return redirect("annotation:check", project_id=project.pk, check_id=check.pk)


def _take_snapshot(request: HttpRequest, project, data: dict) -> HttpResponse:
    snapshot = snapshot_create(
        actor=request.user,
        project=project,
        name=data["name"],
        seed=data["seed"] or 0,
        split_ratios={s: data[s] for s in ("train", "validation", "test")},
        filter={"datasets": data["datasets"], "synthetic": data["synthetic"] or "include"},
    )
    return redirect("annotation:snapshot", project_id=project.pk, snapshot_id=snapshot.pk)


def _add_pii_rule(request: HttpRequest, project, data: dict) -> HttpResponse:
    quality.pii_rule_add(
        actor=request.user, project=project, name=data["name"], pattern=data["pattern"]
    )
    messages.success(request, "PII rule added; it applies to the next scan.")
    return redirect("annotation:curation", project_id=project.pk)


def _spot_check(request: HttpRequest, project, data: dict) -> HttpResponse:
    review = quality.synthetic_spot_check(
        actor=request.user, project=project, n=data["n"], seed=data["seed"] or 0
    )
    messages.success(
        request, f"{review.row_count} synthetic rows are first in the annotation queue."
    )
    return redirect("annotation:curation", project_id=project.pk)


def _chunk(request: HttpRequest, project, data: dict) -> HttpResponse:
    chunked = quality.dataset_chunk(
        actor=request.user,
        dataset=data["dataset"],
        field=data["field"],
        max_tokens=data["max_tokens"],
        overlap=data["overlap"] or 0,
    )
    return redirect("annotation:dataset", project_id=project.pk, dataset_id=chunked.pk)


# The curation page's forms (its hidden `form` input) and what each does.
CURATION_WRITES = {
    "check": _start_check,
    "snapshot": _take_snapshot,
    "pii_rule": _add_pii_rule,
    "spot_check": _spot_check,
    "chunk": _chunk,
}


def _handle_curation_post(request: HttpRequest, access: ProjectAccess) -> HttpResponse | None:
    """Where to go after a successful write; None after a refusal, shown as a message."""
    posted = WhichForm(request.POST).chosen("form")
    if posted not in CURATION_FORMS:
        messages.error(request, "form: unknown form")
        return None
    form = CURATION_FORMS[posted](request.POST, project=access.project)
    done = form_submit(form, lambda data: CURATION_WRITES[posted](request, access.project, data))
    if done is None:
        messages.error(request, form_errors_text(form))
    return done


@require_http_methods(["GET", "POST"])
@project_page(CURATION_PAGE)
def curation(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    if request.method == "POST":
        response = _handle_curation_post(request, access)
        if response is not None:
            return response
    project = access.project
    return render(
        request,
        "annotation/curation.html",
        {
            "access": access,
            "project": project,
            "checks": selectors.quality_check_list(project=project),
            "snapshots": selectors.snapshot_list_for_project(project=project),
            "datasets": selectors.dataset_list_for_project(project=project),
            "kinds": [k for k in QualityCheck.Kind.choices if k[0] != "leakage"],
            "rules": selectors.pii_rule_list(project=project),
        },
    )


def _histogram(data: dict, title: str, x_label: str):
    if not data or not data.get("counts"):
        return ""
    return charts.histogram(
        counts=data["counts"], edges=data["edges"], title=title, x_label=x_label
    )


def _highlighted(item: Item, spans: list[dict]) -> list[dict]:
    """Each PII-bearing field of an item with its spans marked, for engineers."""
    leaves = dict(pii.text_leaves(item.payload))
    fields = []
    for path in dict.fromkeys(s["path"] for s in spans):
        text = leaves.get(path, "")
        parts, last = [], 0
        for span in sorted((s for s in spans if s["path"] == path), key=lambda s: s["start"]):
            parts.append({"text": text[last : span["start"]], "kind": ""})
            parts.append({"text": text[span["start"] : span["end"]], "kind": span["kind"]})
            last = span["end"]
        parts.append({"text": text[last:], "kind": ""})
        fields.append({"path": path, "parts": parts})
    return fields


def _report_context(access: ProjectAccess, check: QualityCheck) -> dict:
    result = check.result or {}
    context: dict = {"charts": {}}
    engineer = access.has(Role.ENGINEER)
    if check.status != QualityCheck.Status.SUCCEEDED:
        return context
    if check.kind == "distributions":
        labels = result.get("labels", {})
        if labels:
            context["charts"]["labels"] = charts.bar_chart(
                categories=list(labels),
                values=list(labels.values()),
                title="Gold labels",
                y_label="items",
            )
        context["charts"]["chars"] = _histogram(
            result.get("chars"), "Length in characters", "characters"
        )
        context["charts"]["tokens"] = _histogram(
            result.get("tokens"), f"Length in tokens ({result.get('tokenizer')})", "tokens"
        )
    if check.kind == "synthetic":
        for measure, unit in (("chars", "characters"), ("tokens", "tokens")):
            data = result.get(measure) or {}
            for group in ("synthetic", "real"):
                if data.get(group):
                    context["charts"][f"{measure}_{group}"] = charts.histogram(
                        counts=data[group],
                        edges=data["edges"],
                        title=f"{group.title()} rows: {unit}",
                        x_label=unit,
                    )
    if check.kind in ("duplicates", "leakage"):
        groups = result.get("exact_clusters", []) + result.get("near_clusters", [])
        if check.kind == "leakage":
            found = (
                result.get("exact", []) + result.get("shared_prompt", []) + result.get("near", [])
            )
            groups = [g["items"] for g in found]
        shown = groups[:50]
        ids = {i for g in shown for i in g}
        restricted = (
            set() if engineer else selectors.datasets_with_unredacted_pii(project=access.project)
        )
        items = {
            i.pk: i
            for i in Item.objects.filter(project=access.project, pk__in=ids).exclude(
                dataset__in=restricted
            )
        }
        context["clusters"] = [[(i, items.get(i)) for i in g] for g in shown]
    if check.kind == "pii" and engineer:
        findings = result.get("findings", [])[:100]
        items = Item.objects.filter(project=access.project, pk__in=[f["item"] for f in findings])
        by_id = {i.pk: i for i in items}
        context["pii_rows"] = [
            {"item": by_id[f["item"]], "fields": _highlighted(by_id[f["item"]], f["spans"])}
            for f in findings
            if f["item"] in by_id
        ]
    return context


@require_http_methods(["GET", "POST"])
@project_page(CURATION_PAGE)
def check_report(request: HttpRequest, access: ProjectAccess, check_id: int) -> HttpResponse:
    check = selectors.quality_check_get(project=access.project, check_id=check_id)
    if check is None:
        raise Http404("No such check.")
    if request.method == "POST":
        form = CheckActionForm(request.POST)
        versions = form_submit(
            form,
            lambda data: (
                quality.duplicates_keep_one(actor=request.user, check=check)
                if data["action"] == "keep_one"
                else quality.pii_apply(actor=request.user, check=check, action=data["action"])
            ),
        )
        if versions is None:
            messages.error(request, form_errors_text(form))
        else:
            names = ", ".join(v.name for v in versions) or "no new versions (datasets retired)"
            messages.success(
                request, f"New dataset versions: {names}. The originals are kept, archived."
            )
        return redirect("annotation:check", project_id=access.project.pk, check_id=check.pk)
    finished = check.status in (QualityCheck.Status.SUCCEEDED, QualityCheck.Status.FAILED)
    context = {
        "access": access,
        "project": access.project,
        "check": check,
        "result": check.result,
        "finished": finished,
        "progress": charts.progress_bar(done=check.done, total=check.total, label="Items checked"),
        **_report_context(access, check),
    }
    template = "annotation/check.html#report" if request.htmx else "annotation/check.html"
    return render(request, template, context)


@require_http_methods(["GET", "POST"])
@project_page(CURATION_PAGE)
def snapshot_detail(request: HttpRequest, access: ProjectAccess, snapshot_id: int) -> HttpResponse:
    snapshot = selectors.snapshot_get(project=access.project, snapshot_id=snapshot_id)
    if snapshot is None:
        raise Http404("No such snapshot.")
    if request.method == "POST":
        form = LeakageCheckForm(request.POST)
        check = form_submit(
            form,
            lambda data: quality.quality_check_start(
                actor=request.user,
                project=access.project,
                kind="leakage",
                snapshot=snapshot,
                params={"threshold": data["threshold"] or 0.8},
            ),
        )
        if check is None:
            messages.error(request, form_errors_text(form))
        else:
            return redirect("annotation:check", project_id=access.project.pk, check_id=check.pk)
    if request.htmx:  # the checks card refreshing itself while leakage is checked
        return render(
            request,
            "annotation/snapshot.html#checks",
            {
                "access": access,
                "project": access.project,
                "snapshot": snapshot,
                "checks": selectors.snapshot_checks(snapshot=snapshot),
                "leakage": selectors.snapshot_leakage_status(snapshot=snapshot),
            },
        )
    comparison = other = None
    if request.GET.get("compare"):
        other = selectors.snapshot_get(
            project=access.project, snapshot_id=_safe_int(request.GET["compare"])
        )
        if other is None:
            raise Http404("No such snapshot to compare with.")
        comparison = selectors.snapshot_compare(old=other, new=snapshot)
    splits = snapshot.stats.get("splits", {})
    context = {
        "access": access,
        "project": access.project,
        "snapshot": snapshot,
        "checks": selectors.snapshot_checks(snapshot=snapshot),
        "leakage": selectors.snapshot_leakage_status(snapshot=snapshot),
        "formats": export_formats_for(snapshot.task_type),
        "split_chart": charts.bar_chart(
            categories=list(splits),
            values=list(splits.values()),
            title="Members per split",
            y_label="items",
        )
        if splits
        else "",
        "others": Snapshot.objects.filter(project=access.project).exclude(pk=snapshot.pk),
        "other": other,
        "comparison": comparison,
    }
    return render(request, "annotation/snapshot.html", context)


def _safe_int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise Http404("No such snapshot.") from None


@require_GET
@project_page(RoleSet.ENGINEERS)
def snapshot_export(
    request: HttpRequest, access: ProjectAccess, snapshot_id: int, fmt: str
) -> HttpResponse:
    """Training data, streamed: engineers only (it is the rows themselves)."""
    snapshot = selectors.snapshot_get(project=access.project, snapshot_id=snapshot_id)
    if snapshot is None:
        raise Http404("No such snapshot.")
    split = request.GET.get("split") or None
    try:
        lines = export_lines(snapshot=snapshot, fmt=fmt, split=split)
    except ValidationError as error:
        return HttpResponse(
            validation_error_text(error), status=400, content_type="text/plain; charset=utf-8"
        )
    response = StreamingHttpResponse(lines, content_type="application/x-ndjson")
    name = f"{snapshot.name}-v{snapshot.version}-{fmt}{'-' + split if split else ''}.jsonl"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["X-Manifest-SHA256"] = snapshot.manifest_sha256
    return response
