"""Curation pages: quality checks and their reports, snapshots, comparisons and exports."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from annotation import pii, selectors
from annotation.models import Item, QualityCheck, Snapshot
from annotation.services import quality
from annotation.services.exports import export_formats_for, export_lines
from annotation.services.snapshots import snapshot_create
from core import charts
from core.models import Role
from core.selectors import ProjectAccess, project_access_get

# Reports show counts, spans and charts; the rows themselves only to engineers.
CURATION_READERS = (Role.ENGINEER, Role.ADMIN, Role.COMPLIANCE)


def _messages(error: ValidationError) -> str:
    if hasattr(error, "error_dict"):
        return "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in error.message_dict.items())
    return " ".join(error.messages)


def _int(value: str | None, field: str, default: int | None = None) -> int:
    if value in (None, "") and default is not None:
        return default
    try:
        return int(value or "")
    except ValueError:
        raise ValidationError({field: "must be a whole number"}) from None


def _float(value: str | None, field: str) -> float:
    try:
        return float(value or "")
    except ValueError:
        raise ValidationError({field: "must be a number"}) from None


def _dataset(access: ProjectAccess, value: str | None):
    if not value:
        return None
    dataset = selectors.dataset_get(project=access.project, dataset_id=_int(value, "dataset"))
    if dataset is None:
        raise ValidationError({"dataset": "no such dataset in this project"})
    return dataset


def _handle_curation_post(request: HttpRequest, access: ProjectAccess) -> HttpResponse | None:
    project, post = access.project, request.POST
    which = post.get("form")
    if which == "check":
        check = quality.quality_check_start(
            actor=request.user,
            project=project,
            kind=post.get("kind", ""),
            dataset=_dataset(access, post.get("dataset")),
            params={"threshold": post.get("threshold") or 0.8},
        )
        return redirect("annotation:check", project_id=project.pk, check_id=check.pk)
    if which == "snapshot":
        snapshot = snapshot_create(
            actor=request.user,
            project=project,
            name=post.get("name", ""),
            seed=_int(post.get("seed"), "seed", 0),
            split_ratios={
                s: _float(post.get(s), f"split_ratios.{s}") for s in ("train", "validation", "test")
            },
            filter={
                "datasets": post.getlist("datasets"),
                "synthetic": post.get("synthetic") or "include",
            },
        )
        return redirect("annotation:snapshot", project_id=project.pk, snapshot_id=snapshot.pk)
    if which == "pii_rule":
        quality.pii_rule_add(
            actor=request.user,
            project=project,
            name=post.get("name", ""),
            pattern=post.get("pattern", ""),
        )
        messages.success(request, "PII rule added; it applies to the next scan.")
    elif which == "spot_check":
        review = quality.synthetic_spot_check(
            actor=request.user,
            project=project,
            n=_int(post.get("n"), "n"),
            seed=_int(post.get("seed"), "seed", 0),
        )
        messages.success(
            request, f"{review.row_count} synthetic rows are first in the annotation queue."
        )
    elif which == "chunk":
        dataset = _dataset(access, post.get("dataset"))
        if dataset is None:
            raise ValidationError({"dataset": "choose the dataset to chunk"})
        chunked = quality.dataset_chunk(
            actor=request.user,
            dataset=dataset,
            field=post.get("field", "text").strip(),
            max_tokens=_int(post.get("max_tokens"), "max_tokens"),
            overlap=_int(post.get("overlap"), "overlap", 0),
        )
        return redirect("annotation:dataset", project_id=project.pk, dataset_id=chunked.pk)
    else:
        raise ValidationError({"form": "unknown form"})
    return redirect("annotation:curation", project_id=project.pk)


@login_required
@require_http_methods(["GET", "POST"])
def curation(request: HttpRequest, project_id: int) -> HttpResponse:
    access = project_access_get(project_id=project_id, user=request.user)
    access.require(*CURATION_READERS)
    if request.method == "POST":
        access.require(Role.ENGINEER)
        try:
            response = _handle_curation_post(request, access)
        except ValidationError as error:
            messages.error(request, _messages(error))
        else:
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


@login_required
@require_http_methods(["GET", "POST"])
def check_report(request: HttpRequest, project_id: int, check_id: int) -> HttpResponse:
    access = project_access_get(project_id=project_id, user=request.user)
    access.require(*CURATION_READERS)
    check = selectors.quality_check_get(project=access.project, check_id=check_id)
    if check is None:
        raise Http404("No such check.")
    if request.method == "POST":
        access.require(Role.ENGINEER)
        action = request.POST.get("action")
        try:
            if action == "keep_one":
                versions = quality.duplicates_keep_one(actor=request.user, check=check)
            elif action in ("redact", "drop"):
                versions = quality.pii_apply(actor=request.user, check=check, action=action)
            else:
                raise ValidationError({"action": "is keep_one, redact or drop"})
        except ValidationError as error:
            messages.error(request, _messages(error))
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


@login_required
@require_http_methods(["GET", "POST"])
def snapshot_detail(request: HttpRequest, project_id: int, snapshot_id: int) -> HttpResponse:
    access = project_access_get(project_id=project_id, user=request.user)
    access.require(*CURATION_READERS)
    snapshot = selectors.snapshot_get(project=access.project, snapshot_id=snapshot_id)
    if snapshot is None:
        raise Http404("No such snapshot.")
    if request.method == "POST":
        access.require(Role.ENGINEER)
        try:
            check = quality.quality_check_start(
                actor=request.user,
                project=access.project,
                kind="leakage",
                snapshot=snapshot,
                params={"threshold": request.POST.get("threshold") or 0.8},
            )
        except ValidationError as error:
            messages.error(request, _messages(error))
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


@login_required
@require_GET
def snapshot_export(
    request: HttpRequest, project_id: int, snapshot_id: int, fmt: str
) -> HttpResponse:
    """Training data, streamed: engineers only (it is the rows themselves)."""
    access = project_access_get(project_id=project_id, user=request.user)
    access.require(Role.ENGINEER)
    snapshot = selectors.snapshot_get(project=access.project, snapshot_id=snapshot_id)
    if snapshot is None:
        raise Http404("No such snapshot.")
    split = request.GET.get("split") or None
    try:
        lines = export_lines(snapshot=snapshot, fmt=fmt, split=split)
    except ValidationError as error:
        return HttpResponse(_messages(error), status=400, content_type="text/plain; charset=utf-8")
    response = StreamingHttpResponse(lines, content_type="application/x-ndjson")
    name = f"{snapshot.name}-v{snapshot.version}-{fmt}{'-' + split if split else ''}.jsonl"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["X-Manifest-SHA256"] = snapshot.manifest_sha256
    return response
