"""Api for prompt sets, generations, blind pairwise campaigns, ratings, offline metrics,
fairness slices and regression gates.

Reviewer endpoints serialize `BlindPair` only: a token, the prompt, "response_a" and
"response_b", the question and criteria. Nothing that names a contestant.
"""

from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from core import time_spent
from core.access import ProjectApiView
from core.authentication import AuthenticatedRequest as Request
from core.models import RoleSet
from core.pagination import CURSOR_PARAMETERS, OFFSET_PARAMETER, cursor_page
from core.parsers import StrictJSONParser
from evaluation import selectors, services
from evaluation.models import (
    Campaign,
    Contestant,
    Gate,
    GateRun,
    GenerationJob,
    MetricRun,
    PromptSet,
)


def _get(model, project, pk, what: str):
    try:
        return model.objects.get(project=project, pk=pk)
    except model.DoesNotExist:
        raise Http404(f"No such {what}.") from None


# --- reviewers -------------------------------------------------------------------------------


class CriterionOutput(serializers.Serializer):
    key = serializers.CharField()
    # A declared field, not the stubs' Serializer/Field attribute `label`.
    label = serializers.CharField()  # type: ignore[assignment]
    scale = serializers.IntegerField()


class TurnOutput(serializers.Serializer):
    role = serializers.CharField()
    # A declared field, not the stubs' Serializer/Field attribute `label`.
    label = serializers.CharField()  # type: ignore[assignment]
    content = serializers.CharField(allow_blank=True)


class BlindPairOutput(serializers.Serializer):
    token = serializers.CharField()
    prompt = serializers.CharField(help_text="The prompt as text; a conversation's turns joined.")
    turns = TurnOutput(
        many=True, allow_null=True, help_text="A conversational prompt's turns; null for text."
    )
    response_a = serializers.CharField()
    response_b = serializers.CharField()
    question = serializers.CharField()
    criteria = CriterionOutput(many=True)
    adversarial = serializers.BooleanField()
    truncated_a = serializers.BooleanField(help_text="Response A was cut at the token limit.")
    truncated_b = serializers.BooleanField(help_text="Response B was cut at the token limit.")
    notice = serializers.CharField(
        help_text="What the reviewer is told about missed attention checks; empty if nothing."
    )


def _next_pair(request: Request, campaign: Campaign) -> Response:
    judgment = services.judgment_next(campaign=campaign, reviewer=request.user)
    if judgment is None:
        return Response(status=status.HTTP_204_NO_CONTENT)
    pair = selectors.blind_pair_from_judgment(judgment=judgment, campaign=campaign)
    return Response(BlindPairOutput(pair).data)


class ReviewNextApi(ProjectApiView):
    roles = RoleSet.REVIEWERS

    @extend_schema(responses={200: BlindPairOutput, 204: None})
    def get(self, request: Request, project_id: int, campaign_id: int) -> Response:
        access = self.access
        return _next_pair(request, _get(Campaign, access.project, campaign_id, "campaign"))


class ReviewSubmitInput(serializers.Serializer):
    token = serializers.CharField()
    outcome = serializers.ChoiceField(choices=["a", "b", "tie", "both_bad"])
    criteria = serializers.DictField(required=False)
    rationale = serializers.CharField(required=False, allow_blank=True, default="")
    seconds_spent = serializers.FloatField(required=False, allow_null=True)
    unsafe_a = serializers.BooleanField(default=False)
    unsafe_b = serializers.BooleanField(default=False)


