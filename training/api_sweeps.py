"""The hyperparameter-sweep API: list and create sweeps, read one with its trials, register
its best trial's model. Engineers create and register; admins and compliance read."""

from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError as DrfValidationError
from rest_framework.response import Response

from core.access import ProjectApiView
from core.api_errors import StrictInput
from core.authentication import AuthenticatedRequest as Request
from core.models import RoleSet
from training import selectors, services
from training.api import ModelVersionOutput
from training.models import Sweep, SweepTrial
from training.selectors.sweeps import sweep_get, sweep_list_for_project, sweep_trials


class TrialOutput(serializers.ModelSerializer):
    class Meta:
        model = SweepTrial
        fields = ["number", "job", "params", "state", "value", "intermediate", "error"]


class SweepOutput(serializers.ModelSerializer):
    best_trial = serializers.IntegerField(source="best_trial.number", allow_null=True)

    class Meta:
        model = Sweep
        fields = [
            "id",
            "name",
            "status",
            "base_job",
            "search_space",
            "initial_trials",
            "sampler",
            "pruner",
            "pruner_settings",
            "seed",
            "n_trials",
            "concurrency",
            "max_minutes",
            "best_trial",
            "error",
            "created_at",
            "finished_at",
        ]


class SweepDetailOutput(SweepOutput):
    trials = serializers.SerializerMethodField()

    class Meta(SweepOutput.Meta):
        fields = [*SweepOutput.Meta.fields, "trials"]

    @extend_schema(responses=TrialOutput(many=True))
    def get_trials(self, sweep: Sweep) -> list:
        return TrialOutput(sweep_trials(sweep=sweep), many=True).data


class SweepInput(StrictInput):
    base_job = serializers.IntegerField(help_text="The job whose data and settings trials copy.")
    name = serializers.CharField(required=False, allow_blank=True, default="")
    search_space = serializers.DictField(
        help_text='{setting: {"type": "float"|"int"|"categorical", "low", "high", "log", '
        '"step", "choices"}}'
    )
    initial_trials = serializers.ListField(
        child=serializers.DictField(), required=False, default=list
    )
    n_trials = serializers.IntegerField()
    concurrency = serializers.IntegerField(default=1)
    max_minutes = serializers.IntegerField(required=False, allow_null=True, default=None)
    sampler = serializers.ChoiceField(choices=Sweep.Sampler.choices, default=Sweep.Sampler.TPE)
    pruner = serializers.ChoiceField(choices=Sweep.Pruner.choices, default=Sweep.Pruner.MEDIAN)
    pruner_settings = serializers.DictField(required=False, default=dict)
    seed = serializers.IntegerField(default=0)


class SweepListCreateApi(ProjectApiView):
    roles = {"GET": RoleSet.OVERSIGHT, "POST": RoleSet.ENGINEERS}

    @extend_schema(responses=SweepOutput(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        sweeps = sweep_list_for_project(project=self.access.project)[:100]
        return Response(SweepOutput(sweeps, many=True).data)

    @extend_schema(request=SweepInput, responses={201: SweepDetailOutput})
    def post(self, request: Request, project_id: int) -> Response:
        project = self.access.project
        payload = SweepInput(data=request.data)
        payload.is_valid(raise_exception=True)
        data = dict(payload.validated_data)
        try:
            base_job = selectors.job_get(project=project, job_id=data.pop("base_job"))
        except Http404:  # a job of another project is not this caller's to know
            raise DrfValidationError({"base_job": ["No such training job."]}) from None
        sweep = services.sweep_create(
            actor=request.user, project=project, base_job=base_job, **data
        )
        return Response(SweepDetailOutput(sweep).data, status=status.HTTP_201_CREATED)


class SweepDetailApi(ProjectApiView):
    roles = RoleSet.OVERSIGHT

    @extend_schema(responses=SweepDetailOutput)
    def get(self, request: Request, project_id: int, sweep_id: int) -> Response:
        sweep = sweep_get(project=self.access.project, sweep_id=sweep_id)
        return Response(SweepDetailOutput(sweep).data)


class SweepRegisterBestApi(ProjectApiView):
    roles = RoleSet.ENGINEERS

    @extend_schema(request=None, responses={201: ModelVersionOutput})
    def post(self, request: Request, project_id: int, sweep_id: int) -> Response:
        sweep = sweep_get(project=self.access.project, sweep_id=sweep_id)
        version = services.sweep_register_best(actor=request.user, sweep=sweep)
        return Response(ModelVersionOutput(version).data, status=status.HTTP_201_CREATED)
