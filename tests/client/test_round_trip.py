"""The Python client against the live server (uvicorn) and the session's Celery worker:
data in, items out page by page, a snapshot exported, a tiny job followed to success and
its dossier downloaded."""

import hashlib
import zipfile

import pytest

from annotation.models import GoldLabel, Item
from governance.models import DossierDownload
from tests.client.conftest import PROVENANCE, texts_file
from tests.training.conftest import QUICK
from tuning_portal.types import JobEvent, JobStatusEvent

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.celery]


def test_upload_list_items_by_page_snapshot_and_export(celery_worker, portal, project, tmp_path):
    portal.schemas.create(
        task_type="classification", config={"choices": ["pos", "neg"], "text_field": "text"}
    )

    upload = portal.datasets.upload(
        file=texts_file(tmp_path, 5), name="tickets", wait=True, timeout=60, **PROVENANCE
    )

    assert upload.status == "succeeded", upload.error
    assert [d.id for d in portal.datasets.list()] == [upload.dataset]
    pages = list(portal.items.list(dataset=upload.dataset, page_size=2).pages())
    assert [len(p.data) for p in pages] == [2, 2, 1]
    items = list(portal.items.list(dataset=upload.dataset, page_size=2))
    assert sorted(i.payload["text"] for i in items) == [f"ticket {i}" for i in range(5)]
    assert len({i.id for i in items}) == 5

    for number, item in enumerate(Item.objects.filter(dataset_id=upload.dataset)):
        GoldLabel.objects.create(
            project=project, item=item, value={"labels": ["pos" if number % 2 else "neg"]}
        )
    Item.objects.filter(dataset_id=upload.dataset).update(state=Item.State.RESOLVED)
    snapshot = portal.snapshots.create(name="gold", seed=1)
    written = portal.exports.download(snapshot.id, tmp_path / "gold.jsonl", format="classification")
    rows = list(portal.exports.iter_rows(snapshot.id, format="classification"))

    assert snapshot.member_count == 5
    assert portal.snapshots.retrieve(snapshot.id).manifest_sha256 == snapshot.manifest_sha256
    assert written.rows == len(rows) == 5
    assert written.manifest_sha256 == snapshot.manifest_sha256
    assert written.sha256 == hashlib.sha256(written.path.read_bytes()).hexdigest()
    assert not (tmp_path / "gold.jsonl.part").exists()


def test_a_tiny_job_streams_to_success_and_its_dossier_downloads(
    celery_worker, portal, client_engineer, tiny_base_model, sft_file, tmp_path
):
    training_file = portal.files.create(file=sft_file)
    job = portal.jobs.create(
        model=tiny_base_model.pk,
        training_file=training_file.id,
        name="client-sft",
        hyperparameters={**QUICK, "max_steps": 4, "save_steps": 4},
    )

    events = list(portal.jobs.stream(job.id, poll_interval=0.2, timeout=120))

    statuses = [e.status for e in events if isinstance(e, JobStatusEvent)]
    assert statuses[0] in ("queued", "preflight", "running")
    assert statuses[-1] == "succeeded", events[-1].job.error
    assert len(statuses) == len(set(statuses))
    logged = [e for e in events if isinstance(e, JobEvent)]
    assert len({e.id for e in logged}) == len(logged)  # each event once, across the polls
    assert [e.data["step"] for e in logged if e.type == "metrics" and "loss" in e.data] == [
        1,
        2,
        3,
        4,
    ]
    assert any(e.type == "message" for e in logged)
    finished = portal.jobs.retrieve(job.id)
    version = portal.model_versions.retrieve(finished.fine_tuned_model)
    assert version.job == job.id
    assert [v.id for v in portal.model_versions.list()] == [version.id]
    assert [c.step_number for c in portal.jobs.checkpoints(job.id)] == [4]

    saved = portal.dossiers.download(version.id, tmp_path / "dossier.zip", timeout=120)

    assert saved.sha256 == saved.dossier.bundle_sha256
    assert saved.bytes == saved.path.stat().st_size
    with zipfile.ZipFile(saved.path) as bundle:
        assert any(name.endswith("lineage.json") for name in bundle.namelist())
    assert DossierDownload.objects.filter(user=client_engineer).count() == 1
    assert [d.id for d in portal.dossiers.list(version.id)] == [saved.dossier.id]
