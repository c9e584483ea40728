"""Read-only admin views; writes go through the annotation services."""

from django.contrib import admin

from annotation.models import Annotation, Dataset, DatasetUpload, GoldLabel, Item, LabelSchema
from core.admin import ReadOnlyAdmin


@admin.register(Dataset)
class DatasetAdmin(ReadOnlyAdmin):
    list_display = ["name", "project", "row_count", "license", "synthetic", "created_at"]


@admin.register(DatasetUpload)
class DatasetUploadAdmin(ReadOnlyAdmin):
    list_display = ["file_name", "project", "status", "rows_done", "created_at"]
    # An import error may quote a line of the file; the stored path is the server's.
    content_fields = ("error", "stored_path")


@admin.register(LabelSchema)
class LabelSchemaAdmin(ReadOnlyAdmin):
    list_display = ["project", "version", "task_type", "created_at"]


@admin.register(Item)
class ItemAdmin(ReadOnlyAdmin):
    list_display = ["id", "project", "dataset", "row_number", "state", "label_count"]
    list_filter = ["state", "is_gold"]


@admin.register(Annotation)
class AnnotationAdmin(ReadOnlyAdmin):
    list_display = ["id", "item", "annotator", "submitted_at", "undone"]
    # Free text is encrypted (and left out as such); the plain choices are labels all the
    # same, and the admin is no place to read labels.
    content_fields = ("choice",)


@admin.register(GoldLabel)
class GoldLabelAdmin(ReadOnlyAdmin):
    list_display = ["item", "method", "decided_by", "created_at"]
    content_fields = ("choice",)
