"""The fine-tuning API, shaped like OpenAI's: job objects, events, checkpoints, cancel; plus
the model registry and the base models. Engineers create and cancel; admins and compliance
read."""

from typing import Any

from django.core.exceptions import ValidationError
from django.http import Http404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError as DrfValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from core.access import ProjectApiView
from core.api_errors import StrictInput, field_lists
from core.authentication import AuthenticatedRequest as Request
from core.models import JobStatus, RoleSet
from core.pagination import CursorListQuery, PortalCursorPagination
from core.parsers import StrictJSONParser
from training import presets, selectors, services
from training.models import BaseModel, JobKind, JobMethod, ModelVersion, TrainingJob
from training.selectors.compression import compression_family
from training.services.base_models import display_path, scrub_paths
from training.services.compression import compression_job_create


def _ts(value) -> int | None:
    return int(value.timestamp()) if value else None


class JobOutput(serializers.ModelSerializer):
    object = serializers.SerializerMethodField()
    model = serializers.SerializerMethodField()
    fine_tuned_model = serializers.SerializerMethodField()
    hyperparameters = serializers.JSONField(source="config")
    created_at = serializers.SerializerMethodField()
    finished_at = serializers.SerializerMethodField()
    estimated_finish = serializers.SerializerMethodField()

    class Meta:
        model = TrainingJob
        fields = [
            "id",
            "object",
            "name",
            "kind",
            "method",
            "model",
            "status",
            "cancel_requested",
            "fine_tuned_model",
            "hyperparameters",
            "seed",
            "manifest_sha256",
            "data",
            "preflight",
            "progress",
            "environment",
            "checkpoint_sha256",
            "error",
            "created_at",
            "finished_at",
            "estimated_finish",
        ]

    def get_object(self, job) -> str:
        return "fine_tuning.job"

    def to_representation(self, job) -> dict:
        """Server paths (training files, tracebacks) are shown relative to their folder."""
        body = super().to_representation(job)
        body["data"] = {
            key: {**value, "path": display_path(value["path"])}
            if isinstance(value, dict) and value.get("path")
            else value
            for key, value in (body["data"] or {}).items()
        }
        body["error"] = scrub_paths(body["error"] or "")
        return body

    def get_model(self, job) -> str:
        return job.base_model.name

    def get_fine_tuned_model(self, job) -> int | None:
        version = ModelVersion.objects.filter(job=job).values_list("pk", flat=True).first()
        return version

    def get_created_at(self, job) -> int | None:
        return _ts(job.created_at)

    def get_finished_at(self, job) -> int | None:
        return _ts(job.finished_at)

    def get_estimated_finish(self, job) -> int | None:
        seconds = job.preflight.get("estimated_seconds") if job.preflight else None
        if seconds is None or job.started_at is None or not job.is_active:
            return None
        return int(job.started_at.timestamp() + seconds)


class JobInput(StrictInput):
    model = serializers.IntegerField(help_text="Id of a base model (GET base_models/).")
    # Compression kinds start from a version: POST models/<id>/compressions/.
    kind = serializers.ChoiceField(
        choices=[c for c in JobKind.choices if c[0] in presets.KINDS], default=JobKind.SFT
    )
    method = serializers.ChoiceField(choices=JobMethod.choices, default=JobMethod.LORA)
    name = serializers.CharField(required=False, allow_blank=True, default="")
    preset = serializers.ChoiceField(choices=list(presets.PRESETS), required=False)
    hyperparameters = serializers.DictField(required=False, default=dict)
    training_file = serializers.CharField(required=False, help_text="A file id from files/.")
    validation_file = serializers.CharField(required=False)
    snapshot = serializers.IntegerField(required=False)
    accept_leakage = serializers.BooleanField(
        default=False,
        help_text="Train on a snapshot whose leakage check found duplicates across splits.",
    )
    parent_version = serializers.IntegerField(required=False)
    reward_version = serializers.IntegerField(required=False)


def _openai_list(item: type[serializers.Serializer], name: str) -> type[serializers.Serializer]:
    """The schema of an OpenAI-style list: `{"object": "list", "data": [...]}`."""
    fields = {"object": serializers.CharField(help_text='Always "list".'), "data": item(many=True)}
    return type(name, (serializers.Serializer,), fields)


