"""JSON API for the bulk label exports: every answer, or every item with its status and
labels, streamed in the asked format. Engineers only, as the snapshot exports are: the
rows themselves leave the portal."""

from django.core.exceptions import ValidationError
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound

from annotation import selectors
from annotation.services.bulk_exports import (
    EXPORT_FORMATS,
    KIND_ANNOTATIONS,
    KIND_ITEMS,
    ExportStream,
    bulk_export_open,
)
from core.access import ProjectApiView
from core.authentication import AuthenticatedRequest as Request
from core.models import RoleSet


def export_response(stream: ExportStream) -> StreamingHttpResponse:
    response = StreamingHttpResponse(stream.chunks, content_type=stream.content_type)
    response["Content-Disposition"] = f'attachment; filename="{stream.filename}"'
    return response


class _BulkExportApi(ProjectApiView):
    kind = ""
    roles = RoleSet.ENGINEERS

    def get(self, request: Request, project_id: int, fmt: str) -> StreamingHttpResponse:
        access = self.access
        dataset = None
        given = request.query_params.get("dataset")
        if given:
            if not (given.isascii() and given.isdigit() and int(given) < 2**63):
                raise serializers.ValidationError({"dataset": "is a dataset id"})
            dataset = selectors.dataset_get(project=access.project, dataset_id=int(given))
            if dataset is None:
                raise NotFound("No such dataset.")
        try:
            stream = bulk_export_open(
                actor=request.user, project=access.project, kind=self.kind, fmt=fmt, dataset=dataset
            )
        except ValidationError as error:
            raise serializers.ValidationError(error.message_dict) from None
        return export_response(stream)


_DATASET = OpenApiParameter("dataset", int, description="Only this dataset's items.")


class AnnotationExportApi(_BulkExportApi):
    """Every live answer, one row each, annotators as pseudonyms: `jsonl`, `csv` or `hf`
    (a zipped Hugging Face datasets folder: Parquet and a dataset card)."""

    kind = KIND_ANNOTATIONS

    @extend_schema(
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY},
        parameters=[
            OpenApiParameter("fmt", str, OpenApiParameter.PATH, enum=EXPORT_FORMATS[kind]),
            _DATASET,
        ],
    )
    def get(self, request: Request, project_id: int, fmt: str) -> StreamingHttpResponse:
        return super().get(request, project_id, fmt)


class ItemExportApi(_BulkExportApi):
    """Every item with its status and labels: `jsonl`, `csv`, `hf`, `labelstudio` (task
    JSON that Label Studio imports) or `argilla` (Argilla v2 record dicts, one a line)."""

    kind = KIND_ITEMS

    @extend_schema(
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY},
        parameters=[
            OpenApiParameter("fmt", str, OpenApiParameter.PATH, enum=EXPORT_FORMATS[kind]),
            _DATASET,
        ],
    )
    def get(self, request: Request, project_id: int, fmt: str) -> StreamingHttpResponse:
        return super().get(request, project_id, fmt)
