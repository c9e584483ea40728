from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from core.access import ProjectApiView
from core.authentication import AuthenticatedRequest as Request
from core.client_ip import client_ip_get
from core.models import AuditEvent, RoleSet
from core.pagination import CURSOR_PARAMETERS, OFFSET_PARAMETER, cursor_page, page_of, strict_query
from governance import selectors
from governance.models import Dossier
from governance.selectors import AUDIT_FILTER_FIELDS, audit_event_list_for_project
from governance.services import dossiers
from training import selectors as training_selectors


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


class DossierOutput(serializers.ModelSerializer):
    class Meta:
        model = Dossier
        fields = [
            "id",
            "model_version",
            "status",
            "progress",
            "step",
            "inputs_sha256",
            "bundle_sha256",
            "bundle_bytes",
            "warnings",
            "error",
            "created_at",
            "finished_at",
        ]


class DossierListCreateApi(ProjectApiView):
    """A model version's dossier builds; POST asks for the dossier as the data stands now
    (a finished build with the same inputs is answered at once, else one is queued)."""

    roles = RoleSet.OVERSIGHT

    @extend_schema(responses=DossierOutput(many=True))
    def get(self, request: Request, project_id: int, version_id: int) -> Response:
        version = training_selectors.model_version_get(
            project=self.access.project, version_id=version_id
        )
        builds = selectors.dossier_list_for_version(version=version)
        return Response(DossierOutput(builds, many=True).data)

    @extend_schema(request=None, responses={200: DossierOutput, 202: DossierOutput})
    def post(self, request: Request, project_id: int, version_id: int) -> Response:
        version = training_selectors.model_version_get(
            project=self.access.project, version_id=version_id
        )
        dossier = dossiers.dossier_request(actor=request.user, version=version)
        done = dossier.status == Dossier.Status.SUCCEEDED
        return Response(DossierOutput(dossier).data, status=status.HTTP_200_OK if done else 202)


def _dossier(access, dossier_id: int) -> Dossier:
    dossier = selectors.dossier_get(project=access.project, dossier_id=dossier_id)
    if dossier is None:
        raise NotFound("No such dossier.")
    return dossier


class DossierDetailApi(ProjectApiView):
    roles = RoleSet.OVERSIGHT

    @extend_schema(responses=DossierOutput)
    def get(self, request: Request, project_id: int, dossier_id: int) -> Response:
        return Response(DossierOutput(_dossier(self.access, dossier_id)).data)


class DossierDownloadApi(ProjectApiView):
    """The signed bundle (a zip). Every download is written to the access log, as the
    compliance page's download is."""

    roles = RoleSet.OVERSIGHT

    @extend_schema(responses={(200, "application/zip"): OpenApiTypes.BINARY})
    def get(self, request: Request, project_id: int, dossier_id: int) -> FileResponse:
        dossier = _dossier(self.access, dossier_id)
        if dossier.status != Dossier.Status.SUCCEEDED:
            raise NotFound("The dossier is not built yet.")
        try:
            handle = open(dossier.file_path, "rb")  # noqa: SIM115 - FileResponse closes it
        except OSError:
            raise NotFound("The dossier file is gone; request it again to rebuild it.") from None
        dossiers.dossier_download_record(
            actor=request.user,
            dossier=dossier,
            ip_address=client_ip_get(request),
            user_agent=request.META.get("HTTP_USER_AGENT", ""),
        )
        response = FileResponse(
            handle, as_attachment=True, filename=dossier.file_name, content_type="application/zip"
        )
        response["X-Bundle-SHA256"] = dossier.bundle_sha256
        return response
