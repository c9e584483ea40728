"""The portal's REST API for deployments and their keys (not the gateway: see gateway).

Every endpoint sits under /projects/<project_id>/ and reaches a deployment only through that
project (another project's deployment, version or key is a 404). Writes call the services
the pages call; their refusals are 400s naming the field."""

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from core.access import ProjectApiView
from core.api_errors import StrictInput
from core.authentication import AuthenticatedRequest as Request
from core.models import RoleSet
from core.pagination import CURSOR_PARAMETERS, MAX_OFFSET, cursor_page, page_of, strict_query
from core.parsers import StrictJSONParser
from serving import selectors
from serving.models import Arm, Deployment, DeploymentDecision, DeploymentKey, EngineKind
from serving.selectors.series import DEFAULT_WINDOW, WINDOWS, deployment_series
from serving.services import deployments as services
from training import selectors as training_selectors

JSON_ONLY = [StrictJSONParser]
REASON_MAX = 2000


def _id(help_text: str, **kwargs: Any) -> serializers.IntegerField:
    # Ids are bigints: a longer number names no row, and is refused before the database.
    return serializers.IntegerField(
        min_value=1, max_value=MAX_OFFSET, help_text=help_text, **kwargs
    )


def _deployment(view: ProjectApiView, deployment_id: int) -> Deployment:
    return selectors.deployment_get(project=view.access.project, deployment_id=deployment_id)


# --- deployments -----------------------------------------------------------------------------


class DeploymentOutput(serializers.ModelSerializer):
    webhook_secret_set = serializers.SerializerMethodField()

    class Meta:
        model = Deployment
        fields = [
            "id",
            "name",
            "description",
            "engine",
            "stable_version",
            "stable_base_model",
            "canary_version",
            "canary_weight",
            "shadow_version",
            "rollout",
            "rollout_steps",
            "guardrails",
            "logging_policy",
            "logging_sample_percent",
            "retention_days",
            "rollback_rules",
            "webhook_url",
            "webhook_secret_set",
            "price_per_1k_tokens",
            "price_per_gpu_hour",
            "created_at",
            "updated_at",
        ]

    def get_webhook_secret_set(self, deployment: Deployment) -> bool:
        return bool(deployment.webhook_secret)


class DeploymentSettingsInput(StrictInput):
    """Each setting given is changed; those left out stay as they are."""

    description = serializers.CharField(max_length=2000, allow_blank=True, required=False)
    price_per_1k_tokens = serializers.DecimalField(
        max_digits=12, decimal_places=6, min_value=0, required=False
    )
    price_per_gpu_hour = serializers.DecimalField(
        max_digits=12, decimal_places=4, min_value=0, required=False
    )
    guardrails = serializers.JSONField(
        required=False,
        help_text='{"pii": "off"|"redact"|"refuse", "blocklist": [regex, ...], '
        '"blocklist_action": "refuse"|"redact", "classifier_version_id": id, '
        '"classifier_threshold": 0..1}',
    )
    logging_policy = serializers.ChoiceField(choices=Deployment.Logging.choices, required=False)
    logging_sample_percent = serializers.IntegerField(min_value=0, max_value=100, required=False)
    retention_days = serializers.IntegerField(min_value=1, max_value=3650, required=False)
    rollback_rules = serializers.JSONField(
        required=False,
        help_text='{"window_s", "min_requests", "error_rate", "p95_ms", "flag_rate", '
        '"negative_feedback_rate"}: each threshold an allowed excess of the canary over stable.',
    )
    rollout_steps = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=100),
        max_length=100,
        required=False,
        help_text="Increasing percentages the canary steps through, e.g. [10, 25, 50, 100].",
    )
    webhook_url = serializers.URLField(max_length=200, allow_blank=True, required=False)
    webhook_secret = serializers.CharField(
        max_length=500, allow_blank=True, required=False, write_only=True
    )

    def validate_guardrails(self, value: Any) -> Any:
        # The classifier must be a version of this project; the service checks the rest.
        if isinstance(value, dict) and value.get("classifier_version_id") is not None:
            raw = value["classifier_version_id"]
            if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw < MAX_OFFSET:
                raise serializers.ValidationError(
                    {"classifier_version_id": ["A model version id."]}
                )
            project = self.context["project"]
            if not training_selectors.model_version_list_for_project(project=project).filter(
                pk=raw
            ):
                raise serializers.ValidationError(
                    {"classifier_version_id": ["No such model version in this project."]}
                )
        return value


