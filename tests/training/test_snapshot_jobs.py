"""Jobs that train on an annotation snapshot: the worker exports it, and a snapshot whose
splits were not checked for leakage (or leak) is refused before anything is queued."""

import pytest
from django.core.exceptions import ValidationError

from annotation.models import QualityCheck
from annotation.services import quality
from annotation.services.snapshots import snapshot_create
from core.models import AuditEvent, JobStatus
from tests.annotation.factories import DatasetFactory, classification_setup, gold_item
from tests.evaluation.factories import writing_snapshot
from tests.training.conftest import QUICK, wait_finished
from training import services
from training.models import TrainingJob


def _create(engineer, project, base, snapshot, **values):
    return services.training_job_create(
        actor=engineer,
        project=project,
        name="from snapshot",
        kind="sft",
        method="lora",
        base_model=base,
        values={**QUICK, **values},
        snapshot=snapshot,
    )


@pytest.mark.django_db
def test_a_snapshot_without_a_leakage_check_is_refused(engineer, project, tiny_base_model):
    snapshot = writing_snapshot(project, engineer)
    # Every snapshot starts its check now; one made before that has none.
    QualityCheck.objects.filter(snapshot=snapshot).delete()

    with pytest.raises(ValidationError, match="no finished leakage check"):
        _create(engineer, project, tiny_base_model, snapshot)
    assert not TrainingJob.objects.exists()


@pytest.mark.django_db
def test_a_leaking_snapshot_is_refused_with_the_count(
    engineer, project, tiny_base_model, django_capture_on_commit_callbacks
):
    snapshot = writing_snapshot(project, engineer, duplicate=True)
    with django_capture_on_commit_callbacks(execute=True):
        check = quality.quality_check_start(
            actor=engineer, project=project, kind="leakage", snapshot=snapshot, run_now=True
        )
    check.refresh_from_db()
    assert check.result["leaks"] > 0

    with pytest.raises(
        ValidationError, match=r"has \d+ group\(s\) of duplicates across its splits"
    ):
        _create(engineer, project, tiny_base_model, snapshot)

    job = services.training_job_create(
        actor=engineer,
        project=project,
        name="accepted",
        kind="sft",
        method="lora",
        base_model=tiny_base_model,
        values=dict(QUICK),
        snapshot=snapshot,
        accept_leakage=True,
    )
    assert job.data["leakage"] == {
        "checked": True,
        "status": "succeeded",
        "leaks": check.result["leaks"],
        "accepted": True,
    }
    event = AuditEvent.objects.get(action="training.job.create", target_id=str(job.pk))
    assert event.data["leakage"]["accepted"] is True


@pytest.mark.django_db
def test_a_classification_snapshot_cannot_train_a_dpo_job(engineer, project, tiny_base_model):
    classification_setup(project)
    dataset = DatasetFactory(project=project)
    for i in range(10):
        gold_item(dataset, {"text": f"t{i}"}, {"labels": ["pos"]})
    snapshot = snapshot_create(actor=engineer, project=project, name="cls")

    with pytest.raises(ValidationError, match="needs preference data"):
        services.training_job_create(
            actor=engineer,
            project=project,
            name="dpo",
            kind="dpo",
            method="lora",
            base_model=tiny_base_model,
            values={},
            snapshot=snapshot,
        )


@pytest.mark.django_db(transaction=True)
@pytest.mark.celery
def test_the_worker_trains_on_the_snapshot_export_and_records_its_lineage(
    celery_worker, engineer, project, tiny_base_model
):
    snapshot = writing_snapshot(project, engineer)
    quality.quality_check_start(
        actor=engineer, project=project, kind="leakage", snapshot=snapshot, run_now=True
    )

    job = wait_finished(_create(engineer, project, tiny_base_model, snapshot, max_steps=4))

    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.snapshot_id == snapshot.pk
    assert job.manifest_sha256 == snapshot.manifest_sha256
    splits = snapshot.stats["splits"]
    assert job.data["train"]["rows"] == splits["train"]
    assert job.data["validation"]["rows"] == splits["validation"]
    assert len(job.data["train"]["sha256"]) == 64
    assert job.metrics.exists()


@pytest.mark.django_db
def test_a_snapshot_whose_leakage_check_still_runs_says_so(engineer, project, tiny_base_model):
    snapshot = writing_snapshot(project, engineer)
    quality.quality_check_start(actor=engineer, project=project, kind="leakage", snapshot=snapshot)

    with pytest.raises(ValidationError, match="leakage check is still queued; launch once"):
        _create(engineer, project, tiny_base_model, snapshot)
