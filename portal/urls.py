from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.permissions import IsAuthenticated

from annotation.urls import api_urlpatterns as annotation_api
from evaluation.urls import api_urlpatterns as evaluation_api
from governance import views as governance_views
from governance.urls import api_urlpatterns as governance_api
from portal import api, views
from serving.urls import api_urlpatterns as serving_api
from serving.views_metrics import metrics
from training.urls import api_urlpatterns as training_api

api_v1 = [
    path("me/", api.MeApi.as_view(), name="api-me"),
    path("me/keys/", api.ApiKeyListCreateApi.as_view(), name="api-keys"),
    path("me/keys/<int:key_id>/", api.ApiKeyDetailApi.as_view(), name="api-key"),
    path("users/", api.UserListCreateApi.as_view(), name="api-users"),
    path("users/<int:user_id>/", api.UserDetailApi.as_view(), name="api-user"),
    path("projects/", api.ProjectListCreateApi.as_view(), name="api-projects"),
    path("projects/<int:project_id>/", api.ProjectDetailApi.as_view(), name="api-project"),
    path(
        "projects/<int:project_id>/memberships/",
        api.MembershipListCreateApi.as_view(),
        name="api-memberships",
    ),
    path(
        "projects/<int:project_id>/memberships/<int:membership_id>/",
        api.MembershipDetailApi.as_view(),
        name="api-membership",
    ),
    *governance_api,
    path("projects/<int:project_id>/", include((annotation_api, "annotation-api"))),
    path("projects/<int:project_id>/", include((evaluation_api, "evaluation-api"))),
    path("projects/<int:project_id>/", include((training_api, "training-api"))),
    path("projects/<int:project_id>/", include((serving_api, "serving-api"))),
]

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz/", views.healthz, name="healthz"),
    # Prometheus scrapes the path it is given, without a trailing slash.
    path("metrics", metrics, name="metrics"),
    # The dossier keys, current and retired, for auditors without an account (no log-in).
    path(".well-known/dossier-keys.json", governance_views.published_keys, name="published_keys"),
    path(
        ".well-known/dossier-keys/<str:key_id>.pem",
        governance_views.published_key_pem,
        name="published_key_pem",
    ),
    path("favicon.ico", views.favicon, name="favicon"),
    path("work/<str:queue>/", views.work_queue, name="work_queue"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/signup/", views.signup, name="signup"),
    path("accounts/", views.account, name="account"),
    path("accounts/keys/", views.api_key_create, name="api_key_create"),
    path("accounts/keys/<int:key_id>/revoke/", views.api_key_revoke, name="api_key_revoke"),
    path("people/", views.people, name="people"),
    path("people/signup/", views.signup_toggle, name="signup_toggle"),
    path("projects/new/", views.project_create, name="project_create"),
    path("projects/<int:project_id>/", views.project_detail, name="project_detail"),
    path("projects/<int:project_id>/members/", views.project_members, name="project_members"),
    path(
        "projects/<int:project_id>/members/<int:membership_id>/remove/",
        views.membership_remove,
        name="membership_remove",
    ),
    path("projects/<int:project_id>/", include("annotation.urls")),
    path("projects/<int:project_id>/", include("evaluation.urls")),
    path("projects/<int:project_id>/", include("training.urls")),
    path("projects/<int:project_id>/", include("serving.urls")),
    path("governance/", include("governance.urls")),
    # The admin is read-only; a password changes on the account page, which also revokes
    # the account's API keys and writes the audit log.
    path("admin/password_change/", RedirectView.as_view(pattern_name="account")),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    # The schema maps every endpoint and parameter: for signed-in people and API clients only.
    path(
        "api/schema/",
        SpectacularAPIView.as_view(permission_classes=[IsAuthenticated]),
        name="api-schema",
    ),
    path(
        "api/docs/",
        login_required(
            SpectacularSwaggerSplitView.as_view(
                url_name="api-schema", permission_classes=[IsAuthenticated]
            )
        ),
        name="api-docs",
    ),
]

handler500 = "portal.views.server_error"