class DeploymentCreateInput(DeploymentSettingsInput):
    name = serializers.CharField(
        max_length=100, help_text="The `model` clients send; unique across the portal."
    )
    engine = serializers.ChoiceField(choices=EngineKind.choices, default=EngineKind.TRANSFORMERS)
    stable_version = _id("A version of this project in production.", required=False)
    stable_base_model = _id("A base model, before any version reached production.", required=False)


class DeploymentListCreateApi(ProjectApiView):
    parser_classes = JSON_ONLY
    roles = {"GET": RoleSet.OVERSIGHT, "POST": RoleSet.MANAGERS}

    @extend_schema(
        operation_id="v1_projects_deployments_list",
        parameters=CURSOR_PARAMETERS,
        responses=page_of(DeploymentOutput),
    )
    def get(self, request: Request, project_id: int) -> Response:
        """The project's deployments, newest first."""
        strict_query(request, ())
        found = selectors.deployment_list_for_project(project=self.access.project)
        return cursor_page(
            found,
            request,
            self,
            lambda rows: DeploymentOutput(rows, many=True).data,
            ordering="-id",
        )

    @extend_schema(request=DeploymentCreateInput, responses={201: DeploymentOutput})
    def post(self, request: Request, project_id: int) -> Response:
        project = self.access.project
        payload = DeploymentCreateInput(data=request.data, context={"project": project})
        payload.is_valid(raise_exception=True)
        data = dict(payload.validated_data)
        version = base = None
        if data.get("stable_version"):
            version = training_selectors.model_version_get(
                project=project, version_id=data.pop("stable_version")
            )
        if data.get("stable_base_model"):
            base = training_selectors.base_model_get(
                project=project, base_model_id=data.pop("stable_base_model")
            )
        deployment = services.deployment_create(
            actor=request.user,
            project=project,
            name=data.pop("name"),
            engine=data.pop("engine"),
            description=data.pop("description", ""),
            stable_version=version,
            stable_base_model=base,
            settings=data,
        )
        return Response(DeploymentOutput(deployment).data, status=status.HTTP_201_CREATED)


class DeploymentDetailApi(ProjectApiView):
    parser_classes = JSON_ONLY
    roles = {"GET": RoleSet.OVERSIGHT, "PATCH": RoleSet.MANAGERS}

    @extend_schema(responses=DeploymentOutput)
    def get(self, request: Request, project_id: int, deployment_id: int) -> Response:
        return Response(DeploymentOutput(_deployment(self, deployment_id)).data)

    @extend_schema(request=DeploymentSettingsInput, responses=DeploymentOutput)
    def patch(self, request: Request, project_id: int, deployment_id: int) -> Response:
        """Change settings: guardrails, logging policy, rollback rules, rollout steps,
        prices, webhook. Each is recorded in the deployment's decision history."""
        deployment = _deployment(self, deployment_id)
        payload = DeploymentSettingsInput(
            data=request.data, context={"project": self.access.project}
        )
        payload.is_valid(raise_exception=True)
        if not payload.validated_data:
            raise serializers.ValidationError({"detail": ["Give at least one setting to change."]})
        changed = services.deployment_configure(
            actor=request.user, deployment=deployment, values=dict(payload.validated_data)
        )
        return Response(DeploymentOutput(changed).data)


class PlaceInput(StrictInput):
    arm = serializers.ChoiceField(choices=Arm.choices)
    model_version = _id(
        "A version of this project; null clears the canary or shadow arm.", allow_null=True
    )
    weight = serializers.IntegerField(
        min_value=0,
        max_value=100,
        required=False,
        allow_null=True,
        help_text="The canary's starting weight; default the first rollout step.",
    )
    reason = serializers.CharField(max_length=REASON_MAX, allow_blank=True, default="")


