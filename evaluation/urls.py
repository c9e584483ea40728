from django.urls import path

from evaluation import api, api_listing, views

app_name = "evaluation"

urlpatterns = [
    path("review/", views.review_home, name="review_home"),
    path("review/<int:campaign_id>/", views.review, name="review"),
    path("review/<int:campaign_id>/submit/", views.review_submit, name="review_submit"),
    path("evaluation/", views.overview, name="overview"),
    path(
        "evaluation/prompt-sets/from-snapshot/",
        views.prompt_set_from_snapshot,
        name="prompt_set_from_snapshot",
    ),
    path("evaluation/contestants/", views.contestant_create, name="contestant_create"),
    path("evaluation/generations/", views.generation_start, name="generation_start"),
    path("evaluation/metric-runs/", views.metric_runs_start, name="metric_runs_start"),
    path("evaluation/generations/jobs/", views.generation_jobs, name="generation_jobs"),
    path("evaluation/outputs/", views.outputs, name="outputs"),
    path("evaluation/gates/", views.gate_create, name="gate_create"),
    path("evaluation/gates/run/", views.gate_run, name="gate_run"),
    path("evaluation/campaigns/<int:campaign_id>/", views.results, name="results"),
    path("evaluation/compare/", views.version_compare, name="version_compare"),
    path(
        "evaluation/campaigns/<int:campaign_id>/action/",
        views.campaign_action,
        name="campaign_action",
    ),
]

api_urlpatterns = [
    path("review/<int:campaign_id>/next/", api.ReviewNextApi.as_view(), name="api-review-next"),
    path(
        "review/<int:campaign_id>/submit/",
        api.ReviewSubmitApi.as_view(),
        name="api-review-submit",
    ),
    path("prompt-sets/", api_listing.PromptSetListCreateApi.as_view(), name="api-prompt-sets"),
    path(
        "prompt-sets/from-snapshot/",
        api_listing.PromptSetFromSnapshotApi.as_view(),
        name="api-prompt-set-from-snapshot",
    ),
    path(
        "prompt-sets/<int:prompt_set_id>/",
        api_listing.PromptSetDetailApi.as_view(),
        name="api-prompt-set",
    ),
    path("contestants/", api_listing.ContestantListCreateApi.as_view(), name="api-contestants"),
    path(
        "contestants/<int:contestant_id>/",
        api_listing.ContestantDetailApi.as_view(),
        name="api-contestant",
    ),
    path(
        "generation-jobs/",
        api.GenerationJobListCreateApi.as_view(),
        name="api-generation-jobs",
    ),
    path(
        "generation-jobs/<int:job_id>/",
        api.GenerationJobDetailApi.as_view(),
        name="api-generation-job",
    ),
    path(
        "contestants/<int:contestant_id>/generations/",
        api.GenerationsImportApi.as_view(),
        name="api-generations",
    ),
    path(
        "generation-outputs/",
        api_listing.GenerationOutputListApi.as_view(),
        name="api-generation-outputs",
    ),
    path("campaigns/", api_listing.CampaignListCreateApi.as_view(), name="api-campaigns"),
    path(
        "campaigns/<int:campaign_id>/", api_listing.CampaignDetailApi.as_view(), name="api-campaign"
    ),
    path(
        "campaigns/<int:campaign_id>/close/",
        api_listing.CampaignCloseApi.as_view(),
        name="api-campaign-close",
    ),
    path(
        "campaigns/<int:campaign_id>/bootstraps/",
        api_listing.CampaignBootstrapApi.as_view(),
        name="api-campaign-bootstraps",
    ),
    path(
        "campaigns/<int:campaign_id>/bootstraps/<int:bootstrap_id>/",
        api_listing.CampaignBootstrapDetailApi.as_view(),
        name="api-campaign-bootstrap",
    ),
    path(
        "campaigns/<int:campaign_id>/raters/exclude/",
        api_listing.CampaignRaterExcludeApi.as_view(),
        name="api-campaign-rater-exclude",
    ),
    path(
        "campaigns/<int:campaign_id>/raters/include/",
        api_listing.CampaignRaterIncludeApi.as_view(),
        name="api-campaign-rater-include",
    ),
    path(
        "campaigns/<int:campaign_id>/export-preferences/",
        api_listing.CampaignPreferenceExportApi.as_view(),
        name="api-campaign-export-preferences",
    ),
    path(
        "campaigns/<int:campaign_id>/ratings/",
        api.CampaignRatingsApi.as_view(),
        name="api-campaign-ratings",
    ),
    path("metric-runs/", api.MetricRunCreateApi.as_view(), name="api-metric-runs"),
    path("metric-runs/<int:run_id>/", api.MetricRunDetailApi.as_view(), name="api-metric-run"),
    path("gates/", api.GateCreateApi.as_view(), name="api-gates"),
    path("gates/<int:gate_id>/runs/", api.GateRunCreateApi.as_view(), name="api-gate-runs"),
]
