"""The governance API: the audit log, dossiers, sign-offs, stage changes (promotion and
rollback) and use declarations. Each write calls the service the compliance screens call,
so the same rules (and role checks inside them) hold for both."""

from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from core.access import ProjectApiView
from core.api_errors import StrictInput
from core.authentication import AuthenticatedRequest as Request
from core.client_ip import client_ip_get
from core.models import AuditEvent, RoleSet
from core.pagination import (
    ARRAY_PAGE_PARAMETERS,
    CURSOR_PARAMETERS,
    OFFSET_PARAMETER,
    array_page,
    cursor_page,
    page_of,
    strict_query,
)
from core.parsers import StrictJSONParser
from governance import selectors
from governance.models import Dossier, SignOff, SignOffRole, StageChange, UseDeclaration
from governance.selectors import AUDIT_FILTER_FIELDS, audit_event_list_for_project
from governance.services import approvals, dossiers, stages
from training import selectors as training_selectors
from training.selectors import ModelVersion


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


# --- approvals and stage changes: the compliance screen's forms, as endpoints ------------


class SignOffOutput(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username")

    class Meta:
        model = SignOff
        fields = ["id", "model_version", "role", "decision", "username", "comment", "created_at"]


class ApprovalOutput(serializers.Serializer):
    model_version = serializers.IntegerField()
    # A declared field, not the stubs' Serializer/Field attribute `required`.
    required = serializers.DictField(  # type: ignore[assignment]
        child=serializers.IntegerField(), help_text="Approvals the policy needs, by role."
    )
    approvals = serializers.DictField(child=serializers.IntegerField())
    missing = serializers.ListField(
        child=serializers.CharField(), help_text='What is still needed ("1 × Compliance ...").'
    )
    rejected = serializers.BooleanField(help_text="Someone rejected it: no promotion.")
    satisfied = serializers.BooleanField(help_text="The sign-offs a promotion needs are in.")
    signoffs = SignOffOutput(many=True)


def _approval_data(version: ModelVersion) -> dict:
    status_ = selectors.approval_status(version=version)
    return {
        "model_version": version.pk,
        "required": status_.required,
        "approvals": status_.approvals,
        "missing": status_.missing,
        "rejected": bool(status_.rejections),
        "satisfied": status_.satisfied,
        "signoffs": SignOffOutput(status_.signoffs, many=True).data,
    }


class SignOffInput(StrictInput):
    role = serializers.ChoiceField(
        choices=SignOffRole.choices,
        help_text="engineering_lead (needs the engineer role) or compliance (compliance role).",
    )
    decision = serializers.ChoiceField(choices=SignOff.Decision.choices)
    comment = serializers.CharField(
        allow_blank=True, help_text="What was checked; a sign-off without one is refused."
    )


class SignOffListCreateApi(ProjectApiView):
    """A model version's sign-offs and what its promotion still needs; POST records the
    caller's decision, once per person and version (the compliance screen's sign-off)."""

    parser_classes = [StrictJSONParser]
    roles = {"GET": RoleSet.OVERSIGHT, "POST": RoleSet.SIGNERS}

    @extend_schema(responses=ApprovalOutput)
    def get(self, request: Request, project_id: int, version_id: int) -> Response:
        version = training_selectors.model_version_get(
            project=self.access.project, version_id=version_id
        )
        return Response(_approval_data(version))

    @extend_schema(request=SignOffInput, responses={201: SignOffOutput})
    def post(self, request: Request, project_id: int, version_id: int) -> Response:
        version = training_selectors.model_version_get(
            project=self.access.project, version_id=version_id
        )
        payload = SignOffInput(data=request.data)
        payload.is_valid(raise_exception=True)
        signoff = approvals.signoff_record(
            actor=request.user, version=version, **payload.validated_data
        )
        return Response(SignOffOutput(signoff).data, status=status.HTTP_201_CREATED)


class StageChangeOutput(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor.username", allow_null=True)

    class Meta:
        model = StageChange
        fields = [
            "id",
            "model_version",
            "from_stage",
            "to_stage",
            "kind",
            "reason",
            "gate_run_id",
            "actor",
            "created_at",
        ]


class StageChangeInput(StrictInput):
    stage = serializers.ChoiceField(
        choices=ModelVersion.Stage.choices,
        help_text="canary (from candidate) or production (from canary); production for an "
        "archived version is a rollback to it.",
    )
    reason = serializers.CharField(required=False, allow_blank=True, default="")


class StageChangeResultOutput(serializers.Serializer):
    model_version = serializers.IntegerField()
    stage = serializers.CharField(help_text="The version's stage after the change.")
    changes = StageChangeOutput(many=True, help_text="Every stage change of this version.")


class StageChangeListCreateApi(ProjectApiView):
    """A model version's stage history; POST moves it on (candidate → canary → production),
    as the compliance screen's promote form does: its latest gate run must have passed and
    the policy's sign-offs be in, else a 400 says what is missing."""

    parser_classes = [StrictJSONParser]
    roles = {"GET": RoleSet.OVERSIGHT, "POST": RoleSet.MANAGERS}

    @extend_schema(parameters=ARRAY_PAGE_PARAMETERS, responses=StageChangeOutput(many=True))
    def get(self, request: Request, project_id: int, version_id: int) -> Response:
        version = training_selectors.model_version_get(
            project=self.access.project, version_id=version_id
        )
        changes = selectors.stage_changes_for_version(version=version)
        return array_page(
            changes, request, self, lambda page: StageChangeOutput(page, many=True).data
        )

    @extend_schema(request=StageChangeInput, responses={201: StageChangeResultOutput})
    def post(self, request: Request, project_id: int, version_id: int) -> Response:
        version = training_selectors.model_version_get(
            project=self.access.project, version_id=version_id
        )
        payload = StageChangeInput(data=request.data)
        payload.is_valid(raise_exception=True)
        moved = stages.model_version_stage_change(
            actor=request.user,
            version=version,
            to_stage=payload.validated_data["stage"],
            reason=payload.validated_data["reason"],
        )
        changes = selectors.stage_changes_for_version(version=moved)
        body = {
            "model_version": moved.pk,
            "stage": moved.stage,
            "changes": StageChangeOutput(changes, many=True).data,
        }
        return Response(body, status=status.HTTP_201_CREATED)


class RollbackInput(StrictInput):
    reason = serializers.CharField(allow_blank=True, help_text="Why; a rollback needs one.")


class RollbackApi(ProjectApiView):
    """Put back in production the version that held it before the current one (which is
    archived), as the compliance screen's rollback button does."""

    parser_classes = [StrictJSONParser]
    roles = RoleSet.MANAGERS

    @extend_schema(request=RollbackInput, responses={201: StageChangeResultOutput})
    def post(self, request: Request, project_id: int) -> Response:
        payload = RollbackInput(data=request.data)
        payload.is_valid(raise_exception=True)
        restored = stages.model_version_rollback(
            actor=request.user, project=self.access.project, reason=payload.validated_data["reason"]
        )
        changes = selectors.stage_changes_for_version(version=restored)
        body = {
            "model_version": restored.pk,
            "stage": restored.stage,
            "changes": StageChangeOutput(changes, many=True).data,
        }
        return Response(body, status=status.HTTP_201_CREATED)


class UseDeclarationOutput(serializers.ModelSerializer):
    declared = serializers.SerializerMethodField(
        help_text="false until someone set the declaration (every other field is empty then)."
    )
    updated_by = serializers.CharField(source="updated_by.username", allow_null=True)
    updated_at = serializers.DateTimeField(allow_null=True)

    class Meta:
        model = UseDeclaration
        fields = [
            "declared",
            "model_version",
            "intended_use",
            "limitations",
            "out_of_scope",
            "license",
            "commercial_use",
            "updated_by",
            "updated_at",
        ]

    def get_declared(self, declaration: UseDeclaration) -> bool:
        return declaration.pk is not None


class UseDeclarationInput(StrictInput):
    intended_use = serializers.CharField(allow_blank=True)
    limitations = serializers.CharField(required=False, allow_blank=True, default="")
    out_of_scope = serializers.CharField(required=False, allow_blank=True, default="")
    license = serializers.CharField(
        max_length=100, allow_blank=True, help_text='An SPDX id, or "proprietary".'
    )
    commercial_use = serializers.BooleanField(default=False)


class UseDeclarationApi(ProjectApiView):
    """What a version is for and its license, which the dossier's intended-use section and
    license check read; PUT sets it (the compliance screen's declaration form)."""

    parser_classes = [StrictJSONParser]
    roles = {"GET": RoleSet.OVERSIGHT, "PUT": RoleSet.MANAGERS}

    @extend_schema(responses=UseDeclarationOutput)
    def get(self, request: Request, project_id: int, version_id: int) -> Response:
        version = training_selectors.model_version_get(
            project=self.access.project, version_id=version_id
        )
        declaration = selectors.use_declaration_for(version=version) or UseDeclaration(
            project_id=version.project_id, model_version=version, license=""
        )
        return Response(UseDeclarationOutput(declaration).data)

    @extend_schema(request=UseDeclarationInput, responses=UseDeclarationOutput)
    def put(self, request: Request, project_id: int, version_id: int) -> Response:
        version = training_selectors.model_version_get(
            project=self.access.project, version_id=version_id
        )
        payload = UseDeclarationInput(data=request.data)
        payload.is_valid(raise_exception=True)
        declaration = approvals.use_declaration_set(
            actor=request.user, version=version, **payload.validated_data
        )
        return Response(UseDeclarationOutput(declaration).data)
