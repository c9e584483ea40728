import io
import json
import uuid

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from annotation import conversations, selectors, services
from annotation.forms import (
    AdjudicationForm,
    AnnotationSubmitForm,
    GuidelineForm,
    SchemaForm,
    SettingsForm,
    UploadForm,
    answer_form_fields,
    split_fields,
)
from annotation.importing import ImportRefused
from annotation.metrics import project_dashboard
from annotation.models import DatasetUpload, Item, TaskType
from annotation.schemas import shortcut_choices
from annotation.selectors import adjudication
from annotation.services.datasets import Provenance, dataset_upload_create, upload_progress
from core.access import project_page
from core.forms import (
    WhichForm,
    form_errors_from,
    form_errors_text,
    form_submit,
    validation_error_text,
)
from core.models import Role, RoleSet
from core.selectors import ProjectAccess
from core.spreadsheets import csv_writer


def _task_context(request, access, offer, error=None, undone=False) -> dict:
    context = {
        "access": access,
        "project": access.project,
        "offer": offer,
        "error": error,
        "undone": undone,
        "submission_id": uuid.uuid4(),
    }
    if offer is not None:
        schema = offer.schema
        item = offer.item
        config = schema.config
        context.update(
            {
                "schema": schema,
                "config": config,
                "payload": item.payload,
                "shortcuts": shortcut_choices(schema.task_type, config, item.payload),
                "guideline_html": mark_safe(selectors.guideline_html(offer.guideline.markdown))  # noqa: S308 - nh3-cleaned
                if offer.guideline
                else "",
                "examples": selectors.guideline_examples(offer.guideline.examples)
                if offer.guideline
                else [],
                # Enter submits unless a text box has the focus; a typed answer needs Ctrl.
                "submit_needs_ctrl": schema.task_type == TaskType.WRITING,
                "TaskType": TaskType,
            }
        )
        if schema.task_type == TaskType.ENTITY_MATCHING:
            left = item.payload.get(config["left_field"]) or {}
            right = item.payload.get(config["right_field"]) or {}
            keys = (
                list(dict.fromkeys([*left, *right]))
                if isinstance(left, dict) and isinstance(right, dict)
                else []
            )
            context["em_rows"] = [(k, left.get(k, ""), right.get(k, "")) for k in keys]
        if schema.task_type == TaskType.PREFERENCE:
            responses = item.payload.get(config["responses_field"]) or []
            # (index, response, empty): an empty response is marked, never an empty card.
            context["responses"] = [
                (i, r, conversations.is_empty_response(r)) for i, r in enumerate(responses)
            ]
            context["prompt_turns"] = conversations.display_turns(
                item.payload.get(config["prompt_field"])
            )
        if schema.task_type == TaskType.WRITING:
            steps = item.payload.get(config["steps_field"])
            context["steps"] = steps if isinstance(steps, list) and steps else None
    return context


def _render_task(request, access, offer, **extra) -> HttpResponse:
    context = _task_context(request, access, offer, **extra)
    template = "annotation/annotate.html#task" if request.htmx else "annotation/annotate.html"
    return render(request, template, context)