class ReviewSubmitApi(ProjectApiView):
    parser_classes = [StrictJSONParser]
    roles = RoleSet.REVIEWERS

    @extend_schema(request=ReviewSubmitInput, responses={200: BlindPairOutput, 204: None})
    def post(self, request: Request, project_id: int, campaign_id: int) -> Response:
        """Record a verdict and answer with the next pair (204 when none is left). What was
        recorded as time spent, by which rule, and whether it was too fast is in `submitted`
        (and in X-Seconds-Spent / X-Seconds-Source / X-Too-Fast headers, also on a 204)."""
        access = self.access
        campaign = _get(Campaign, access.project, campaign_id, "campaign")
        payload = ReviewSubmitInput(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        judgment = services.judgment_submit(
            campaign=campaign,
            reviewer=request.user,
            token=data["token"],
            outcome=data["outcome"],
            criteria=data.get("criteria"),
            rationale=data["rationale"],
            seconds_spent=data.get("seconds_spent"),
            unsafe_a=data["unsafe_a"],
            unsafe_b=data["unsafe_b"],
        )
        recorded = {
            "seconds_spent": judgment.seconds_spent,
            "seconds_source": judgment.seconds_source,
            "too_fast": judgment.too_fast,
            "time_rule": time_spent.RULE,
        }
        response = _next_pair(request, campaign)
        if response.status_code == status.HTTP_200_OK:
            response.data["submitted"] = recorded
        # A 204 (no pair left) has no body: the headers say what was recorded there too.
        response["X-Seconds-Spent"] = f"{judgment.seconds_spent:.3f}"
        response["X-Seconds-Source"] = judgment.seconds_source
        response["X-Too-Fast"] = "true" if judgment.too_fast else "false"
        return response


# --- engineers -------------------------------------------------------------------------------


class PromptRowInput(serializers.Serializer):
    prompt = serializers.JSONField(
        help_text="Text, or a conversation: a list of {role, content} turns ending with the user's."
    )
    category = serializers.CharField(required=False, allow_blank=True)
    reference = serializers.CharField(required=False, allow_blank=True)
    metadata = serializers.DictField(required=False)


class PromptSetInput(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    rows = PromptRowInput(many=True)
    adversarial = serializers.BooleanField(default=False)
    general = serializers.BooleanField(default=False)
    license = serializers.CharField(
        max_length=100, required=False, default="NOASSERTION", help_text="SPDX id of the prompts"
    )
    synthetic = serializers.BooleanField(default=False, help_text="The prompts were model-written")


class PromptSetOutput(serializers.ModelSerializer):
    class Meta:
        model = PromptSet
        fields = [
            "id",
            "name",
            "source",
            "adversarial",
            "general",
            "prompt_count",
            "license",
            "synthetic",
            "created_at",
        ]


class PromptSetCreateApi(ProjectApiView):
    parser_classes = [StrictJSONParser]
    roles = RoleSet.ENGINEERS

    @extend_schema(request=PromptSetInput, responses={201: PromptSetOutput})
    def post(self, request: Request, project_id: int) -> Response:
        access = self.access
        payload = PromptSetInput(data=request.data)
        payload.is_valid(raise_exception=True)
        prompt_set = services.prompt_set_create(
            actor=request.user, project=access.project, **payload.validated_data
        )
        return Response(PromptSetOutput(prompt_set).data, status=status.HTTP_201_CREATED)


class ContestantInput(serializers.Serializer):
    # A model version competes under its registry name; the label is for the others.
    # A declared field, not the stubs' Serializer/Field attribute `label`.
    label = serializers.CharField(  # type: ignore[assignment]
        max_length=200, required=False, allow_blank=True, default=""
    )
    model_version = serializers.IntegerField(required=False, allow_null=True)
    base_model = serializers.IntegerField(required=False, allow_null=True)
    prompt_template = serializers.CharField(required=False, allow_blank=True, default="")


class ContestantOutput(serializers.ModelSerializer):
    class Meta:
        model = Contestant
        fields = ["id", "label", "model_version", "base_model", "prompt_template", "created_at"]


class ContestantCreateApi(ProjectApiView):
    parser_classes = [StrictJSONParser]
    roles = RoleSet.ENGINEERS

    @extend_schema(request=ContestantInput, responses={201: ContestantOutput})
    def post(self, request: Request, project_id: int) -> Response:
        access = self.access
        payload = ContestantInput(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        version = base = None
        if data.get("model_version"):
            version = selectors.model_version_get(
                project=access.project, model_version_id=data["model_version"]
            )
            if version is None:
                raise Http404("No such model version.")
        if data.get("base_model"):
            base = selectors.base_model_get(
                project=access.project, base_model_id=data["base_model"]
            )
            if base is None:
                raise Http404("No such base model.")
        contestant = services.contestant_create(
            actor=request.user,
            project=access.project,
            label=data["label"],
            model_version=version,
            base_model=base,
            prompt_template=data["prompt_template"],
        )
        return Response(ContestantOutput(contestant).data, status=status.HTTP_201_CREATED)


class GenerationsImportInput(serializers.Serializer):
    prompt_set = serializers.IntegerField()
    outputs = serializers.ListField(child=serializers.CharField(allow_blank=True))


class GenerationsImportOutput(serializers.Serializer):
    job = serializers.IntegerField(help_text="The import's generation job.")
    rows = serializers.IntegerField()


class GenerationsImportApi(ProjectApiView):
    parser_classes = [StrictJSONParser]
    roles = RoleSet.ENGINEERS

    @extend_schema(request=GenerationsImportInput, responses={201: GenerationsImportOutput})
    def post(self, request: Request, project_id: int, contestant_id: int) -> Response:
        access = self.access
        contestant = _get(Contestant, access.project, contestant_id, "contestant")
        payload = GenerationsImportInput(data=request.data)
        payload.is_valid(raise_exception=True)
        prompt_set = selectors.prompt_set_get(
            project=access.project, prompt_set_id=payload.validated_data["prompt_set"]
        )
        job = services.generations_import(
            actor=request.user,
            contestant=contestant,
            prompt_set=prompt_set,
            outputs=payload.validated_data["outputs"],
        )
        return Response({"job": job.pk, "rows": job.total}, status=status.HTTP_201_CREATED)


class GenerationJobInput(serializers.Serializer):
    prompt_set = serializers.IntegerField()
    contestant = serializers.IntegerField()
    max_new_tokens = serializers.IntegerField(min_value=1, max_value=4096, default=64)
    temperature = serializers.FloatField(min_value=0.0, default=0.0)
    top_p = serializers.FloatField(min_value=0.0, max_value=1.0, default=1.0)
    seed = serializers.IntegerField(min_value=0, max_value=2**31 - 1, default=0)
    batch_size = serializers.IntegerField(min_value=1, max_value=256, default=8)


class GenerationJobOutput(serializers.ModelSerializer):
    # Plain strings: metric runs have the same status choices under the same field name,
    # which the schema generator cannot name apart.
    kind = serializers.CharField(help_text="inference or import")
    status = serializers.CharField(help_text="queued, running, succeeded or failed")
    contestant_label = serializers.CharField(source="contestant.label")
    prompt_set_name = serializers.CharField(source="prompt_set.name")

    class Meta:
        model = GenerationJob
        fields = [
            "id",
            "prompt_set",
            "prompt_set_name",
            "contestant",
            "contestant_label",
            "kind",
            "status",
            "decoding",
            "seed",
            "batch_size",
            "done",
            "total",
            "error",
            "created_at",
            "started_at",
            "finished_at",
        ]


class GenerationJobPage(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = GenerationJobOutput(many=True)


class GenerationJobListCreateApi(ProjectApiView):
    parser_classes = [StrictJSONParser]
    roles = {"GET": RoleSet.OVERSIGHT, "POST": RoleSet.ENGINEERS}

    @extend_schema(
        operation_id="v1_projects_generation_jobs_list",
        parameters=[*CURSOR_PARAMETERS, OFFSET_PARAMETER],
        responses=GenerationJobPage,
    )
    def get(self, request: Request, project_id: int) -> Response:
        """The project's generation jobs, newest first (follow `next`; `offset` is
        deprecated)."""
        access = self.access
        jobs = selectors.generation_job_list_for_project(project=access.project)
        return cursor_page(
            jobs,
            request,
            self,
            lambda page: GenerationJobOutput(page, many=True).data,
            ordering="-id",
            count=True,
        )

    @extend_schema(request=GenerationJobInput, responses={201: GenerationJobOutput})
    def post(self, request: Request, project_id: int) -> Response:
        """Queue a job that runs the contestant's model over the prompt set."""
        access = self.access
        payload = GenerationJobInput(data=request.data)
        payload.is_valid(raise_exception=True)
        data = dict(payload.validated_data)
        job = services.generation_job_start(
            actor=request.user,
            contestant=_get(Contestant, access.project, data.pop("contestant"), "contestant"),
            prompt_set=selectors.prompt_set_get(
                project=access.project, prompt_set_id=data.pop("prompt_set")
            ),
            **data,
        )
        return Response(GenerationJobOutput(job).data, status=status.HTTP_201_CREATED)


class GenerationJobDetailApi(ProjectApiView):
    roles = RoleSet.OVERSIGHT

    @extend_schema(responses=GenerationJobOutput)
    def get(self, request: Request, project_id: int, job_id: int) -> Response:
        access = self.access
        job = selectors.generation_job_get(project=access.project, job_id=job_id)
        if job is None:
            raise Http404("No such generation job.")
        return Response(GenerationJobOutput(job).data)


class CampaignInput(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    prompt_set = serializers.IntegerField()
    contestants = serializers.ListField(child=serializers.IntegerField(), min_length=2)
    question = serializers.CharField(required=False, default="Which response is better?")
    criteria = serializers.ListField(child=serializers.DictField(), required=False)
    raters_per_pair = serializers.IntegerField(min_value=1, default=1)
    rater_quota = serializers.IntegerField(min_value=0, default=0)
    pair_selection = serializers.ChoiceField(choices=Campaign.PairSelection.values, default="all")
    attention_every = serializers.IntegerField(min_value=0, default=10)


class CampaignCreatedOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    stats = serializers.JSONField()


class CampaignCreateApi(ProjectApiView):
    parser_classes = [StrictJSONParser]
    roles = RoleSet.ENGINEERS

    @extend_schema(request=CampaignInput, responses={201: CampaignCreatedOutput})
    def post(self, request: Request, project_id: int) -> Response:
        access = self.access
        payload = CampaignInput(data=request.data)
        payload.is_valid(raise_exception=True)
        data = dict(payload.validated_data)
        prompt_set = selectors.prompt_set_get(
            project=access.project, prompt_set_id=data.pop("prompt_set")
        )
        ids = data.pop("contestants")
        contestants = list(Contestant.objects.filter(project=access.project, pk__in=ids))
        if len(contestants) != len(set(ids)):
            raise Http404("No such contestant.")
        campaign = services.campaign_create(
            actor=request.user,
            project=access.project,
            prompt_set=prompt_set,
            contestants=contestants,
            **data,
        )
        return Response(
            {"id": campaign.pk, "name": campaign.name, "stats": campaign.stats},
            status=status.HTTP_201_CREATED,
        )


class CampaignRatingsQuery(serializers.Serializer):
    include_self_identified = serializers.BooleanField(
        default=False,
        help_text="Count battles where an answer names its model (left out by default).",
    )


class CampaignRatingsOutput(serializers.Serializer):
    campaign = serializers.JSONField(help_text="id and name")
    judgments = serializers.IntegerField()
    excluded_raters = serializers.JSONField()
    ratings = serializers.ListField(child=serializers.DictField())
    win_rate = serializers.JSONField(help_text="labels and matrix")
    position_bias = serializers.DictField()
    agreement = serializers.DictField()
    criteria = serializers.DictField()
    categories = serializers.JSONField()
    raters = serializers.ListField(child=serializers.DictField())
    time_spent = serializers.DictField()
    self_identification = serializers.DictField()
    bootstrap = serializers.DictField(allow_null=True)


class CampaignRatingsApi(ProjectApiView):
    roles = RoleSet.OVERSIGHT

    @extend_schema(parameters=[CampaignRatingsQuery], responses={200: CampaignRatingsOutput})
    def get(self, request: Request, project_id: int, campaign_id: int) -> Response:
        """The ratings table, win-rate matrix, position bias, agreement and raters.
        `self_identification` says how many battles named their model and whether they
        were counted."""
        access = self.access
        campaign = _get(Campaign, access.project, campaign_id, "campaign")
        query = CampaignRatingsQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        results = selectors.campaign_results(
            campaign=campaign,
            include_self_identified=query.validated_data["include_self_identified"],
        )
        return Response(results.as_dict())


class MetricRunInput(serializers.Serializer):
    contestant = serializers.IntegerField()
    prompt_set = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=MetricRun.Kind.values, default="text")
    slice_field = serializers.CharField(required=False, allow_blank=True, default="")
    gap_threshold = serializers.FloatField(default=0.05)


class MetricRunOutput(serializers.ModelSerializer):
    class Meta:
        model = MetricRun
        fields = [
            "id",
            "contestant",
            "prompt_set",
            "kind",
            "status",
            "results",
            "slices",
            "error",
            "created_at",
            "finished_at",
        ]


class MetricRunCreateApi(ProjectApiView):
    parser_classes = [StrictJSONParser]
    roles = RoleSet.ENGINEERS

    @extend_schema(request=MetricRunInput, responses={201: MetricRunOutput})
    def post(self, request: Request, project_id: int) -> Response:
        access = self.access
        payload = MetricRunInput(data=request.data)
        payload.is_valid(raise_exception=True)
        data = dict(payload.validated_data)
        run = services.metric_run_start(
            actor=request.user,
            contestant=_get(Contestant, access.project, data.pop("contestant"), "contestant"),
            prompt_set=selectors.prompt_set_get(
                project=access.project, prompt_set_id=data.pop("prompt_set")
            ),
            **data,
        )
        return Response(MetricRunOutput(run).data, status=status.HTTP_201_CREATED)


class MetricRunDetailApi(ProjectApiView):
    roles = RoleSet.OVERSIGHT

    @extend_schema(responses={200: MetricRunOutput})
    def get(self, request: Request, project_id: int, run_id: int) -> Response:
        access = self.access
        return Response(MetricRunOutput(_get(MetricRun, access.project, run_id, "run")).data)


class GateInput(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    checks = serializers.ListField(child=serializers.DictField(), min_length=1)


class GateCreatedOutput(serializers.Serializer):
    id = serializers.IntegerField()
    checks = serializers.ListField(child=serializers.DictField())


class GateCreateApi(ProjectApiView):
    parser_classes = [StrictJSONParser]
    roles = RoleSet.ENGINEERS

    @extend_schema(request=GateInput, responses={201: GateCreatedOutput})
    def post(self, request: Request, project_id: int) -> Response:
        access = self.access
        payload = GateInput(data=request.data)
        payload.is_valid(raise_exception=True)
        gate = services.gate_create(
            actor=request.user, project=access.project, **payload.validated_data
        )
        return Response({"id": gate.pk, "checks": gate.checks}, status=status.HTTP_201_CREATED)


class GateRunInput(serializers.Serializer):
    candidate = serializers.IntegerField()
    baseline = serializers.IntegerField()


class GateRunOutput(serializers.ModelSerializer):
    class Meta:
        model = GateRun
        fields = ["id", "gate", "candidate", "baseline", "model_version", "passed", "results"]


class GateRunCreateApi(ProjectApiView):
    parser_classes = [StrictJSONParser]
    roles = RoleSet.ENGINEERS

    @extend_schema(request=GateRunInput, responses={201: GateRunOutput})
    def post(self, request: Request, project_id: int, gate_id: int) -> Response:
        access = self.access
        gate = _get(Gate, access.project, gate_id, "gate")
        payload = GateRunInput(data=request.data)
        payload.is_valid(raise_exception=True)
        run = services.gate_run(
            actor=request.user,
            gate=gate,
            candidate=_get(Contestant, access.project, payload.validated_data["candidate"], "c"),
            baseline=_get(Contestant, access.project, payload.validated_data["baseline"], "c"),
        )
        return Response(GateRunOutput(run).data, status=status.HTTP_201_CREATED)
