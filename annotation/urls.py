from django.urls import path

from annotation import api, api_curation, api_exports, views, views_curation, views_exports

app_name = "annotation"

urlpatterns = [
    path("annotate/", views.annotate, name="annotate"),
    path("annotate/submit/", views.annotate_submit, name="submit"),
    path("annotate/undo/", views.annotate_undo, name="undo"),
    path("adjudicate/", views.adjudicate, name="adjudicate"),
    path("adjudicate/undo/", views.adjudicate_undo, name="adjudicate_undo"),
    path("datasets/", views.datasets, name="datasets"),
    path("datasets/<int:dataset_id>/", views.dataset_detail, name="dataset"),
    path("uploads/<uuid:upload_id>/", views.upload_status, name="upload"),
    path("annotation/setup/", views.setup, name="setup"),
    path("annotation/dashboard/", views.dashboard, name="dashboard"),
    path("annotation/disagreements/", views.disagreements, name="disagreements"),
    path("curation/", views_curation.curation, name="curation"),
    path("curation/checks/<int:check_id>/", views_curation.check_report, name="check"),
    path("snapshots/<int:snapshot_id>/", views_curation.snapshot_detail, name="snapshot"),
    path(
        "snapshots/<int:snapshot_id>/export/<str:fmt>/",
        views_curation.snapshot_export,
        name="snapshot-export",
    ),
    path(
        "exports/annotations/<str:fmt>/",
        views_exports.annotations_export,
        name="export-annotations",
    ),
    path("exports/items/<str:fmt>/", views_exports.items_export, name="export-items"),
]

api_urlpatterns = [
    path("datasets/", api.DatasetListCreateApi.as_view(), name="api-datasets"),
    path("datasets/<int:dataset_id>/", api.DatasetDetailApi.as_view(), name="api-dataset"),
    path("uploads/<uuid:upload_id>/", api.UploadDetailApi.as_view(), name="api-upload"),
    path("schemas/", api.SchemaListCreateApi.as_view(), name="api-schemas"),
    path("guidelines/", api.GuidelineListCreateApi.as_view(), name="api-guidelines"),
    path("items/", api.ItemListApi.as_view(), name="api-items"),
    path(
        "annotation/settings/",
        api.AnnotationSettingsApi.as_view(),
        name="api-annotation-settings",
    ),
    path("queue/next/", api.QueueNextApi.as_view(), name="api-queue-next"),
    path("queue/submit/", api.QueueSubmitApi.as_view(), name="api-queue-submit"),
    path("queue/skip/", api.QueueSkipApi.as_view(), name="api-queue-skip"),
    path("queue/undo/", api.QueueUndoApi.as_view(), name="api-queue-undo"),
    path("adjudication/next/", api.AdjudicationNextApi.as_view(), name="api-adjudication-next"),
    path(
        "adjudication/resolve/",
        api.AdjudicationResolveApi.as_view(),
        name="api-adjudication-resolve",
    ),
    path("agreement/", api.AgreementApi.as_view(), name="api-agreement"),
    path("disagreements/", api.DisagreementListApi.as_view(), name="api-disagreements"),
    path("snapshots/", api_curation.SnapshotListCreateApi.as_view(), name="api-snapshots"),
    path(
        "snapshots/<int:snapshot_id>/",
        api_curation.SnapshotDetailApi.as_view(),
        name="api-snapshot",
    ),
    path(
        "snapshots/<int:snapshot_id>/export/<str:fmt>/",
        api_curation.SnapshotExportApi.as_view(),
        name="api-snapshot-export",
    ),
    path(
        "exports/annotations/<str:fmt>/",
        api_exports.AnnotationExportApi.as_view(),
        name="api-export-annotations",
    ),
    path(
        "exports/items/<str:fmt>/",
        api_exports.ItemExportApi.as_view(),
        name="api-export-items",
    ),
    path("checks/", api_curation.CheckListCreateApi.as_view(), name="api-checks"),
    path("checks/<int:check_id>/", api_curation.CheckDetailApi.as_view(), name="api-check"),
]
