import itertools

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from annotation.models import DatasetUpload, QualityCheck
from core.jobs import job_lock
from core.models import AuditEvent, BackgroundJob, JobStatus
from core.services.jobs import (
    job_cancel_request,
    job_cancelled,
    job_claim,
    job_fail,
    job_finish,
    job_heartbeat,
    job_models,
    job_progress,
    jobs_requeue,
    jobs_sweep_all,
)
from evaluation.models import (
    Campaign,
    Contestant,
    GenerationJob,
    MetricRun,
    PromptSet,
    RatingsBootstrap,
)
from governance.models import Dossier
from training.models import BaseModel, BaseModelRegistration, ModelVersion, TrainingJob

pytestmark = pytest.mark.django_db

KINDS = [
    DatasetUpload,
    QualityCheck,
    BaseModelRegistration,
    TrainingJob,
    GenerationJob,
    RatingsBootstrap,
    MetricRun,
    Dossier,
]


SERIAL = itertools.count()


def _base_model(project, user) -> BaseModel:
    return BaseModel.objects.create(
        project=project,
        name=f"tiny-{next(SERIAL)}",
        source=BaseModel.Source.LOCAL,
        path="/models/tiny",
        architecture="LlamaForCausalLM",
        parameter_count=1000,
        tokenizer="char",
        weights_sha256="0" * 64,
        created_by=user,
    )


def _prompts(project, user) -> tuple[PromptSet, Contestant]:
    prompt_set = PromptSet.objects.create(
        project=project,
        name=f"prompts-{next(SERIAL)}",
        source=PromptSet.Source.UPLOAD,
        created_by=user,
    )
    contestant = Contestant.objects.create(
        project=project, label=f"c{next(SERIAL)}", created_by=user
    )
    return prompt_set, contestant


def make_job(model: type[BackgroundJob], project, user, **fields) -> BackgroundJob:
    """One row of a kind of job, with the least each kind needs."""
    if model is DatasetUpload:
        return DatasetUpload.objects.create(
            project=project, file_name="rows.jsonl", created_by=user, **fields
        )
    if model is QualityCheck:
        return QualityCheck.objects.create(
            project=project, kind=QualityCheck.Kind.DUPLICATES, created_by=user, **fields
        )
    if model is BaseModelRegistration:
        return BaseModelRegistration.objects.create(
            project=project,
            name="tiny",
            source="local",
            path="/models/tiny",
            created_by=user,
            **fields,
        )
    if model is TrainingJob:
        return TrainingJob.objects.create(
            project=project,
            name="sft",
            kind="sft",
            method="lora",
            base_model=_base_model(project, user),
            created_by=user,
            **fields,
        )
    if model in (GenerationJob, MetricRun):
        prompt_set, contestant = _prompts(project, user)
        return model.objects.create(
            project=project,
            prompt_set=prompt_set,
            contestant=contestant,
            created_by=user,
            **fields,
        )
    if model is RatingsBootstrap:
        prompt_set, _ = _prompts(project, user)
        campaign = Campaign.objects.create(
            project=project, name="c", prompt_set=prompt_set, created_by=user
        )
        return RatingsBootstrap.objects.create(campaign=campaign, created_by=user, **fields)
    if model is Dossier:
        version = ModelVersion.objects.create(
            project=project,
            name=f"v{next(SERIAL)}",
            base_model=_base_model(project, user),
            kind=ModelVersion.Kind.ADAPTER,
            path="/versions/v1",
            base_weights_sha256="0" * 64,
        )
        return Dossier.objects.create(
            project=project,
            model_version=version,
            inputs_sha256="1" * 64,
            requested_by=user,
            **fields,
        )
    raise AssertionError(f"no recipe for {model.__name__}: add one to make_job")


def _row(job: BackgroundJob) -> dict:
    return type(job).objects.filter(pk=job.pk).values().get()


kinds = pytest.mark.parametrize("model", KINDS, ids=lambda model: model.__name__)