class JobListCreateApi(ProjectApiView):
    roles = {"GET": RoleSet.OVERSIGHT, "POST": RoleSet.ENGINEERS}

    @extend_schema(
        operation_id="v1_projects_fine_tuning_jobs_list",
        responses=_openai_list(JobOutput, "JobList"),
    )
    def get(self, request: Request, project_id: int) -> Response:
        access = self.access
        jobs = selectors.job_list_for_project(project=access.project)[:100]
        return Response({"object": "list", "data": JobOutput(jobs, many=True).data})

    @extend_schema(request=JobInput, responses={201: JobOutput})
    def post(self, request: Request, project_id: int) -> Response:
        access = self.access
        project = access.project
        payload = JobInput(data=request.data)
        if not payload.is_valid():
            # Name the settings' problems too, not only the body's: one answer, every error.
            errors: dict[str, list[str]] = field_lists(payload.errors)
            for field, messages in _config_errors(project, request.data).items():
                errors.setdefault(field, messages)
            raise DrfValidationError(errors)
        data = payload.validated_data
        errors = {}
        base = _lookup(
            errors, "model", selectors.base_model_get, project=project, base_model_id=data["model"]
        )
        versions = {
            key: _lookup(
                errors, key, selectors.model_version_get, project=project, version_id=data[key]
            )
            for key in ("parent_version", "reward_version")
            if data.get(key)
        }
        snapshot = _lookup(errors, "snapshot", _snapshot, project, data.get("snapshot"))
        train = eval_ = None
        if snapshot is None and "snapshot" not in errors:
            if not data.get("training_file"):
                errors["training_file"] = ["Give a file id or a snapshot."]
            else:
                train = _lookup(
                    errors,
                    "training_file",
                    services.training_file_path,
                    project=project,
                    file_id=data["training_file"],
                )
            if data.get("validation_file"):
                eval_ = _lookup(
                    errors,
                    "validation_file",
                    services.training_file_path,
                    project=project,
                    file_id=data["validation_file"],
                )
        if base is None:
            raise DrfValidationError(errors)
        try:
            job = services.training_job_create(
                actor=request.user,
                project=project,
                name=data["name"],
                kind=data["kind"],
                method=data["method"],
                base_model=base,
                values=data["hyperparameters"],
                preset=data.get("preset"),
                snapshot=snapshot,
                accept_leakage=data["accept_leakage"],
                train_file=train,
                eval_file=eval_,
                **{key: version for key, version in versions.items() if version is not None},
            )
        except ValidationError as error:
            found = (
                error.message_dict if hasattr(error, "error_dict") else {"detail": error.messages}
            )
            # The service knows the files by the names it was given; the API by its fields.
            renamed = {"train_file": "training_file", "eval_file": "validation_file"}
            for field, messages in found.items():
                errors.setdefault(renamed.get(field, field), []).extend(messages)
        if errors:
            raise DrfValidationError(errors)
        return Response(JobOutput(job).data, status=status.HTTP_201_CREATED)


def _lookup(errors: dict[str, list[str]], field: str, find, *args, **kwargs):
    """`find(...)`, or None with the reason added to `errors` under `field` (a missing or
    foreign object is a wrong value in this request, not a missing page)."""
    try:
        return find(*args, **kwargs)
    except Http404 as missing:
        errors.setdefault(field, []).append(str(missing))
    except ValidationError as error:
        errors.setdefault(field, []).extend(error.messages)
    return None


def _config_errors(project, body) -> dict[str, list[str]]:
    """What the settings in a body that failed its own checks would be refused for, checked
    from its raw values where they have the right types."""
    if not isinstance(body, dict):
        return {}
    values = body.get("hyperparameters") or {}
    kind, method, preset = (
        body.get("kind", JobKind.SFT),
        body.get("method", JobMethod.LORA),
        body.get("preset"),
    )
    if not isinstance(values, dict) or not all(isinstance(v, str) for v in (kind, method)):
        return {}
    base = None
    if isinstance(body.get("model"), int) and not isinstance(body.get("model"), bool):
        base = (
            selectors.base_model_list_for_project(project=project).filter(pk=body["model"]).first()
        )
    try:
        presets.check_config(
            kind=kind,
            method=method,
            values=values,
            preset=preset if isinstance(preset, str) else None,
            info=base.info if base is not None else None,
        )
    except presets.ConfigError as error:
        return {field: [message] for field, message in error.errors.items()}
    return {}


