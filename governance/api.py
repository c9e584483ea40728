from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from core.access import ProjectApiView
from core.authentication import AuthenticatedRequest as Request
from core.models import AuditEvent, RoleSet
from core.pagination import CURSOR_PARAMETERS, OFFSET_PARAMETER, cursor_page, page_of, strict_query
from governance.selectors import AUDIT_FILTER_FIELDS, audit_event_list_for_project


class AuditEventOutput(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = [
            "seq",
            "created_at",
            "actor_username",
            "action",
            "target_type",
            "target_id",
            "data",
            "prev_hash",
            "hash",
        ]


class AuditEventListApi(ProjectApiView):
    roles = RoleSet.AUDITORS

    @extend_schema(
        parameters=[
            *CURSOR_PARAMETERS,
            OFFSET_PARAMETER,
            *[OpenApiParameter(name, str, required=False) for name in AUDIT_FILTER_FIELDS],
        ],
        responses=page_of(AuditEventOutput, count=True),
        operation_id="v1_projects_audit_events_list",
    )
    def get(self, request: Request, project_id: int) -> Response:
        """The project's audit events, newest first."""
        access = self.access
        filters = strict_query(request, AUDIT_FILTER_FIELDS)
        events = audit_event_list_for_project(project=access.project, filters=filters)
        return cursor_page(
            events,
            request,
            self,
            lambda page: AuditEventOutput(page, many=True).data,
            ordering="-seq",
            count=True,
        )
