from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from core.access import ProjectApiView
from core.authentication import AuthenticatedRequest as Request
from core.models import AuditEvent, RoleSet
from core.pagination import PortalPagination
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
        parameters=[OpenApiParameter(name, str, required=False) for name in AUDIT_FILTER_FIELDS],
        responses=AuditEventOutput(many=True),
    )
    def get(self, request: Request, project_id: int) -> Response:
        access = self.access
        unknown = sorted(set(request.query_params) - set(AUDIT_FILTER_FIELDS) - {"limit", "offset"})
        if unknown:
            raise serializers.ValidationError(
                {
                    name: f"Unknown filter; use one of {', '.join(AUDIT_FILTER_FIELDS)}."
                    for name in unknown
                }
            )
        filters = {k: v for k, v in request.query_params.dict().items() if k in AUDIT_FILTER_FIELDS}
        events = audit_event_list_for_project(project=access.project, filters=filters)
        paginator = PortalPagination()
        page = paginator.paginate_queryset(events, request, view=self)
        return paginator.get_paginated_response(AuditEventOutput(page, many=True).data)
