import uuid

from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import NotFound
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import selectors, services
from annotation.importing import ImportRefused
from annotation.metrics import project_agreement
from annotation.models import Dataset, DatasetUpload, Guideline, Item, LabelSchema, TaskType
from annotation.services.datasets import Provenance, dataset_upload_create, upload_progress
from portal import time_spent
from portal.authentication import ProjectTokenAuthentication, project_access_for_request
from portal.models import Role
from portal.pagination import PortalPagination
from portal.parsers import StrictJSONParser
from portal.selectors import project_access_get

DATA_READERS = (Role.ENGINEER, Role.ADMIN, Role.COMPLIANCE)
LOG_READERS = (*DATA_READERS, Role.ADJUDICATOR)


def _access(request: Request, project_id: int, *roles: str):
    access = project_access_for_request(request, project_id)
    if access is None:  # the token's owner is no member: as project_access_get answers
        raise Http404("No such project.")
    if access is False:
        access = project_access_get(project_id=project_id, user=request.user)
    return access.require(*roles)


# The queue endpoints are the ones an annotator's client calls for every item: their token
# check reads the caller's roles in the project in the same query.
QUEUE_AUTHENTICATION = [ProjectTokenAuthentication, SessionAuthentication]


class DatasetOutput(serializers.ModelSerializer):
    class Meta:
        model = Dataset
        fields = [
            "id",
            "name",
            "file_name",
            "file_format",
            "file_sha256",
            "file_bytes",
            "row_count",
            "source_description",
            "license",
            "consent_basis",
            "collection_date",
            "synthetic",
            "created_at",
        ]


class UploadOutput(serializers.ModelSerializer):
    rows = serializers.SerializerMethodField()

    class Meta:
        model = DatasetUpload
        fields = [
            "id",
            "file_name",
            "file_bytes",
            "status",
            "rows",
            "error",
            "dataset",
            "created_at",
            "finished_at",
        ]

    def get_rows(self, upload: DatasetUpload) -> int:
        return upload_progress(upload)


class DatasetUploadInput(serializers.Serializer):
    file = serializers.FileField()
    name = serializers.CharField(required=False, allow_blank=True, default="")
    source_description = serializers.CharField()
    license = serializers.CharField(max_length=100)
    consent_basis = serializers.CharField(max_length=200)
    collection_date = serializers.DateField()
    synthetic = serializers.BooleanField(default=False)
    required_fields = serializers.ListField(child=serializers.CharField(), required=False)
    metadata_fields = serializers.ListField(child=serializers.CharField(), required=False)


