"""Download pages for the bulk label exports (the buttons on the datasets pages)."""

from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from annotation import selectors
from annotation.api_exports import export_response
from annotation.services.bulk_exports import KIND_ANNOTATIONS, KIND_ITEMS, bulk_export_open
from core.access import project_page
from core.forms import validation_error_text
from core.models import RoleSet
from core.selectors import ProjectAccess


def _download(request: HttpRequest, access: ProjectAccess, kind: str, fmt: str) -> HttpResponse:
    dataset = None
    given = request.GET.get("dataset")
    if given:
        # Not a positive bigint: no dataset has that id (and the database is not asked).
        valid = given.isascii() and given.isdigit() and len(given) < 19
        dataset = (
            selectors.dataset_get(project=access.project, dataset_id=int(given)) if valid else None
        )
        if dataset is None:
            raise Http404("No such dataset.")
    try:
        stream = bulk_export_open(
            actor=request.user, project=access.project, kind=kind, fmt=fmt, dataset=dataset
        )
    except ValidationError as error:
        return HttpResponse(
            validation_error_text(error), status=400, content_type="text/plain; charset=utf-8"
        )
    return export_response(stream)


@require_GET
@project_page(RoleSet.ENGINEERS)
def annotations_export(request: HttpRequest, access: ProjectAccess, fmt: str) -> HttpResponse:
    """Every answer, streamed: engineers only, as the snapshot exports."""
    return _download(request, access, KIND_ANNOTATIONS, fmt)


@require_GET
@project_page(RoleSet.ENGINEERS)
def items_export(request: HttpRequest, access: ProjectAccess, fmt: str) -> HttpResponse:
    """Every item with its status and labels, streamed: engineers only."""
    return _download(request, access, KIND_ITEMS, fmt)