def _snapshot(project, snapshot_id):
    if not snapshot_id:
        return None
    from annotation.models import Snapshot

    snapshot = Snapshot.objects.filter(project=project, pk=snapshot_id).first()
    if snapshot is None:
        raise ValidationError("No such snapshot in this project.")
    return snapshot


class JobDetailApi(ProjectApiView):
    roles = RoleSet.OVERSIGHT

    @extend_schema(responses=JobOutput)
    def get(self, request: Request, project_id: int, job_id: int) -> Response:
        access = self.access
        return Response(JobOutput(selectors.job_get(project=access.project, job_id=job_id)).data)


class JobCancelApi(ProjectApiView):
    roles = RoleSet.ENGINEERS

    @extend_schema(request=None, responses=JobOutput)
    def post(self, request: Request, project_id: int, job_id: int) -> Response:
        access = self.access
        job = selectors.job_get(project=access.project, job_id=job_id)
        job = services.training_job_cancel(actor=request.user, job=job)
        return Response(JobOutput(job).data)


class EventOutput(serializers.Serializer):
    object = serializers.CharField()
    id = serializers.CharField()
    created_at = serializers.IntegerField()
    level = serializers.CharField()
    message = serializers.CharField()
    type = serializers.CharField()
    # A declared field, not the stubs' Serializer/Field attribute `data`.
    data = serializers.JSONField()  # type: ignore[assignment]


def _after(cursors: list[str], prefix: str) -> int:
    ids = [c[len(prefix) :] for c in cursors if c.startswith(prefix)]
    return max((int(i) for i in ids if i.isdigit()), default=0)


class JobEventsApi(ProjectApiView):
    """Log lines and metrics in order; `after=<id>` (an event id) pages forward. Logs and
    metrics are counted apart, so a client that follows a job sends both of its cursors
    (`after=log-12&after=metric-40`) and is sent only what is new of each."""

    roles = RoleSet.OVERSIGHT

    @extend_schema(
        operation_id="v1_projects_fine_tuning_jobs_events_list",
        responses=_openai_list(EventOutput, "EventList"),
        parameters=[OpenApiParameter("after", str, many=True, required=False)],
    )
    def get(self, request: Request, project_id: int, job_id: int) -> Response:
        access = self.access
        job = selectors.job_get(project=access.project, job_id=job_id)
        cursors = request.query_params.getlist("after")
        log_after, metric_after = _after(cursors, "log-"), _after(cursors, "metric-")
        events: list[dict[str, Any]] = [
            {
                "object": "fine_tuning.job.event",
                "id": f"log-{line.pk}",
                "created_at": _ts(line.created_at),
                "level": line.level,
                "message": scrub_paths(line.message),
                "type": "message",
                "data": {},
                "_order": line.created_at,
            }
            for line in selectors.job_log_lines(job=job, after_id=log_after)
        ]
        events += [
            {
                "object": "fine_tuning.job.event",
                "id": f"metric-{m.pk}",
                "created_at": _ts(m.created_at),
                "level": "info",
                "message": f"Step {m.step}",
                "type": "metrics",
                "data": {"step": m.step, **m.values},
                "_order": m.created_at,
            }
            for m in selectors.job_metrics(job=job, after_id=metric_after)[:1000]
        ]
        events.sort(key=lambda e: e.pop("_order"))
        return Response({"object": "list", "data": events})


class CheckpointOutput(serializers.Serializer):
    # Read-only: in every answer, so required in the schema.
    object = serializers.CharField(read_only=True, default="fine_tuning.job.checkpoint")
    id = serializers.IntegerField()
    step_number = serializers.IntegerField(source="step")
    metrics = serializers.JSONField()
    files = serializers.JSONField()
    created_at = serializers.SerializerMethodField()

    def get_created_at(self, checkpoint) -> int | None:
        return _ts(checkpoint.created_at)


class JobCheckpointsApi(ProjectApiView):
    roles = RoleSet.OVERSIGHT

    @extend_schema(
        operation_id="v1_projects_fine_tuning_jobs_checkpoints_list",
        responses=_openai_list(CheckpointOutput, "CheckpointList"),
    )
    def get(self, request: Request, project_id: int, job_id: int) -> Response:
        access = self.access
        job = selectors.job_get(project=access.project, job_id=job_id)
        data = CheckpointOutput(selectors.job_checkpoints(job=job), many=True).data
        return Response({"object": "list", "data": data})


