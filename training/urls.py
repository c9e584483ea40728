from django.urls import path

from training import api, api_sweeps, views, views_sweeps

app_name = "training"

urlpatterns = [
    path("training/", views.job_list, name="jobs"),
    path("training/new/", views.job_new, name="job_new"),
    path("training/compare/", views.job_compare, name="job_compare"),
    path("training/jobs/<int:job_id>/", views.job_detail, name="job"),
    path("training/jobs/<int:job_id>/cancel/", views.job_cancel, name="job_cancel"),
    path("training/jobs/<int:job_id>/resume/", views.job_resume, name="job_resume"),
    path("training/versions/", views.version_list, name="versions"),
    path("training/versions/<int:version_id>/", views.version_detail, name="version"),
    path(
        "training/versions/<int:version_id>/compression/",
        views.version_compression,
        name="version_compression",
    ),
    path("training/base-models/", views.base_models, name="base_models"),
    path(
        "training/base-models/registrations/<int:registration_id>/",
        views.registration_detail,
        name="registration",
    ),
    path("training/sweeps/", views_sweeps.sweep_list, name="sweeps"),
    path("training/sweeps/<int:sweep_id>/", views_sweeps.sweep_detail, name="sweep"),
    path("training/sweeps/<int:sweep_id>/cancel/", views_sweeps.sweep_cancel, name="sweep_cancel"),
    path(
        "training/sweeps/<int:sweep_id>/register-best/",
        views_sweeps.sweep_register_best,
        name="sweep_register_best",
    ),
    path("training/playground/", views.playground, name="playground"),
    path(
        "training/playground/<str:task_id>/",
        views.playground_result,
        name="playground_result",
    ),
]

api_urlpatterns = [
    path("fine_tuning/jobs/", api.JobListCreateApi.as_view(), name="api-jobs"),
    path("fine_tuning/jobs/<int:job_id>/", api.JobDetailApi.as_view(), name="api-job"),
    path(
        "fine_tuning/jobs/<int:job_id>/cancel/", api.JobCancelApi.as_view(), name="api-job-cancel"
    ),
    path(
        "fine_tuning/jobs/<int:job_id>/events/", api.JobEventsApi.as_view(), name="api-job-events"
    ),
    path(
        "fine_tuning/jobs/<int:job_id>/checkpoints/",
        api.JobCheckpointsApi.as_view(),
        name="api-job-checkpoints",
    ),
    path("fine_tuning/files/", api.TrainingFileCreateApi.as_view(), name="api-files"),
    path("fine_tuning/sweeps/", api_sweeps.SweepListCreateApi.as_view(), name="api-sweeps"),
    path(
        "fine_tuning/sweeps/<int:sweep_id>/",
        api_sweeps.SweepDetailApi.as_view(),
        name="api-sweep",
    ),
    path(
        "fine_tuning/sweeps/<int:sweep_id>/register_best/",
        api_sweeps.SweepRegisterBestApi.as_view(),
        name="api-sweep-register-best",
    ),
    path("models/", api.ModelVersionListApi.as_view(), name="api-model-versions"),
    path("models/<int:version_id>/", api.ModelVersionDetailApi.as_view(), name="api-model-version"),
    path(
        "models/<int:version_id>/compressions/",
        api.CompressionListCreateApi.as_view(),
        name="api-model-version-compressions",
    ),
    path("base_models/", api.BaseModelListApi.as_view(), name="api-base-models"),
    path(
        "base_models/<int:base_model_id>/", api.BaseModelDetailApi.as_view(), name="api-base-model"
    ),
    path(
        "base_models/registrations/",
        api.RegistrationListCreateApi.as_view(),
        name="api-base-model-registrations",
    ),
    path(
        "base_models/registrations/<int:registration_id>/",
        api.RegistrationDetailApi.as_view(),
        name="api-base-model-registration",
    ),
]