def test_every_kind_of_background_job_stands_on_the_one_base():
    assert set(job_models()) == set(KINDS)
    for model in KINDS:
        assert model.Status is JobStatus
        assert model._meta.get_field("status").choices == JobStatus.choices


@kinds
def test_a_job_is_claimed_once_and_a_second_claim_changes_nothing(model, project, engineer):
    job = make_job(model, project, engineer)

    assert job_claim(model, pk=job.pk)
    claimed = _row(job)
    assert not job_claim(model, pk=job.pk)

    assert claimed["status"] == JobStatus.RUNNING
    assert claimed["started_at"] is not None
    assert claimed["heartbeat_at"] is not None
    assert _row(job) == claimed


def test_a_claim_writes_the_kinds_own_fields_and_state(project, engineer):
    job = make_job(TrainingJob, project, engineer)

    assert job_claim(TrainingJob, pk=job.pk, to=JobStatus.PREFLIGHT, worker="gpu-1")

    job.refresh_from_db()
    assert job.status == JobStatus.PREFLIGHT
    assert job.worker == "gpu-1"


def test_a_job_cancelled_while_queued_is_never_claimed(project, engineer):
    job = make_job(QualityCheck, project, engineer)
    with transaction.atomic():
        job_cancel_request(QualityCheck, pk=job.pk)

    assert not job_claim(QualityCheck, pk=job.pk)

    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert job.started_at is None
    assert job.finished_at is not None


@kinds
def test_a_running_job_finishes_with_its_results(model, project, engineer):
    job = make_job(model, project, engineer, status=JobStatus.RUNNING)

    finished = job_finish(model, pk=job.pk)

    assert finished.status == JobStatus.SUCCEEDED
    assert finished.finished_at is not None
    assert _row(job)["status"] == JobStatus.SUCCEEDED


def test_finish_and_progress_write_the_kinds_own_fields(project, engineer):
    job = make_job(QualityCheck, project, engineer, status=JobStatus.RUNNING)

    job_progress(QualityCheck, pk=job.pk, done=5, total=10)
    job.refresh_from_db()
    assert (job.done, job.total) == (5, 10)
    assert job.heartbeat_at is not None
    job_finish(QualityCheck, pk=job.pk, done=10, result={"items": 10})

    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    assert (job.done, job.result) == (10, {"items": 10})


def test_a_failed_job_keeps_why(project, engineer):
    job = make_job(GenerationJob, project, engineer, status=JobStatus.RUNNING)

    failed = job_fail(GenerationJob, pk=job.pk, error="out of memory")

    job.refresh_from_db()
    assert failed.status == job.status == JobStatus.FAILED
    assert job.error == "out of memory"
    assert job.finished_at is not None


@pytest.mark.parametrize(
    "status", [JobStatus.QUEUED, JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED]
)
def test_only_a_started_job_settles_and_a_settled_one_stays_as_it_was(status, project, engineer):
    job = make_job(MetricRun, project, engineer, status=status, error="as it was")
    before = _row(job)

    assert job_finish(MetricRun, pk=job.pk) is None
    assert job_fail(MetricRun, pk=job.pk, error="late") is None
    assert job_cancelled(MetricRun, pk=job.pk) is None

    assert _row(job) == before


def test_a_running_job_asked_to_cancel_stops_at_its_next_heartbeat(project, engineer):
    job = make_job(TrainingJob, project, engineer, status=JobStatus.RUNNING)
    assert not job_heartbeat(TrainingJob, pk=job.pk, runner_pid=42)

    with transaction.atomic():
        asked = job_cancel_request(TrainingJob, pk=job.pk)

    assert asked.status == JobStatus.RUNNING  # its worker stops it
    assert job_heartbeat(TrainingJob, pk=job.pk, runner_pid=42)
    cancelled = job_cancelled(TrainingJob, pk=job.pk)
    assert cancelled.status == JobStatus.CANCELLED
    assert cancelled.finished_at is not None