class DatasetListCreateApi(APIView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(responses=DatasetOutput(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        access = _access(request, project_id, *DATA_READERS)
        datasets = selectors.dataset_list_for_project(project=access.project)
        return Response(DatasetOutput(datasets, many=True).data)

    @extend_schema(request=DatasetUploadInput, responses={202: UploadOutput})
    def post(self, request: Request, project_id: int) -> Response:
        access = _access(request, project_id, Role.ENGINEER)
        payload = DatasetUploadInput(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        try:
            upload = dataset_upload_create(
                project=access.project,
                uploaded_by=request.user,
                file=data["file"],
                file_name=data["file"].name,
                name=data["name"],
                provenance=Provenance(
                    source_description=data["source_description"],
                    license=data["license"],
                    consent_basis=data["consent_basis"],
                    collection_date=data["collection_date"],
                    synthetic=data["synthetic"],
                ),
                required_fields=data.get("required_fields", []),
                metadata_fields=data.get("metadata_fields", []),
            )
        except ImportRefused as refused:
            raise serializers.ValidationError({"file": str(refused)}) from None
        return Response(UploadOutput(upload).data, status=status.HTTP_202_ACCEPTED)


class DatasetDetailApi(APIView):
    @extend_schema(responses=DatasetOutput)
    def get(self, request: Request, project_id: int, dataset_id: int) -> Response:
        access = _access(request, project_id, *DATA_READERS)
        dataset = selectors.dataset_get(project=access.project, dataset_id=dataset_id)
        if dataset is None:
            raise NotFound("No such dataset.")
        return Response(DatasetOutput(dataset).data)


class UploadDetailApi(APIView):
    @extend_schema(responses=UploadOutput)
    def get(self, request: Request, project_id: int, upload_id: uuid.UUID) -> Response:
        access = _access(request, project_id, *DATA_READERS)
        upload = selectors.upload_get(project=access.project, upload_id=upload_id)
        if upload is None:
            raise NotFound("No such upload.")
        return Response(UploadOutput(upload).data)


class SchemaOutput(serializers.ModelSerializer):
    class Meta:
        model = LabelSchema
        fields = ["id", "version", "task_type", "config", "created_at"]


class SchemaInput(serializers.Serializer):
    task_type = serializers.ChoiceField(choices=TaskType.choices)
    config = serializers.DictField()


class SchemaListCreateApi(APIView):
    @extend_schema(responses=SchemaOutput(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        access = _access(request, project_id, *DATA_READERS, Role.ANNOTATOR, Role.ADJUDICATOR)
        schemas = LabelSchema.objects.filter(project=access.project)
        return Response(SchemaOutput(schemas, many=True).data)

    @extend_schema(request=SchemaInput, responses={201: SchemaOutput})
    def post(self, request: Request, project_id: int) -> Response:
        access = _access(request, project_id, Role.ENGINEER, Role.ADMIN)
        payload = SchemaInput(data=request.data)
        payload.is_valid(raise_exception=True)
        schema = services.label_schema_publish(
            project=access.project, published_by=request.user, **payload.validated_data
        )
        return Response(SchemaOutput(schema).data, status=status.HTTP_201_CREATED)


class GuidelineOutput(serializers.ModelSerializer):
    class Meta:
        model = Guideline
        fields = ["id", "version", "markdown", "examples", "created_at"]


class GuidelineInput(serializers.Serializer):
    markdown = serializers.CharField()
    examples = serializers.ListField(child=serializers.DictField(), required=False)


class GuidelineListCreateApi(APIView):
    @extend_schema(responses=GuidelineOutput(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        access = _access(request, project_id, *DATA_READERS, Role.ANNOTATOR, Role.ADJUDICATOR)
        return Response(
            GuidelineOutput(Guideline.objects.filter(project=access.project), many=True).data
        )

    @extend_schema(request=GuidelineInput, responses={201: GuidelineOutput})
    def post(self, request: Request, project_id: int) -> Response:
        access = _access(request, project_id, Role.ENGINEER, Role.ADMIN)
        payload = GuidelineInput(data=request.data)
        payload.is_valid(raise_exception=True)
        guideline = services.guideline_publish(
            project=access.project, published_by=request.user, **payload.validated_data
        )
        return Response(GuidelineOutput(guideline).data, status=status.HTTP_201_CREATED)


class ItemOutput(serializers.ModelSerializer):
    # Stored encrypted (a text column of ciphertext); the model holds the decrypted JSON.
    payload = serializers.JSONField(read_only=True)

    class Meta:
        model = Item
        fields = [
            "id",
            "dataset",
            "row_number",
            "external_id",
            "payload",
            "content_hash",
            "metadata",
            "state",
            "priority",
            "label_count",
            "is_gold",
        ]


class ItemListApi(APIView):
    @extend_schema(responses=ItemOutput(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        access = _access(request, project_id, Role.ENGINEER, Role.ADMIN)
        unknown = sorted(
            set(request.query_params) - set(selectors.ITEM_FILTERS) - {"limit", "offset"}
        )
        if unknown:
            raise serializers.ValidationError(
                {
                    name: "Unknown filter; use one of " + ", ".join(selectors.ITEM_FILTERS)
                    for name in unknown
                }
            )
        filters = {k: v for k, v in request.query_params.items() if k in selectors.ITEM_FILTERS}
        paginator = PortalPagination()
        items = selectors.item_list(project=access.project, filters=filters)
        if not access.has(Role.ENGINEER):  # unredacted originals are for engineers only
            items = items.exclude(
                dataset__in=selectors.datasets_with_unredacted_pii(project=access.project)
            )
        page = paginator.paginate_queryset(items, request, view=self)
        return paginator.get_paginated_response(ItemOutput(page, many=True).data)


class TaskOutput(serializers.Serializer):
    lease = serializers.IntegerField()
    expires_at = serializers.DateTimeField()
    item = serializers.IntegerField()
    payload = serializers.DictField()
    schema_version = serializers.IntegerField()
    task_type = serializers.CharField()
    config = serializers.DictField()
    guideline_version = serializers.IntegerField(allow_null=True)


def _task_data(offer) -> dict | None:
    if offer is None:
        return None
    return {
        "lease": offer.lease.pk,
        "expires_at": offer.lease.expires_at,
        "item": offer.item.pk,
        "payload": offer.item.payload,
        "schema_version": offer.schema.version,
        "task_type": offer.schema.task_type,
        "config": offer.schema.config,
        "guideline_version": offer.guideline.version if offer.guideline else None,
    }


class QueueNextApi(APIView):
    authentication_classes = QUEUE_AUTHENTICATION
    parser_classes = [StrictJSONParser]

    @extend_schema(request=None, responses={200: TaskOutput, 204: None})
    def post(self, request: Request, project_id: int) -> Response:
        access = _access(request, project_id, Role.ANNOTATOR)
        offer = services.item_lease_next(project=access.project, annotator=request.user)
        if offer is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(_task_data(offer))


class SubmitInput(serializers.Serializer):
    lease = serializers.IntegerField()
    value = serializers.DictField()
    submission_id = serializers.UUIDField()
    seconds_spent = serializers.FloatField(required=False, allow_null=True)
    next = serializers.BooleanField(
        default=False, help_text="Also lease and return the next item (one request per item)."
    )


class QueueSubmitApi(APIView):
    authentication_classes = QUEUE_AUTHENTICATION
    parser_classes = [StrictJSONParser]

    @extend_schema(request=SubmitInput, responses={201: None})
    def post(self, request: Request, project_id: int) -> Response:
        """Store an answer. `seconds_spent` is the client's measure; the answer says what
        was recorded (`seconds_source`: client or server) and whether it was too fast."""
        access = _access(request, project_id, Role.ANNOTATOR)
        payload = SubmitInput(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        annotation = services.annotation_submit(
            project=access.project,
            lease_id=data["lease"],
            annotator=request.user,
            value=data["value"],
            submission_id=data["submission_id"],
            seconds_spent=data.get("seconds_spent"),
        )
        body = {
            "annotation": annotation.pk,
            "item": annotation.item_id,
            # What was recorded as time spent, and by which rule (portal.time_spent).
            "seconds_spent": annotation.seconds_spent,
            "seconds_source": annotation.seconds_source,
            "too_fast": annotation.too_fast,
            "time_rule": time_spent.RULE,
        }
        if data["next"]:
            offer = services.item_lease_next(project=access.project, annotator=request.user)
            body["next"] = _task_data(offer)
        return Response(body, status=status.HTTP_201_CREATED)


class SkipInput(serializers.Serializer):
    lease = serializers.IntegerField()
    reason = serializers.CharField()


class QueueSkipApi(APIView):
    authentication_classes = QUEUE_AUTHENTICATION
    parser_classes = [StrictJSONParser]

    @extend_schema(request=SkipInput, responses={200: None})
    def post(self, request: Request, project_id: int) -> Response:
        access = _access(request, project_id, Role.ANNOTATOR)
        payload = SkipInput(data=request.data)
        payload.is_valid(raise_exception=True)
        lease = services.item_skip(
            project=access.project,
            annotator=request.user,
            lease_id=payload.validated_data["lease"],
            reason=payload.validated_data["reason"],
        )
        return Response({"lease": lease.pk, "state": lease.state})


class QueueUndoApi(APIView):
    authentication_classes = QUEUE_AUTHENTICATION
    parser_classes = [StrictJSONParser]

    @extend_schema(request=None, responses={200: TaskOutput})
    def post(self, request: Request, project_id: int) -> Response:
        access = _access(request, project_id, Role.ANNOTATOR)
        offer = services.annotation_undo(project=access.project, annotator=request.user)
        return Response(TaskOutput(_task_data(offer)).data)


class AdjudicationNextApi(APIView):
    parser_classes = [StrictJSONParser]

    @extend_schema(request=None, responses={200: None, 204: None})
    def post(self, request: Request, project_id: int) -> Response:
        access = _access(request, project_id, Role.ADJUDICATOR)
        lease = services.adjudication_lease_next(project=access.project, adjudicator=request.user)
        if lease is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        view = selectors.adjudication_view(item=lease.item)
        return Response(
            {
                "lease": lease.pk,
                "item": lease.item_id,
                "payload": lease.item.payload,
                "labels": [
                    {
                        "annotator": label.pseudonym,
                        "value": label.value,
                        "gold_accuracy": label.gold_accuracy,
                    }
                    for label in view.labels
                ],
            }
        )


class ResolveInput(serializers.Serializer):
    item = serializers.IntegerField()
    value = serializers.DictField()
    reason = serializers.CharField()


class AdjudicationResolveApi(APIView):
    parser_classes = [StrictJSONParser]

    @extend_schema(request=ResolveInput, responses={201: None})
    def post(self, request: Request, project_id: int) -> Response:
        access = _access(request, project_id, Role.ADJUDICATOR)
        payload = ResolveInput(data=request.data)
        payload.is_valid(raise_exception=True)
        gold = services.adjudication_resolve(
            project=access.project,
            adjudicator=request.user,
            item_id=payload.validated_data["item"],
            value=payload.validated_data["value"],
            reason=payload.validated_data["reason"],
        )
        return Response(
            {"gold_label": gold.pk, "item": gold.item_id, "value": gold.value},
            status=status.HTTP_201_CREATED,
        )


class AgreementApi(APIView):
    @extend_schema(responses={200: None})
    def get(self, request: Request, project_id: int) -> Response:
        access = _access(request, project_id, *DATA_READERS)
        return Response(project_agreement(project=access.project))


class DisagreementListApi(APIView):
    @extend_schema(responses={200: None})
    def get(self, request: Request, project_id: int) -> Response:
        access = _access(request, project_id, *LOG_READERS)
        unknown = sorted(set(request.query_params) - set(selectors.DISAGREEMENT_FILTERS))
        if unknown:
            raise serializers.ValidationError({name: "Unknown filter" for name in unknown})
        return Response(
            selectors.disagreement_log(
                project=access.project, filters=dict(request.query_params.items())
            )
        )
