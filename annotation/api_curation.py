"""JSON API for snapshots, exports and quality checks."""

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from annotation import selectors
from annotation.models import QualityCheck, Snapshot
from annotation.services import quality
from annotation.services.exports import export_lines
from annotation.services.snapshots import snapshot_create
from core.access import ProjectApiView
from core.authentication import AuthenticatedRequest as Request
from core.models import RoleSet
from core.pagination import ARRAY_PAGE_PARAMETERS, array_page, strict_query


class SnapshotOutput(serializers.ModelSerializer):
    class Meta:
        model = Snapshot
        fields = [
            "id",
            "name",
            "version",
            "task_type",
            "seed",
            "split_ratios",
            "filter",
            "member_count",
            "manifest_sha256",
            "stats",
            "created_at",
        ]


class SnapshotCreatedOutput(SnapshotOutput):
    leakage = serializers.JSONField(
        read_only=True, help_text="The snapshot's leakage check: its status and findings."
    )

    class Meta(SnapshotOutput.Meta):
        fields = [*SnapshotOutput.Meta.fields, "leakage"]


class SnapshotDetailOutput(SnapshotCreatedOutput):
    comparison = serializers.JSONField(
        required=False, help_text="With `?compare=<id>`: what changed."
    )

    class Meta(SnapshotCreatedOutput.Meta):
        fields = [*SnapshotCreatedOutput.Meta.fields, "comparison"]


class SnapshotInput(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    seed = serializers.IntegerField(default=0)
    split_ratios = serializers.DictField(child=serializers.FloatField(), required=False)
    filter = serializers.DictField(required=False)


class SnapshotListCreateApi(ProjectApiView):
    roles = {"GET": RoleSet.OVERSIGHT, "POST": RoleSet.ENGINEERS}

    @extend_schema(parameters=ARRAY_PAGE_PARAMETERS, responses=SnapshotOutput(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        """The project's snapshots, newest first."""
        access = self.access
        strict_query(request, [])
        snapshots = selectors.snapshot_list_for_project(project=access.project)
        return array_page(
            snapshots,
            request,
            self,
            lambda page: SnapshotOutput(page, many=True).data,
            ordering="-id",
        )

    @extend_schema(request=SnapshotInput, responses={201: SnapshotCreatedOutput})
    def post(self, request: Request, project_id: int) -> Response:
        access = self.access
        payload = SnapshotInput(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        snapshot = snapshot_create(
            actor=request.user,
            project=access.project,
            name=data["name"],
            seed=data["seed"],
            split_ratios=data.get("split_ratios"),
            filter=data.get("filter"),
        )
        body = SnapshotOutput(snapshot).data
        # Every snapshot's leakage check starts as it is made; this says it is under way.
        body["leakage"] = selectors.snapshot_leakage_status(snapshot=snapshot)
        return Response(body, status=status.HTTP_201_CREATED)


class SnapshotDetailApi(ProjectApiView):
    roles = RoleSet.OVERSIGHT

    @extend_schema(responses=SnapshotDetailOutput, parameters=[OpenApiParameter("compare", int)])
    def get(self, request: Request, project_id: int, snapshot_id: int) -> Response:
        access = self.access
        snapshot = selectors.snapshot_get(project=access.project, snapshot_id=snapshot_id)
        if snapshot is None:
            raise NotFound("No such snapshot.")
        body = SnapshotOutput(snapshot).data
        body["leakage"] = selectors.snapshot_leakage_status(snapshot=snapshot)
        compare = request.query_params.get("compare")
        if compare:
            other = selectors.snapshot_get(
                project=access.project, snapshot_id=int(compare) if compare.isdigit() else 0
            )
            if other is None:
                raise NotFound("No such snapshot to compare with.")
            result = selectors.snapshot_compare(old=other, new=snapshot)
            body["comparison"] = {"against": other.pk, **result.__dict__}
        return Response(body)


class SnapshotExportApi(ProjectApiView):
    """Streams JSON Lines; engineers only."""

    roles = RoleSet.ENGINEERS

    @extend_schema(
        responses={(200, "application/x-ndjson"): OpenApiTypes.STR},
        parameters=[OpenApiParameter("split", str, enum=["train", "validation", "test"])],
    )
    def get(self, request: Request, project_id: int, snapshot_id: int, fmt: str):
        access = self.access
        snapshot = selectors.snapshot_get(project=access.project, snapshot_id=snapshot_id)
        if snapshot is None:
            raise NotFound("No such snapshot.")
        lines = export_lines(
            snapshot=snapshot, fmt=fmt, split=request.query_params.get("split") or None
        )
        response = StreamingHttpResponse(lines, content_type="application/x-ndjson")
        response["X-Manifest-SHA256"] = snapshot.manifest_sha256
        return response


class CheckOutput(serializers.ModelSerializer):
    class Meta:
        model = QualityCheck
        fields = [
            "id",
            "kind",
            "dataset",
            "snapshot",
            "params",
            "status",
            "done",
            "total",
            "result",
            "error",
            "created_at",
            "finished_at",
        ]


class CheckInput(serializers.Serializer):
    kind = serializers.ChoiceField(choices=QualityCheck.Kind.choices)
    dataset = serializers.IntegerField(required=False)
    snapshot = serializers.IntegerField(required=False)
    params = serializers.DictField(required=False)


class CheckListCreateApi(ProjectApiView):
    roles = {"GET": RoleSet.OVERSIGHT, "POST": RoleSet.ENGINEERS}

    @extend_schema(parameters=ARRAY_PAGE_PARAMETERS, responses=CheckOutput(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        """The project's quality checks, newest first."""
        access = self.access
        strict_query(request, [])
        return array_page(
            selectors.quality_check_query(project=access.project),
            request,
            self,
            lambda page: CheckOutput(page, many=True).data,
            ordering="-id",
        )

    @extend_schema(request=CheckInput, responses={202: CheckOutput})
    def post(self, request: Request, project_id: int) -> Response:
        access = self.access
        payload = CheckInput(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        dataset = snapshot = None
        if "dataset" in data:
            dataset = selectors.dataset_get(project=access.project, dataset_id=data["dataset"])
            if dataset is None:
                raise serializers.ValidationError({"dataset": "no such dataset in this project"})
        if "snapshot" in data:
            snapshot = selectors.snapshot_get(project=access.project, snapshot_id=data["snapshot"])
            if snapshot is None:
                raise serializers.ValidationError({"snapshot": "no such snapshot in this project"})
        check = quality.quality_check_start(
            actor=request.user,
            project=access.project,
            kind=data["kind"],
            dataset=dataset,
            snapshot=snapshot,
            params=data.get("params"),
        )
        return Response(CheckOutput(check).data, status=status.HTTP_202_ACCEPTED)


class CheckDetailApi(ProjectApiView):
    roles = RoleSet.OVERSIGHT

    @extend_schema(responses=CheckOutput)
    def get(self, request: Request, project_id: int, check_id: int) -> Response:
        access = self.access
        check = selectors.quality_check_get(project=access.project, check_id=check_id)
        if check is None:
            raise NotFound("No such check.")
        return Response(CheckOutput(check).data)