@pytest.mark.parametrize("status", [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED])
def test_a_finished_job_cannot_be_cancelled(status, project, engineer):
    job = make_job(Dossier, project, engineer, status=status)
    before = _row(job)

    with pytest.raises(ValidationError, match="nothing to cancel"), transaction.atomic():
        job_cancel_request(Dossier, pk=job.pk)

    assert _row(job) == before


def test_abandoned_jobs_go_back_to_the_queue_and_finished_ones_stay(project, engineer):
    running = make_job(Dossier, project, engineer, status=JobStatus.RUNNING, progress=40)
    done = make_job(Dossier, project, engineer, status=JobStatus.SUCCEEDED, progress=100)

    requeued = jobs_requeue(Dossier.objects.filter(project=project), progress=0)

    assert [job.pk for job in requeued] == [running.pk]
    running.refresh_from_db()
    done.refresh_from_db()
    assert (running.status, running.progress) == (JobStatus.QUEUED, 0)
    assert (done.status, done.progress) == (JobStatus.SUCCEEDED, 100)


def test_the_database_refuses_a_status_outside_the_vocabulary(project, engineer):
    job = make_job(RatingsBootstrap, project, engineer)

    with pytest.raises(IntegrityError), transaction.atomic():
        RatingsBootstrap.objects.filter(pk=job.pk).update(status="done")


@kinds
def test_the_sweep_fails_a_dead_job_of_every_kind_and_spares_a_live_one(model, project, engineer):
    dead = make_job(model, project, engineer, status=JobStatus.RUNNING)
    alive = make_job(model, project, engineer, status=JobStatus.RUNNING)

    with job_lock(model, alive.pk) as held:  # a live worker holds its job's lock
        assert held
        counts = jobs_sweep_all()

    assert counts[model.job_noun] == 1
    assert sum(counts.values()) == 1
    dead.refresh_from_db()
    alive.refresh_from_db()
    assert dead.status == JobStatus.FAILED
    assert "died before it finished" in dead.error
    assert dead.finished_at is not None
    assert alive.status == JobStatus.RUNNING
    event = AuditEvent.objects.get(action=f"{model.job_audit_prefix()}.lost")
    assert event.target_id == str(dead.pk)
    assert event.project_id == project.pk


# --- the migration onto the base keeps existing rows ------------------------------------

BEFORE = [
    ("annotation", "0007_dataset_field_provenance_upload_report"),
    ("training", "0003_job_progress_and_base_model_registration"),
    ("evaluation", "0005_self_identification_and_truncation"),
    ("governance", "0007_stage_change_audit_seq"),
]
AFTER = [
    ("annotation", "0008_background_job_base"),
    ("training", "0004_background_job_base"),
    ("evaluation", "0006_background_job_base"),
    ("governance", "0008_background_job_base"),
]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_migrating_onto_the_job_base_keeps_every_row_and_its_status(project, engineer):
    old = _migrate(BEFORE)
    try:
        Check = old.get_model("annotation", "QualityCheck")
        Registration = old.get_model("training", "BaseModelRegistration")
        rows = {
            status: Check.objects.create(
                project_id=project.pk,
                kind="pii",
                status=status,
                error=f"{status} error",
                created_by_id=engineer.pk,
            ).pk
            for status in ("queued", "running", "succeeded", "failed")
        }
        registration = Registration.objects.create(
            project_id=project.pk,
            name="tiny",
            source="local",
            path="/models/tiny",
            status="succeeded",
            created_by_id=engineer.pk,
        )

        _migrate(AFTER)

        for status, pk in rows.items():
            check = QualityCheck.objects.get(pk=pk)
            assert (check.status, check.error) == (status, f"{status} error")
            assert not check.cancel_requested
            assert check.started_at is None
        assert BaseModelRegistration.objects.get(pk=registration.pk).status == "succeeded"

        back = _migrate(BEFORE)  # and back: the rows stay, the new columns go
        assert back.get_model("annotation", "QualityCheck").objects.count() == len(rows)
    finally:
        # The newest state, not AFTER: migrations added since must be there for later tests.
        _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
