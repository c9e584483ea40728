from django.urls import path

from governance import api

api_urlpatterns = [
    path(
        "projects/<int:project_id>/audit-events/",
        api.AuditEventListApi.as_view(),
        name="api-audit-events",
    ),
]
urlpatterns: list = []