class DeploymentPlaceApi(ProjectApiView):
    parser_classes = JSON_ONLY
    roles = RoleSet.MANAGERS

    @extend_schema(request=PlaceInput, responses=DeploymentOutput)
    def post(self, request: Request, project_id: int, deployment_id: int) -> Response:
        """Put a version on an arm: production versions on stable, canary versions on the
        canary (which starts progressing), any live version on the shadow."""
        deployment = _deployment(self, deployment_id)
        payload = PlaceInput(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        version = None
        if data["model_version"] is not None:
            version = training_selectors.model_version_get(
                project=self.access.project, version_id=data["model_version"]
            )
        placed = services.deployment_place(
            actor=request.user,
            deployment=deployment,
            arm=data["arm"],
            version=version,
            weight=data.get("weight"),
            reason=data["reason"],
        )
        return Response(DeploymentOutput(placed).data)


class ReweightInput(StrictInput):
    weight = serializers.IntegerField(min_value=0, max_value=100)
    reason = serializers.CharField(max_length=REASON_MAX, allow_blank=True, default="")


class DeploymentReweightApi(ProjectApiView):
    parser_classes = JSON_ONLY
    roles = RoleSet.MANAGERS

    @extend_schema(request=ReweightInput, responses=DeploymentOutput)
    def post(self, request: Request, project_id: int, deployment_id: int) -> Response:
        """Set the canary's share of traffic by hand."""
        deployment = _deployment(self, deployment_id)
        payload = ReweightInput(data=request.data)
        payload.is_valid(raise_exception=True)
        changed = services.deployment_reweight(
            actor=request.user, deployment=deployment, **payload.validated_data
        )
        return Response(DeploymentOutput(changed).data)


class RolloutInput(StrictInput):
    action = serializers.ChoiceField(choices=["pause", "resume", "abort"])
    reason = serializers.CharField(max_length=REASON_MAX, allow_blank=True, default="")


class DeploymentRolloutApi(ProjectApiView):
    parser_classes = JSON_ONLY
    roles = RoleSet.MANAGERS

    @extend_schema(request=RolloutInput, responses=DeploymentOutput)
    def post(self, request: Request, project_id: int, deployment_id: int) -> Response:
        """Pause, resume or abort the canary's rollout (abort sets its weight to 0)."""
        deployment = _deployment(self, deployment_id)
        payload = RolloutInput(data=request.data)
        payload.is_valid(raise_exception=True)
        changed = services.deployment_rollout_set(
            actor=request.user, deployment=deployment, **payload.validated_data
        )
        return Response(DeploymentOutput(changed).data)


# --- gateway keys ----------------------------------------------------------------------------


class KeyOutput(serializers.ModelSerializer):
    class Meta:
        model = DeploymentKey
        fields = [
            "id",
            "name",
            "prefix",
            "requests_per_minute",
            "tokens_per_minute",
            "created_at",
            "expires_at",
            "revoked_at",
        ]


class KeyCreatedOutput(KeyOutput):
    secret = serializers.CharField(help_text="Shown this once; only its hash is kept.")
    openai_base_url = serializers.CharField(help_text="Where clients send their requests.")

    class Meta(KeyOutput.Meta):
        fields = [*KeyOutput.Meta.fields, "secret", "openai_base_url"]


class KeyCreateInput(StrictInput):
    name = serializers.CharField(max_length=100)
    expires_in_days = serializers.IntegerField(
        min_value=1, max_value=3650, required=False, allow_null=True
    )
    requests_per_minute = serializers.IntegerField(min_value=0, max_value=10**9, default=0)
    tokens_per_minute = serializers.IntegerField(min_value=0, max_value=10**9, default=0)


class DeploymentKeyListCreateApi(ProjectApiView):
    parser_classes = JSON_ONLY
    roles = {"GET": RoleSet.OVERSIGHT, "POST": RoleSet.MANAGERS}

    @extend_schema(
        operation_id="v1_projects_deployments_keys_list",
        parameters=CURSOR_PARAMETERS,
        responses=page_of(KeyOutput),
    )
    def get(self, request: Request, project_id: int, deployment_id: int) -> Response:
        """The deployment's gateway keys, newest first: prefixes only, never secrets."""
        strict_query(request, ())
        keys = selectors.deployment_key_list(deployment=_deployment(self, deployment_id))
        return cursor_page(
            keys, request, self, lambda rows: KeyOutput(rows, many=True).data, ordering="-id"
        )

    @extend_schema(request=KeyCreateInput, responses={201: KeyCreatedOutput})
    def post(self, request: Request, project_id: int, deployment_id: int) -> Response:
        """A gateway key for this deployment. Its secret is in this answer only."""
        deployment = _deployment(self, deployment_id)
        payload = KeyCreateInput(data=request.data)
        payload.is_valid(raise_exception=True)
        key, secret = services.deployment_key_create(
            actor=request.user, deployment=deployment, **payload.validated_data
        )
        key.secret = secret  # type: ignore[attr-defined]
        key.openai_base_url = request.build_absolute_uri("/v1")  # type: ignore[attr-defined]
        response = Response(KeyCreatedOutput(key).data, status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"
        return response


class DeploymentKeyRevokeApi(ProjectApiView):
    parser_classes = JSON_ONLY
    roles = RoleSet.MANAGERS

    @extend_schema(request=None, responses=KeyOutput)
    def post(self, request: Request, project_id: int, deployment_id: int, key_id: int) -> Response:
        """Revoke the key; the gateway refuses it from its next lookup on."""
        deployment = _deployment(self, deployment_id)
        key = selectors.deployment_key_get(deployment=deployment, key_id=key_id)
        return Response(KeyOutput(services.deployment_key_revoke(actor=request.user, key=key)).data)


# --- history and telemetry -------------------------------------------------------------------


class DecisionOutput(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor.username", allow_null=True, default=None)

    class Meta:
        model = DeploymentDecision
        fields = [
            "id",
            "kind",
            "arm",
            "model_version",
            "from_weight",
            "to_weight",
            "reason",
            "figures",
            "actor",
            "audit_seq",
            "created_at",
        ]


class DeploymentDecisionListApi(ProjectApiView):
    roles = RoleSet.OVERSIGHT

    @extend_schema(
        operation_id="v1_projects_deployments_decisions_list",
        parameters=CURSOR_PARAMETERS,
        responses=page_of(DecisionOutput),
    )
    def get(self, request: Request, project_id: int, deployment_id: int) -> Response:
        """Every change to the deployment with the figures behind it, newest first."""
        strict_query(request, ())
        decisions = selectors.deployment_decisions(deployment=_deployment(self, deployment_id))
        return cursor_page(
            decisions,
            request,
            self,
            lambda rows: DecisionOutput(rows, many=True).data,
            ordering="-id",
        )


class BucketOutput(serializers.Serializer):
    arm = serializers.ChoiceField(choices=Arm.choices)
    at = serializers.DateTimeField(help_text="The bucket's start.")
    requests = serializers.IntegerField()
    errors = serializers.IntegerField(
        help_text="Error answers, and canary failures stable answered."
    )
    flagged = serializers.IntegerField(help_text="Requests with at least one guardrail flag.")
    p50_ms = serializers.FloatField(allow_null=True)
    p95_ms = serializers.FloatField(allow_null=True)
    tokens_in = serializers.IntegerField()
    tokens_out = serializers.IntegerField()
    cost = serializers.FloatField()


class DayOutput(serializers.Serializer):
    arm = serializers.ChoiceField(choices=Arm.choices)
    day = serializers.DateField(help_text="UTC")
    requests = serializers.IntegerField()
    tokens_in = serializers.IntegerField()
    tokens_out = serializers.IntegerField()
    cost = serializers.FloatField()


class SeriesOutput(serializers.Serializer):
    window = serializers.CharField()
    bucket_s = serializers.IntegerField(help_text="Each bucket's width in seconds.")
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    buckets = BucketOutput(many=True)
    days = DayOutput(many=True, help_text="Tokens and cost per UTC day, the last 14 days.")


class SeriesQuery(StrictInput):
    window = serializers.ChoiceField(choices=list(WINDOWS), default=DEFAULT_WINDOW)


class DeploymentSeriesApi(ProjectApiView):
    roles = RoleSet.OVERSIGHT

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "window", str, enum=list(WINDOWS), required=False, description="Default 15m."
            )
        ],
        responses=SeriesOutput,
    )
    def get(self, request: Request, project_id: int, deployment_id: int) -> Response:
        """Traffic per arm in time buckets (requests, errors, guardrail flags, p50/p95
        latency, tokens, cost) over the window, and tokens and cost per day."""
        deployment = _deployment(self, deployment_id)
        query = SeriesQuery(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        series = deployment_series(deployment=deployment, window=query.validated_data["window"])
        return Response(SeriesOutput(series).data)
