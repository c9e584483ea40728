"""The evaluation API's lists, details and campaign actions: every prompt set, contestant and
campaign can be found again by listing (filters named after what they filter, `cursor`
paging), and each button of the overview and results pages has its endpoint here, calling
the service the page calls. Generated outputs are read here too, never by a caller who
reviews in an open campaign of their contestant (see `contestant_ids_blind_for`).
"""

from django.http import Http404
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.response import Response

from annotation.conversations import display_turns, prompt_text
from annotation.selectors import snapshot_get
from core.access import ProjectApiView
from core.api_errors import StrictInput
from core.authentication import AuthenticatedRequest as Request
from core.models import JobStatus, RoleSet
from core.pagination import MAX_OFFSET, CursorListQuery, PortalCursorPagination
from core.parsers import StrictJSONParser
from evaluation import api, selectors, services
from evaluation.models import Campaign, PromptSet, RatingsBootstrap
from evaluation.selectors import listing


def _id(help_text: str) -> serializers.IntegerField:
    # Ids are bigints: a longer number names no row, and is refused before the database.
    return serializers.IntegerField(
        min_value=1, max_value=MAX_OFFSET, required=False, help_text=help_text
    )


def _page(request: Request, view: ProjectApiView, rows, output, ordering: str = "-pk"):
    paginator = PortalCursorPagination(ordering)
    page = paginator.paginate_queryset(rows, request, view=view)
    return paginator.get_paginated_response(output(page, many=True).data)


def _campaign(access, campaign_id: int) -> Campaign:
    return listing.campaign_get_detailed(project=access.project, campaign_id=campaign_id)


# --- prompt sets -----------------------------------------------------------------------------


class PromptSetQuery(CursorListQuery):
    name = serializers.CharField(required=False, help_text="The prompt set's name, exactly.")
    # A declared field, not the stubs' Serializer/Field attribute `source`.
    source = serializers.ChoiceField(  # type: ignore[assignment]
        choices=PromptSet.Source.choices, required=False, help_text="How it was made."
    )
    adversarial = serializers.BooleanField(required=False, help_text="Red-team sets only.")
    general = serializers.BooleanField(required=False, help_text="General held-out sets only.")