@require_GET
@project_page(RoleSet.ANNOTATORS)
def annotate(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    try:
        offer = services.item_lease_next(project=access.project, annotator=request.user)
    except ValidationError as error:
        return _render_task(request, access, None, error=" ".join(error.messages))
    return _render_task(request, access, offer)


@require_POST
@project_page(RoleSet.ANNOTATORS)
def annotate_submit(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    project = access.project
    offer = services.item_lease_next(project=project, annotator=request.user)
    form = AnnotationSubmitForm(request.POST, schema=selectors.current_schema(project))
    if not form.is_valid():
        return _render_task(request, access, offer, error="The form was incomplete; try again.")
    data = form.cleaned_data
    try:
        if data["action"] == "skip":
            services.item_skip(
                project=project,
                lease_id=data["lease"],
                annotator=request.user,
                reason=data["skip_reason"],
            )
        else:
            services.annotation_submit(
                project=project,
                lease_id=data["lease"],
                annotator=request.user,
                value=form.answer(),
                submission_id=data["submission_id"],
                seconds_spent=data["seconds"],
            )
    except ValidationError as error:
        form_errors_from(form, error)
        offer = services.item_lease_next(project=project, annotator=request.user)
        return _render_task(request, access, offer, error=form_errors_text(form))
    offer = services.item_lease_next(project=project, annotator=request.user)
    return _render_task(request, access, offer)


@require_POST
@project_page(RoleSet.ANNOTATORS)
def annotate_undo(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    try:
        offer = services.annotation_undo(project=access.project, annotator=request.user)
    except ValidationError as error:
        offer = services.item_lease_next(project=access.project, annotator=request.user)
        return _render_task(request, access, offer, error=validation_error_text(error))
    return _render_task(request, access, offer, undone=True)


def _decision_shown(gold, view, took: str, draft: str) -> dict:
    """What the confirmation shows of a decision just made: the gold label against the
    answer it was taken or started from."""
    start = took or draft
    letters = [adjudication.letter(i) for i in range(len(view.labels))]
    base = view.labels[letters.index(start)].value if start in letters else None
    gold_text = adjudication.answer_text(gold.value)
    return {
        "item": gold.item_id,
        "start": start if base is not None else "",
        "took": bool(took),
        "gold_text": gold_text,
        "parts": adjudication.word_diff(adjudication.answer_text(base), gold_text)
        if base is not None
        else [],
    }


def _adjudication_panel(request, access, *, error=None, decided=None, undone_item=None):
    project = access.project
    lease = services.adjudication_lease_next(project=project, adjudicator=request.user)
    context = {
        "access": access,
        "project": project,
        "error": error,
        "lease": lease,
        "decided": decided,
        "undone_item": undone_item,
        "items_left": adjudication.adjudication_items_left(
            project=project, adjudicator=request.user
        ),
        "last_snapshot": adjudication.snapshot_latest(project=project),
        "can_undo": adjudication.adjudication_last_decision(
            project=project, adjudicator=request.user
        )
        is not None,
    }
    if lease is not None:
        schema = selectors.current_schema(project)
        offer = services.LeaseOffer(
            lease=lease,
            item=lease.item,
            schema=schema,
            guideline=selectors.current_guideline(project),
        )
        context.update(_task_context(request, access, offer, error=error))
        view = selectors.adjudication_view(item=lease.item)
        context["view"] = view
        context["answers"] = [
            {
                "letter": adjudication.letter(i),
                "label": label,
                "text": adjudication.answer_text(label.value),
                "fill": json.dumps(answer_form_fields(schema.task_type, label.value))
                if schema
                else "{}",
            }
            for i, label in enumerate(view.labels)
        ]
        context["diffs"] = adjudication.answer_diffs(view)
        context["dispute_reason"] = adjudication.dispute_reason(item=lease.item, view=view)
    template = "annotation/adjudicate.html#panel" if request.htmx else "annotation/adjudicate.html"
    return render(request, template, context)


@require_http_methods(["GET", "POST"])
@project_page(RoleSet.ADJUDICATORS)
def adjudicate(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    project = access.project
    if request.method != "POST":
        return _adjudication_panel(request, access)
    form = AdjudicationForm(request.POST, schema=selectors.current_schema(project))
    posted = form.cleaned_data if form.is_valid() else {}
    take = (posted.get("take") or "").strip()
    took = take if take and take != "own" else ""
    position = adjudication.letter_position(took) if took else None
    if took and position is None:
        return _adjudication_panel(request, access, error="take: no such answer on this item")
    # The view of the answers before the decision: the confirmation diffs against them.
    before = adjudication.adjudication_view_for(
        project=project, item_id=str(posted.get("item") or "")
    )
    gold = form_submit(
        form,
        lambda data: services.adjudication_resolve(
            project=project,
            item_id=data["item"] or 0,
            adjudicator=request.user,
            reason=data["reason"],
            value=None if took else form.answer(),
            take=position,
        ),
    )
    if gold is None:
        return _adjudication_panel(request, access, error=form_errors_text(form))
    draft = "" if took else form.cleaned_data["draft"].strip()
    decided = _decision_shown(gold, before, took, draft) if before is not None else None
    return _adjudication_panel(request, access, decided=decided)


@require_POST
@project_page(RoleSet.ADJUDICATORS)
def adjudicate_undo(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    try:
        item = services.adjudication_undo(project=access.project, adjudicator=request.user)
    except ValidationError as error:
        return _adjudication_panel(request, access, error=validation_error_text(error))
    return _adjudication_panel(request, access, undone_item=item.pk)


@require_http_methods(["GET", "POST"])
@project_page({"GET": RoleSet.OVERSIGHT, "POST": RoleSet.ENGINEERS})
def datasets(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    form = UploadForm()
    if request.method == "POST":
        form = UploadForm(request.POST, request.FILES)
        if form.is_valid():
            data = form.cleaned_data
            try:
                upload = dataset_upload_create(
                    project=access.project,
                    uploaded_by=request.user,
                    file=data["file"],
                    file_name=data["file"].name,
                    name=data["name"],
                    provenance=Provenance(
                        source_description=data["source_description"],
                        license=data["license"],
                        consent_basis=data["consent_basis"],
                        collection_date=data["collection_date"],
                        prompt_synthetic=data["prompt_synthetic"],
                        response_synthetic=data["response_synthetic"],
                    ),
                    required_fields=split_fields(data["required_fields"]),
                    metadata_fields=split_fields(data["metadata_fields"]),
                    mapping=data["mapping"],
                )
            except ImportRefused as refused:
                form.add_error("file", str(refused))
            except ValidationError as error:
                form_errors_from(form, error)
            else:
                if request.headers.get("Accept") == "application/json":
                    return JsonResponse({"upload": str(upload.id)}, status=202)
                return redirect(
                    "annotation:upload", project_id=access.project.pk, upload_id=upload.id
                )
        if request.headers.get("Accept") == "application/json":
            return JsonResponse({"errors": form.errors.get_json_data()}, status=400)
    datasets = list(selectors.dataset_list_for_project(project=access.project))
    context = {
        "access": access,
        "project": access.project,
        "form": form,
        "datasets": datasets,
        "synthetic": selectors.dataset_synthetic_shares(dataset_ids=[d.pk for d in datasets]),
        "uploads": selectors.upload_list_recent(project=access.project),
    }
    return render(request, "annotation/datasets.html", context)


@require_GET
@project_page(RoleSet.OVERSIGHT)
def upload_status(
    request: HttpRequest, access: ProjectAccess, upload_id: uuid.UUID
) -> HttpResponse:
    upload = selectors.upload_get(project=access.project, upload_id=upload_id)
    if upload is None:
        raise Http404("No such upload.")
    context = {
        "access": access,
        "project": access.project,
        "upload": upload,
        "rows": upload_progress(upload),
        "finished": upload.status in (DatasetUpload.Status.SUCCEEDED, DatasetUpload.Status.FAILED),
    }
    template = "annotation/upload.html#status" if request.htmx else "annotation/upload.html"
    return render(request, template, context)


@require_GET
@project_page(RoleSet.OVERSIGHT)
def dataset_detail(request: HttpRequest, access: ProjectAccess, dataset_id: int) -> HttpResponse:
    dataset = selectors.dataset_get(project=access.project, dataset_id=dataset_id)
    if dataset is None:
        raise Http404("No such dataset.")
    # An original whose PII was redacted into a new version: its rows are for engineers.
    restricted = not access.has(Role.ENGINEER) and dataset.pk in (
        selectors.datasets_with_unredacted_pii(project=access.project)
    )
    sample = (
        [] if restricted else list(Item.objects.filter(dataset=dataset).order_by("row_number")[:20])
    )
    return render(
        request,
        "annotation/dataset.html",
        {
            "access": access,
            "project": access.project,
            "dataset": dataset,
            "synthetic": selectors.dataset_synthetic_shares(dataset_ids=[dataset.pk])[dataset.pk],
            "upload": selectors.upload_of_dataset(project=access.project, dataset=dataset),
            "sample": sample,
            "restricted": restricted,
        },
    )


SETUP_DONE = {
    "schema": "Schema published.",
    "guideline": "Guideline published.",
    "settings": "Settings saved.",
}


@require_http_methods(["GET", "POST"])
@project_page(RoleSet.MANAGERS)
def setup(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    project = access.project
    settings_row = selectors.settings_for(project)
    schema_form = SchemaForm(prefix="schema")
    guideline_form = GuidelineForm(prefix="guide")
    settings_form = SettingsForm(instance=settings_row, prefix="settings")
    if request.method == "POST":
        posted = WhichForm(request.POST).chosen("form")
        done = None
        if posted == "schema":
            schema_form = SchemaForm(request.POST, prefix="schema")
            done = form_submit(
                schema_form,
                lambda data: services.label_schema_publish(
                    project=project,
                    task_type=data["task_type"],
                    config=schema_form.config(),
                    published_by=request.user,
                ),
            )
        elif posted == "guideline":
            guideline_form = GuidelineForm(request.POST, prefix="guide")
            done = form_submit(
                guideline_form,
                lambda data: services.guideline_publish(
                    project=project, markdown=data["markdown"], published_by=request.user
                ),
            )
        elif posted == "settings":
            # The form validates field by field; the write goes through the service.
            settings_form = SettingsForm(
                request.POST, prefix="settings", instance=selectors.settings_for(project)
            )
            done = form_submit(
                settings_form,
                lambda data: services.annotation_settings_update(
                    project=project,
                    changed_by=request.user,
                    **{f: data[f] for f in SettingsForm.Meta.fields},
                ),
            )
        if done is not None:
            messages.success(request, SETUP_DONE[posted])
            return redirect("annotation:setup", project_id=project.pk)
    schema = selectors.current_schema(project)
    guideline = selectors.current_guideline(project)
    return render(
        request,
        "annotation/setup.html",
        {
            "access": access,
            "project": project,
            "schema": schema,
            "guideline": guideline,
            "schema_form": schema_form,
            "guideline_form": guideline_form,
            "settings_form": settings_form,
            "guideline_html": mark_safe(selectors.guideline_html(guideline.markdown))  # noqa: S308 - nh3-cleaned
            if guideline
            else "",
        },
    )


@require_GET
@project_page(RoleSet.OVERSIGHT)
def dashboard(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    context = {
        "access": access,
        "project": access.project,
        **project_dashboard(project=access.project),
    }
    template = "annotation/dashboard.html#live" if request.htmx else "annotation/dashboard.html"
    return render(request, template, context)


def _csv_text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


@require_GET
@project_page(RoleSet.OVERSIGHT_AND_ADJUDICATORS)
def disagreements(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    filters = {k: v for k, v in request.GET.items() if k in selectors.DISAGREEMENT_FILTERS}
    try:
        rows = selectors.disagreement_log(project=access.project, filters=filters)
    except ValidationError as error:
        return HttpResponse(
            validation_error_text(error), status=400, content_type="text/plain; charset=utf-8"
        )
    fmt = request.GET.get("format")
    if fmt == "json":
        return JsonResponse(
            {"project": access.project.pk, "rows": rows}, json_dumps_params={"ensure_ascii": False}
        )
    if fmt == "csv":

        def lines():
            buffer = io.StringIO()
            writer = csv_writer(buffer)
            writer.writerow(
                ["item", "external_id", "state", "labels", "gold", "method", "decided_by", "reason"]
            )
            for row in rows:
                writer.writerow(
                    [
                        _csv_text(row[k]) if k != "item" else row[k]
                        for k in (
                            "item",
                            "external_id",
                            "state",
                            "labels",
                            "gold",
                            "method",
                            "decided_by",
                            "reason",
                        )
                    ]
                )
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
            yield buffer.getvalue()

        response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = (
            f'attachment; filename="disagreements-{access.project.slug}.csv"'
        )
        return response
    return render(
        request,
        "annotation/disagreements.html",
        {
            "access": access,
            "project": access.project,
            "rows": rows,
            "filters": filters,
            "methods": ["adjudicated", "majority", "label_model"],
        },
    )
