from django.urls import path

from annotation import api, views

app_name = "annotation"

urlpatterns = [
    path("annotate/", views.annotate, name="annotate"),
    path("annotate/submit/", views.annotate_submit, name="submit"),
    path("annotate/undo/", views.annotate_undo, name="undo"),
    path("adjudicate/", views.adjudicate, name="adjudicate"),
    path("datasets/", views.datasets, name="datasets"),
    path("datasets/<int:dataset_id>/", views.dataset_detail, name="dataset"),
    path("uploads/<uuid:upload_id>/", views.upload_status, name="upload"),
    path("annotation/setup/", views.setup, name="setup"),
    path("annotation/dashboard/", views.dashboard, name="dashboard"),
    path("annotation/disagreements/", views.disagreements, name="disagreements"),
]

api_urlpatterns = [
    path("datasets/", api.DatasetListCreateApi.as_view(), name="api-datasets"),
    path("datasets/<int:dataset_id>/", api.DatasetDetailApi.as_view(), name="api-dataset"),
    path("uploads/<uuid:upload_id>/", api.UploadDetailApi.as_view(), name="api-upload"),
    path("schemas/", api.SchemaListCreateApi.as_view(), name="api-schemas"),
    path("guidelines/", api.GuidelineListCreateApi.as_view(), name="api-guidelines"),
    path("items/", api.ItemListApi.as_view(), name="api-items"),
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
]