class PromptSetListCreateApi(api.PromptSetCreateApi):
    pagination_class = PortalCursorPagination
    # The POST-only base class declared one role set; this view adds GET for more roles.
    roles = {"GET": RoleSet.OVERSIGHT, "POST": RoleSet.ENGINEERS}  # type: ignore[assignment]

    @extend_schema(parameters=[PromptSetQuery], responses=api.PromptSetOutput(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        """The project's prompt sets, newest first."""
        query = PromptSetQuery(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        found = listing.prompt_set_list_filtered(project=self.access.project, **query.filters())
        return _page(request, self, found, api.PromptSetOutput)


class PromptSetDetailApi(ProjectApiView):
    roles = RoleSet.OVERSIGHT

    @extend_schema(responses=api.PromptSetOutput)
    def get(self, request: Request, project_id: int, prompt_set_id: int) -> Response:
        prompt_set = selectors.prompt_set_get(
            project=self.access.project, prompt_set_id=prompt_set_id
        )
        return Response(api.PromptSetOutput(prompt_set).data)


class PromptSetFromSnapshotInput(StrictInput):
    name = serializers.CharField(max_length=200)
    snapshot = serializers.IntegerField(
        min_value=1,
        max_value=MAX_OFFSET,
        help_text="A snapshot of this project: its test split becomes the prompts and its "
        "gold responses the references.",
    )
    adversarial = serializers.BooleanField(default=False, help_text="A red-team set.")


class PromptSetFromSnapshotApi(ProjectApiView):
    parser_classes = [StrictJSONParser]
    roles = RoleSet.ENGINEERS

    @extend_schema(request=PromptSetFromSnapshotInput, responses={201: api.PromptSetOutput})
    def post(self, request: Request, project_id: int) -> Response:
        payload = PromptSetFromSnapshotInput(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        snapshot = snapshot_get(project=self.access.project, snapshot_id=data["snapshot"])
        if snapshot is None:
            raise Http404("No such snapshot.")
        prompt_set = services.prompt_set_create_from_snapshot(
            actor=request.user,
            snapshot=snapshot,
            name=data["name"],
            adversarial=data["adversarial"],
        )
        return Response(api.PromptSetOutput(prompt_set).data, status=status.HTTP_201_CREATED)


# --- contestants -----------------------------------------------------------------------------


class ContestantQuery(CursorListQuery):
    # A declared field, not the stubs' Serializer/Field attribute `label`.
    label = serializers.CharField(  # type: ignore[assignment]
        required=False, help_text="The contestant's label, exactly."
    )
    model_version = _id("Contestants of this model version.")
    base_model = _id("Contestants of this base model (with a prompt template).")


class ContestantListCreateApi(api.ContestantCreateApi):
    pagination_class = PortalCursorPagination
    # The POST-only base class declared one role set; this view adds GET for more roles.
    roles = {"GET": RoleSet.OVERSIGHT, "POST": RoleSet.ENGINEERS}  # type: ignore[assignment]

    @extend_schema(parameters=[ContestantQuery], responses=api.ContestantOutput(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        """The project's contestants, newest first."""
        query = ContestantQuery(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        found = listing.contestant_list_filtered(project=self.access.project, **query.filters())
        return _page(request, self, found, api.ContestantOutput)


class ContestantDetailApi(ProjectApiView):
    roles = RoleSet.OVERSIGHT

    @extend_schema(responses=api.ContestantOutput)
    def get(self, request: Request, project_id: int, contestant_id: int) -> Response:
        contestant = listing.contestant_get(
            project=self.access.project, contestant_id=contestant_id
        )
        return Response(api.ContestantOutput(contestant).data)


# --- campaigns -------------------------------------------------------------------------------


class CampaignContestantOutput(serializers.Serializer):
    id = serializers.IntegerField()
    # A declared field, not the stubs' Serializer/Field attribute `label`.
    label = serializers.CharField()  # type: ignore[assignment]


class BootstrapOutput(serializers.Serializer):
    id = serializers.IntegerField()
    campaign = serializers.IntegerField(source="campaign_id")
    status = serializers.ChoiceField(choices=JobStatus.choices)
    rounds = serializers.IntegerField()
    judgments = serializers.IntegerField(help_text="How many judgments it resampled.")
    error = serializers.CharField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)


class CampaignOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=Campaign.Status.choices)
    prompt_set = serializers.IntegerField(source="prompt_set_id")
    prompt_set_name = serializers.CharField(source="prompt_set.name")
    contestants = CampaignContestantOutput(many=True, source="contestants.all")
    question = serializers.CharField()
    criteria = serializers.JSONField(help_text="[{key, label, scale}, ...]")
    raters_per_pair = serializers.IntegerField()
    rater_quota = serializers.IntegerField(help_text="0: no limit.")
    pair_selection = serializers.ChoiceField(choices=Campaign.PairSelection.choices)
    attention_every = serializers.IntegerField()
    judged = serializers.IntegerField(help_text="Submitted judgments, attention checks aside.")
    stats = serializers.JSONField(
        help_text="{battles, attention_checks, identical_skipped, self_identified}"
    )
    created_at = serializers.DateTimeField()
    closed_at = serializers.DateTimeField(allow_null=True)


class CampaignQuery(CursorListQuery):
    name = serializers.CharField(required=False, help_text="The campaign's name, exactly.")
    status = serializers.ChoiceField(choices=Campaign.Status.choices, required=False)
    prompt_set = _id("Campaigns over this prompt set.")
    contestant = _id("Campaigns this contestant competes in.")


class CampaignListCreateApi(api.CampaignCreateApi):
    pagination_class = PortalCursorPagination
    # The POST-only base class declared one role set; this view adds GET for more roles.
    roles = {"GET": RoleSet.OVERSIGHT, "POST": RoleSet.ENGINEERS}  # type: ignore[assignment]

    @extend_schema(parameters=[CampaignQuery], responses=CampaignOutput(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        """The project's campaigns, newest first."""
        query = CampaignQuery(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        found = listing.campaign_list_filtered(project=self.access.project, **query.filters())
        return _page(request, self, found, CampaignOutput)


class CampaignDetailApi(ProjectApiView):
    roles = RoleSet.OVERSIGHT

    @extend_schema(responses=CampaignOutput)
    def get(self, request: Request, project_id: int, campaign_id: int) -> Response:
        return Response(CampaignOutput(_campaign(self.access, campaign_id)).data)


class CampaignCloseApi(ProjectApiView):
    parser_classes = [StrictJSONParser]  # no files: the small body limit applies
    roles = RoleSet.ENGINEERS

    @extend_schema(request=None, responses=CampaignOutput)
    def post(self, request: Request, project_id: int, campaign_id: int) -> Response:
        """Close the campaign (its open pairs are withdrawn) and queue the final bootstrap.
        A closed campaign is refused with a 400."""
        campaign = _campaign(self.access, campaign_id)
        services.campaign_close(actor=request.user, campaign=campaign)
        return Response(CampaignOutput(_campaign(self.access, campaign_id)).data)


class CampaignBootstrapApi(ProjectApiView):
    parser_classes = [StrictJSONParser]  # no files: the small body limit applies
    roles = RoleSet.ENGINEERS

    @extend_schema(request=None, responses={201: BootstrapOutput})
    def post(self, request: Request, project_id: int, campaign_id: int) -> Response:
        """Queue a bootstrap of the ratings (1000 rounds), as the results page's button
        does; its intervals show in ratings/ once it succeeded."""
        campaign = _campaign(self.access, campaign_id)
        bootstrap = services.ratings_bootstrap_start(actor=request.user, campaign=campaign)
        return Response(BootstrapOutput(bootstrap).data, status=status.HTTP_201_CREATED)


class CampaignBootstrapDetailApi(ProjectApiView):
    roles = RoleSet.OVERSIGHT

    @extend_schema(responses=BootstrapOutput)
    def get(
        self, request: Request, project_id: int, campaign_id: int, bootstrap_id: int
    ) -> Response:
        campaign = _campaign(self.access, campaign_id)
        bootstrap = RatingsBootstrap.objects.filter(campaign=campaign, pk=bootstrap_id).first()
        if bootstrap is None:
            raise Http404("No such bootstrap.")
        return Response(BootstrapOutput(bootstrap).data)


class RaterInput(StrictInput):
    reviewer = serializers.IntegerField(
        min_value=1,
        max_value=MAX_OFFSET,
        help_text="The reviewer's user id (`raters[].reviewer_id` in ratings/).",
    )


class RaterOutput(serializers.Serializer):
    reviewer = serializers.IntegerField(source="reviewer_id")
    campaign = serializers.IntegerField(source="campaign_id")
    attention_checks = serializers.IntegerField()
    attention_failed = serializers.IntegerField()
    flagged = serializers.BooleanField()
    excluded = serializers.BooleanField()


class _RaterSetExcluded(ProjectApiView):
    parser_classes = [StrictJSONParser]
    roles = RoleSet.ENGINEERS
    excluded: bool

    def _set(self, request: Request, campaign_id: int) -> Response:
        campaign = _campaign(self.access, campaign_id)
        payload = RaterInput(data=request.data)
        payload.is_valid(raise_exception=True)
        rater = services.rater_set_excluded(
            actor=request.user,
            campaign=campaign,
            reviewer_id=payload.validated_data["reviewer"],
            excluded=self.excluded,
        )
        return Response(RaterOutput(rater).data)


class CampaignRaterExcludeApi(_RaterSetExcluded):
    excluded = True

    @extend_schema(request=RaterInput, responses=RaterOutput)
    def post(self, request: Request, project_id: int, campaign_id: int) -> Response:
        """Leave a reviewer's verdicts out of the campaign's results."""
        return self._set(request, campaign_id)


class CampaignRaterIncludeApi(_RaterSetExcluded):
    excluded = False

    @extend_schema(request=RaterInput, responses=RaterOutput)
    def post(self, request: Request, project_id: int, campaign_id: int) -> Response:
        """Count an excluded reviewer's verdicts again."""
        return self._set(request, campaign_id)


class PreferenceExportInput(StrictInput):
    name = serializers.CharField(max_length=200, help_text="The new snapshot's name.")


class PreferenceExportOutput(serializers.Serializer):
    snapshot = serializers.IntegerField(
        source="pk", help_text="The preference snapshot (GET snapshots/<id>/)."
    )
    name = serializers.CharField()
    version = serializers.IntegerField()
    member_count = serializers.IntegerField(help_text="Preference pairs in it.")
    manifest_sha256 = serializers.CharField()


class CampaignPreferenceExportApi(ProjectApiView):
    parser_classes = [StrictJSONParser]
    roles = RoleSet.ENGINEERS

    @extend_schema(request=PreferenceExportInput, responses={201: PreferenceExportOutput})
    def post(self, request: Request, project_id: int, campaign_id: int) -> Response:
        """The campaign's decisive judgments as a preference snapshot (prompt, chosen,
        rejected) for the next reward-model or DPO round."""
        campaign = _campaign(self.access, campaign_id)
        payload = PreferenceExportInput(data=request.data)
        payload.is_valid(raise_exception=True)
        snapshot = services.campaign_export_preferences(
            actor=request.user, campaign=campaign, name=payload.validated_data["name"]
        )
        return Response(PreferenceExportOutput(snapshot).data, status=status.HTTP_201_CREATED)


# --- generated outputs -----------------------------------------------------------------------


class OutputPromptOutput(serializers.Serializer):
    id = serializers.IntegerField()
    position = serializers.IntegerField(help_text="Its place in the prompt set, from 0.")
    text = serializers.SerializerMethodField(help_text="A conversation's turns joined.")
    turns = serializers.SerializerMethodField()
    category = serializers.CharField()
    reference = serializers.SerializerMethodField(help_text="The reference answer.")

    def get_text(self, prompt) -> str:
        return prompt_text(prompt.text)

    def get_reference(self, prompt) -> str:
        return prompt_text(prompt.reference or "")

    @extend_schema_field(api.TurnOutput(many=True, allow_null=True))
    def get_turns(self, prompt) -> list[dict[str, str]] | None:
        return display_turns(prompt.text)


class GenerationOutput(serializers.Serializer):
    id = serializers.IntegerField()
    generation_job = serializers.IntegerField(source="job_id")
    contestant = CampaignContestantOutput(source="job.contestant")
    prompt = OutputPromptOutput()
    output = serializers.CharField(allow_blank=True)
    truncated = serializers.BooleanField(help_text="Cut at the token limit.")
    self_identification = serializers.CharField(
        allow_blank=True, help_text="Why the output names its model; empty when it does not."
    )


class GenerationQuery(CursorListQuery):
    generation_job = _id("Outputs of this generation job.")
    contestant = _id("Outputs of this contestant's jobs.")
    prompt_set = _id("Outputs on this prompt set.")
    campaign = _id("Outputs of this campaign's contestants on its prompt set.")


class GenerationOutputListApi(ProjectApiView):
    pagination_class = PortalCursorPagination
    roles = RoleSet.OVERSIGHT

    @extend_schema(parameters=[GenerationQuery], responses=GenerationOutput(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        """Generated outputs, each beside its prompt and reference answer, in the order
        they were written. A caller who also reviews in this project does not get the
        outputs of contestants in an open campaign: which model wrote which side of a
        blind pair stays hidden from them until it is closed."""
        query = GenerationQuery(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        found = listing.generation_output_list_for_user(access=self.access, **query.filters())
        return _page(request, self, found, GenerationOutput, ordering="pk")
