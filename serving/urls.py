"""Project-scoped pages and API of the serving app."""

from django.urls import path

from serving import api, views

app_name = "serving"

_one = "deployments/<int:deployment_id>/"

urlpatterns = [
    path("deployments/", views.deployment_list, name="deployments"),
    path("deployments/new/", views.deployment_create, name="deployment_create"),
    path(_one, views.deployment_detail, name="deployment"),
    path(f"{_one}place/", views.deployment_place, name="deployment_place"),
    path(f"{_one}reweight/", views.deployment_reweight, name="deployment_reweight"),
    path(f"{_one}rollout/", views.deployment_rollout, name="deployment_rollout"),
    path(f"{_one}settings/", views.deployment_settings, name="deployment_settings"),
    path(f"{_one}keys/", views.deployment_key_create, name="deployment_key_create"),
    path(
        f"{_one}keys/<int:key_id>/revoke/",
        views.deployment_key_revoke,
        name="deployment_key_revoke",
    ),
]

api_urlpatterns = [
    path("deployments/", api.DeploymentListCreateApi.as_view(), name="api-deployments"),
    path(_one, api.DeploymentDetailApi.as_view(), name="api-deployment"),
    path(f"{_one}place/", api.DeploymentPlaceApi.as_view(), name="api-deployment-place"),
    path(f"{_one}reweight/", api.DeploymentReweightApi.as_view(), name="api-deployment-reweight"),
    path(f"{_one}rollout/", api.DeploymentRolloutApi.as_view(), name="api-deployment-rollout"),
    path(f"{_one}keys/", api.DeploymentKeyListCreateApi.as_view(), name="api-deployment-keys"),
    path(
        f"{_one}keys/<int:key_id>/revoke/",
        api.DeploymentKeyRevokeApi.as_view(),
        name="api-deployment-key-revoke",
    ),
    path(
        f"{_one}decisions/",
        api.DeploymentDecisionListApi.as_view(),
        name="api-deployment-decisions",
    ),
    path(f"{_one}series/", api.DeploymentSeriesApi.as_view(), name="api-deployment-series"),
]