class FileInput(serializers.Serializer):
    file = serializers.FileField()


class FileOutput(serializers.Serializer):
    object = serializers.CharField(read_only=True, default="file")
    id = serializers.CharField()
    filename = serializers.CharField()
    sha256 = serializers.CharField()
    rows = serializers.IntegerField()


class TrainingFileCreateApi(ProjectApiView):
    parser_classes = [MultiPartParser, FormParser]
    roles = RoleSet.ENGINEERS

    @extend_schema(request=FileInput, responses={201: FileOutput})
    def post(self, request: Request, project_id: int) -> Response:
        access = self.access
        payload = FileInput(data=request.data)
        payload.is_valid(raise_exception=True)
        upload = payload.validated_data["file"]
        stored = services.training_file_store(
            project=access.project, upload=upload, name=upload.name, actor=request.user
        )
        body = {
            "object": "file",
            "id": stored["id"],
            "filename": stored["name"],
            "sha256": stored["sha256"],
            "rows": stored["rows"],
        }
        return Response(body, status=status.HTTP_201_CREATED)


class ModelVersionOutput(serializers.ModelSerializer):
    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "name",
            "base_model",
            "job",
            "parent",
            "kind",
            "task",
            "path",
            "merged_path",
            "base_weights_sha256",
            "checkpoint_sha256",
            "metrics",
            "stage",
            "created_at",
        ]

    def to_representation(self, version) -> dict:
        """Weights are named relative to the portal's folders, never by server path."""
        body = super().to_representation(version)
        for key in ("path", "merged_path"):
            body[key] = display_path(body[key]) if body[key] else ""
        return body


class LineageNodeOutput(serializers.Serializer):
    key = serializers.CharField()
    kind = serializers.CharField()
    id = serializers.IntegerField(source="pk", allow_null=True)
    project = serializers.IntegerField(source="project_id", allow_null=True)
    visible = serializers.BooleanField()
    name = serializers.CharField()
    detail = serializers.CharField()
    hashes = serializers.DictField(child=serializers.CharField())
    current = serializers.BooleanField()
    url = serializers.SerializerMethodField()
    api_url = serializers.SerializerMethodField()

    def _project(self, node) -> int:
        # A base model shared by every project is listed under the caller's project.
        return node.project_id or self.context["project_id"]

    def get_url(self, node) -> str | None:
        if not node.visible:
            return None
        name = {
            "dataset": "annotation:dataset",
            "snapshot": "annotation:snapshot",
            "job": "training:job",
            "version": "training:version",
        }.get(node.kind)
        if name is None:
            return reverse("training:base_models", args=[self._project(node)])
        return reverse(name, args=[self._project(node), node.pk])

    def get_api_url(self, node) -> str | None:
        if not node.visible:
            return None
        name = {
            "dataset": "annotation-api:api-dataset",
            "snapshot": "annotation-api:api-snapshot",
            "job": "training-api:api-job",
            "version": "training-api:api-model-version",
        }.get(node.kind)
        if name is None:
            return reverse("training-api:api-base-models", args=[self._project(node)])
        return reverse(name, args=[self._project(node), node.pk])


class LineageOutput(serializers.Serializer):
    nodes = LineageNodeOutput(many=True)
    edges = serializers.SerializerMethodField()

    def get_edges(self, lineage) -> list[dict]:
        return [{"from": a, "to": b, "relation": r} for a, b, r in lineage.edges]


class ModelVersionDetailOutput(ModelVersionOutput):
    """A version with the whole lineage the dossier's lineage.json holds: datasets (file
    hashes), snapshots (manifest hashes), jobs, base models and parent versions, each with
    the page and API address the caller may open (none for nodes they may not see)."""

    lineage = serializers.SerializerMethodField()

    class Meta(ModelVersionOutput.Meta):
        fields = [*ModelVersionOutput.Meta.fields, "lineage"]

    @extend_schema_field(LineageOutput)
    def get_lineage(self, version) -> dict:
        view = selectors.model_version_lineage_for_user(
            version=version, user=self.context["request"].user
        )
        return LineageOutput(view, context={"project_id": version.project_id}).data


