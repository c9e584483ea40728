import datetime
import io
import json
import time
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.core.cache import cache

from annotation.models import Dataset, DatasetUpload, Item, QualityCheck
from annotation.services.datasets import Provenance, dataset_upload_create
from core.jobs import job_lock
from core.models import AuditEvent
from governance.models import Dossier
from governance.services.dossiers import dossier_dir, dossier_request
from portal.celery import app as celery_app
from portal.tasks import sweep_dead_jobs_task
from tests.governance.factories import gate_passed, lineage_fixture

ROOT = Path(__file__).resolve().parents[2]
PROVENANCE = Provenance(
    source_description="Generated rows for a fault test",
    license="CC0-1.0",
    consent_basis="synthetic",
    collection_date=datetime.date(2026, 1, 1),
    synthetic=True,
)


def poll(condition, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


def test_the_compose_stack_runs_exactly_one_beat_and_no_worker_embeds_one():
    services = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())["services"]

    beats = {name: s for name, s in services.items() if "beat" in (s.get("command") or [])}

    assert list(beats) == ["beat"]
    assert beats["beat"]["command"][:4] == ["celery", "-A", "portal", "beat"]
    assert beats["beat"].get("scale", 1) == 1
    assert "deploy" not in beats["beat"]  # no replicas setting that could run a second one
    for name, service in services.items():
        command = service.get("command") or []
        if "worker" in command:
            assert "-B" not in command, name
            assert "--beat" not in command, name


def test_the_beat_schedule_sweeps_dead_jobs_often_and_purges_uploads_daily():
    celery_app.loader.import_default_modules()
    entries = settings.CELERY_BEAT_SCHEDULE.values()
    schedule = {entry["task"]: entry["schedule"] for entry in entries}

    assert 5 <= schedule["portal.sweep_dead_jobs"] <= 60
    assert 3600 <= schedule["governance.purge_raw_uploads"] <= 24 * 3600
    assert set(schedule) <= set(celery_app.tasks), "the schedule names a task no worker has"


@pytest.mark.django_db(transaction=True)
@pytest.mark.celery
def test_the_sweep_task_fails_on_the_worker_only_jobs_whose_worker_is_gone(
    celery_worker, project, engineer
):
    dead = QualityCheck.objects.create(
        project=project, kind="duplicates", status="running", created_by=engineer
    )
    alive = QualityCheck.objects.create(
        project=project, kind="duplicates", status="running", created_by=engineer
    )

    with job_lock(QualityCheck, alive.pk) as held:  # a live worker holds its job's lock
        assert held
        counts = sweep_dead_jobs_task.delay().get(timeout=60)

    assert counts["quality check"] == 1
    dead.refresh_from_db()
    alive.refresh_from_db()
    assert dead.status == "failed"
    assert "worker running this quality check died" in dead.error
    assert dead.finished_at is not None
    assert alive.status == "running"
    assert AuditEvent.objects.filter(
        action="annotation.qualitycheck.lost", target_id=str(dead.pk)
    ).exists()


# The import reports progress every 20,000 rows; the kill comes at the first report, with
# most of the file still to go.
IMPORT_ROWS = 60_000


def _rows_file(path: Path, rows: int) -> Path:
    with open(path, "w") as out:
        for i in range(rows):
            out.write(json.dumps({"text": f"row {i}: " + "lorem ipsum dolor sit amet " * 6}))
            out.write("\n")
    return path


def _upload(project, engineer, path: Path) -> DatasetUpload:
    with open(path, "rb") as handle:
        return dataset_upload_create(
            project=project,
            uploaded_by=engineer,
            file=io.BufferedReader(handle),
            file_name="big.jsonl",
            provenance=PROVENANCE,
            name="big",
        )


@pytest.mark.django_db(transaction=True)
@pytest.mark.celery
def test_kill_9_of_the_worker_mid_import_keeps_no_rows_and_the_upload_fails_and_retries(
    killable_workers, project, engineer, tmp_path
):
    data = _rows_file(tmp_path / "big.jsonl", IMPORT_ROWS)
    worker = killable_workers()
    upload = _upload(project, engineer, data)
    stored = Path(upload.stored_path)
    poll(
        lambda: cache.get(f"dataset-upload:{upload.pk}:rows"),
        120,
        "the import to write its first rows",
        0.02,
    )

    killable_workers.kill(worker)

    upload.refresh_from_db()
    assert upload.status == "running"  # nothing settled it: the worker is gone
    assert not Item.objects.filter(project=project).exists()
    assert not Dataset.objects.filter(project=project).exists()
    killable_workers()
    counts = sweep_dead_jobs_task.delay().get(timeout=60)
    assert counts["import"] == 1
    upload.refresh_from_db()
    assert upload.status == "failed"
    assert "died" in upload.error
    assert not stored.exists()
    assert not Item.objects.filter(project=project).exists()

    retry = _upload(project, engineer, data)
    poll(
        lambda: (
            DatasetUpload.objects.get(pk=retry.pk).status != "running"
            and DatasetUpload.objects.get(pk=retry.pk).status != "queued"
        ),
        240,
        "the retried import",
        0.5,
    )
    retry.refresh_from_db()
    assert retry.status == "succeeded", retry.error
    assert Item.objects.filter(project=project).count() == IMPORT_ROWS


@pytest.mark.django_db(transaction=True)
@pytest.mark.celery
def test_kill_9_of_the_worker_mid_dossier_build_leaves_no_bundle_and_the_build_retries(
    killable_workers, project, engineer, compliance
):
    lineage = lineage_fixture(project, engineer, n_items=DOSSIER_ITEMS, n_annotators=3)
    gate_passed(lineage.version, engineer)
    worker = killable_workers()
    dossier = dossier_request(actor=compliance, version=lineage.version)
    poll(
        lambda: Dossier.objects.filter(pk=dossier.pk, status="running", progress__gte=5).exists(),
        120,
        "the build to start",
        0.02,
    )

    killable_workers.kill(worker)

    dossier.refresh_from_db()
    assert dossier.status == "running"
    assert dossier.progress < 100
    folder = dossier_dir() / str(project.pk)
    assert not (folder / dossier.file_name).exists()
    killable_workers()
    assert sweep_dead_jobs_task.delay().get(timeout=60)["dossier build"] == 1
    dossier.refresh_from_db()
    assert dossier.status == "failed"
    assert "died" in dossier.error
    assert not list(folder.glob(".building-*"))

    again = dossier_request(actor=compliance, version=lineage.version)
    assert again.pk != dossier.pk
    poll(
        lambda: Dossier.objects.get(pk=again.pk).status in ("succeeded", "failed"),
        240,
        "the retried build",
        0.5,
    )
    again.refresh_from_db()
    assert again.status == "succeeded", again.error
    assert Path(again.file_path).is_file()


DOSSIER_ITEMS = 400
