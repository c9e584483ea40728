from django.urls import path

from governance import api, views

app_name = "governance"

urlpatterns = [
    path("", views.home, name="home"),
    path("versions/<int:version_id>/", views.version_detail, name="version"),
    path("versions/<int:version_id>/signoff/", views.signoff, name="signoff"),
    path("versions/<int:version_id>/promote/", views.promote, name="promote"),
    path("versions/<int:version_id>/declaration/", views.declare, name="declare"),
    path("versions/<int:version_id>/dossier/", views.dossier_request, name="dossier_request"),
    path("dossiers/<int:dossier_id>/download/", views.dossier_download, name="dossier_download"),
    path("projects/<int:project_id>/rollback/", views.rollback, name="rollback"),
    path("verify/", views.verify, name="verify"),
    path("public-key.pem", views.public_key, name="public_key"),
    path("audit/", views.audit_log, name="audit"),
    path("access-log/", views.access_log, name="access_log"),
]

api_urlpatterns = [
    path(
        "projects/<int:project_id>/audit-events/",
        api.AuditEventListApi.as_view(),
        name="api-audit-events",
    ),
    path(
        "projects/<int:project_id>/models/<int:version_id>/dossiers/",
        api.DossierListCreateApi.as_view(),
        name="api-dossiers",
    ),
    path(
        "projects/<int:project_id>/dossiers/<int:dossier_id>/",
        api.DossierDetailApi.as_view(),
        name="api-dossier",
    ),
    path(
        "projects/<int:project_id>/dossiers/<int:dossier_id>/download/",
        api.DossierDownloadApi.as_view(),
        name="api-dossier-download",
    ),
    path(
        "projects/<int:project_id>/models/<int:version_id>/signoffs/",
        api.SignOffListCreateApi.as_view(),
        name="api-signoffs",
    ),
    path(
        "projects/<int:project_id>/models/<int:version_id>/stage-changes/",
        api.StageChangeListCreateApi.as_view(),
        name="api-stage-changes",
    ),
    path(
        "projects/<int:project_id>/models/<int:version_id>/declaration/",
        api.UseDeclarationApi.as_view(),
        name="api-use-declaration",
    ),
    path("projects/<int:project_id>/rollback/", api.RollbackApi.as_view(), name="api-rollback"),
]