class ModelVersionListApi(ProjectApiView):
    roles = RoleSet.OVERSIGHT

    @extend_schema(responses=ModelVersionOutput(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        access = self.access
        versions = selectors.model_version_list_for_project(project=access.project)
        return Response(ModelVersionOutput(versions, many=True).data)


class ModelVersionDetailApi(ProjectApiView):
    roles = RoleSet.OVERSIGHT

    @extend_schema(responses=ModelVersionDetailOutput)
    def get(self, request: Request, project_id: int, version_id: int) -> Response:
        access = self.access
        version = selectors.model_version_get(project=access.project, version_id=version_id)
        return Response(ModelVersionDetailOutput(version, context={"request": request}).data)


class BaseModelOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    # A declared field, not the stubs' Serializer/Field attribute `source`.
    source = serializers.CharField()  # type: ignore[assignment]
    architecture = serializers.CharField()
    parameter_count = serializers.IntegerField()
    tokenizer = serializers.CharField()
    license = serializers.CharField()
    weights_sha256 = serializers.CharField()
    global_model = serializers.SerializerMethodField()

    def get_global_model(self, base) -> bool:
        return base.project_id is None


class BaseModelListApi(ProjectApiView):
    roles = RoleSet.OVERSIGHT

    @extend_schema(responses=BaseModelOutput(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        access = self.access
        bases = selectors.base_model_list_for_project(project=access.project)
        return Response(BaseModelOutput(bases, many=True).data)


class BaseModelDetailApi(ProjectApiView):
    roles = RoleSet.OVERSIGHT

    @extend_schema(responses=BaseModelOutput)
    def get(self, request: Request, project_id: int, base_model_id: int) -> Response:
        """A base model this project may train on: its own, or one shared by every project."""
        base = selectors.base_model_get(project=self.access.project, base_model_id=base_model_id)
        return Response(BaseModelOutput(base).data)


class RegistrationOutput(serializers.Serializer):
    """A base-model registration: a background job that reads (and for the packaged
    default first converts) a model, then writes the registry row `base_model`."""

    id = serializers.IntegerField()
    name = serializers.CharField()
    # A declared field, not the stubs' Serializer/Field attribute `source`.
    source = serializers.ChoiceField(choices=BaseModel.Source.choices)  # type: ignore[assignment]
    path = serializers.SerializerMethodField()
    license = serializers.CharField()
    packaged = serializers.BooleanField(help_text="The packaged default, for every project.")
    status = serializers.ChoiceField(choices=JobStatus.choices)
    progress = serializers.JSONField(
        help_text="{phase, label, done, total, unit, started_at} of the phase it is in."
    )
    error = serializers.SerializerMethodField()
    base_model = serializers.IntegerField(
        source="base_model_id",
        allow_null=True,
        help_text="The registered base model (GET base_models/<id>/) once it succeeded.",
    )
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)

    def get_path(self, registration) -> str:
        """Server folders are shown relative to the model roots; a hub id as it is."""
        if registration.source == BaseModel.Source.HUB:
            return registration.path
        return display_path(registration.path)

    def get_error(self, registration) -> str:
        return scrub_paths(registration.error or "")


class RegistrationInput(StrictInput):
    """What the base-model page's forms send: a model by folder or hub id, or (with
    `packaged`) the packaged default. The same service checks every value."""

    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    # A declared field, not the stubs' Serializer/Field attribute `source`.
    source = serializers.ChoiceField(  # type: ignore[assignment]
        choices=BaseModel.Source.choices, default=BaseModel.Source.LOCAL
    )
    path = serializers.CharField(
        max_length=500,
        required=False,
        allow_blank=True,
        default="",
        help_text="A folder under a model root (local), or organisation/model-name (hub).",
    )
    license = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    packaged = serializers.BooleanField(
        default=False,
        help_text="Register the packaged default model for every project; then send no "
        "name, source, path or license.",
    )

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        if data["packaged"]:
            given = [key for key in ("name", "path", "license") if data[key]]
            given += ["source"] if self.initial_data.get("source") is not None else []
            if given:
                raise DrfValidationError(
                    {key: ["The packaged default has its own; send none."] for key in given}
                )
        return data


class RegistrationQuery(CursorListQuery):
    status = serializers.ChoiceField(choices=JobStatus.choices, required=False)
    name = serializers.CharField(required=False, help_text="The model's name, exactly.")


class RegistrationListCreateApi(ProjectApiView):
    pagination_class = PortalCursorPagination
    parser_classes = [StrictJSONParser]
    roles = {"GET": RoleSet.OVERSIGHT, "POST": RoleSet.ENGINEERS}

    @extend_schema(parameters=[RegistrationQuery], responses=RegistrationOutput(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        """The registrations asked from this project, newest first, `cursor`-paged."""
        query = RegistrationQuery(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        found = selectors.registration_list_for_project(project=self.access.project)
        filters = query.filters()
        if "status" in filters:
            found = found.filter(status=filters["status"])
        if "name" in filters:
            found = found.filter(name=filters["name"])
        paginator = PortalCursorPagination("-pk")
        page = paginator.paginate_queryset(found, request, view=self)
        return paginator.get_paginated_response(RegistrationOutput(page, many=True).data)

    @extend_schema(request=RegistrationInput, responses={201: RegistrationOutput})
    def post(self, request: Request, project_id: int) -> Response:
        """Queue a registration and answer at once; follow it at registrations/<id>/."""
        payload = RegistrationInput(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        registration = services.base_model_registration_start(
            actor=request.user, project=self.access.project, **data
        )
        return Response(RegistrationOutput(registration).data, status=status.HTTP_201_CREATED)


class RegistrationDetailApi(ProjectApiView):
    roles = RoleSet.OVERSIGHT

    @extend_schema(responses=RegistrationOutput)
    def get(self, request: Request, project_id: int, registration_id: int) -> Response:
        registration = selectors.registration_get(
            project=self.access.project, registration_id=registration_id
        )
        return Response(RegistrationOutput(registration).data)


class CompressionInput(StrictInput):
    kind = serializers.ChoiceField(choices=["merge", "quantize", "distill"])
    name = serializers.CharField(required=False, allow_blank=True, default="")
    quantization = serializers.ChoiceField(
        choices=["int8_weight_only", "bnb_int8", "bnb_nf4"], default="int8_weight_only"
    )
    student_model = serializers.IntegerField(
        required=False,
        help_text="Distill: id of the student's base model (default: the teacher's).",
    )
    method = serializers.ChoiceField(choices=["lora", "full"], default="lora")
    distill_method = serializers.ChoiceField(choices=["sequence", "gkd"], default="sequence")
    prompts_file = serializers.CharField(
        required=False,
        help_text="Distill: id of an uploaded JSONL of prompts (fine_tuning/files/).",
    )
    hyperparameters = serializers.DictField(required=False, default=dict)
    gate_tolerance = serializers.FloatField(default=0.05, min_value=0, max_value=1)
    gate_alpha = serializers.FloatField(default=0.05, min_value=0, max_value=1)


def _family_body(family) -> dict[str, Any]:
    return {
        "parent": family.parent.pk,
        "price": family.price,
        "versions": [
            {
                "id": c.version.pk,
                "name": c.version.name,
                "compression": c.role,
                "measurements": c.figures,
                "gate": c.gate,
            }
            for c in family.columns
        ],
    }


class CompressionListCreateApi(ProjectApiView):
    """A version's compressed children side by side (GET) and a new compression (POST)."""

    roles = {"GET": RoleSet.OVERSIGHT, "POST": RoleSet.ENGINEERS}

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request, project_id: int, version_id: int) -> Response:
        family = compression_family(project=self.access.project, version_id=version_id)
        return Response(_family_body(family))

    @extend_schema(request=CompressionInput, responses={201: JobOutput})
    def post(self, request: Request, project_id: int, version_id: int) -> Response:
        project = self.access.project
        version = selectors.model_version_get(project=project, version_id=version_id)
        payload = CompressionInput(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        errors: dict[str, list[str]] = {}
        student = None
        if data.get("student_model"):
            student = _lookup(
                errors,
                "student_model",
                selectors.base_model_get,
                project=project,
                base_model_id=data["student_model"],
            )
        prompts = None
        if data.get("prompts_file"):
            prompts = _lookup(
                errors,
                "prompts_file",
                services.training_file_path,
                project=project,
                file_id=data["prompts_file"],
            )
        if errors:
            raise DrfValidationError(errors)
        job = compression_job_create(
            actor=request.user,
            version=version,
            kind=data["kind"],
            name=data["name"],
            quantization=data["quantization"],
            student_base=student,
            method=data["method"],
            distill_method=data["distill_method"],
            prompts_file=prompts,
            values=data["hyperparameters"],
            gate_tolerance=data["gate_tolerance"],
            gate_alpha=data["gate_alpha"],
        )
        return Response(JobOutput(job).data, status=status.HTTP_201_CREATED)
