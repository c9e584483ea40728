import hashlib
import io
import os
import stat
import time
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ValidationError
from django.core.management import call_command

from core import at_rest
from core.models import AuditEvent, JobStatus
from governance.services.protection import encryption_rotate
from tests.training.conftest import QUICK
from training import services
from training.models import TrainingJob
from training.services.jobs import (
    job_data_dir,
    stored_file_open_read,
    training_files_purge,
    uploads_root,
)

pytestmark = pytest.mark.django_db

SECRET = b"Jane Roe, 12 Acacia Avenue"


@pytest.fixture(autouse=True)
def own_media_root(settings, tmp_path):
    # Stored files outlive each test's rolled-back rows: keep other tests' files out of view.
    settings.MEDIA_ROOT = str(tmp_path / "media")


def _store(project, content=None, name="train.jsonl", **kwargs):
    content = content or b'{"messages": [{"role": "user", "content": "' + SECRET + b'"}]}\n'
    return services.training_file_store(
        project=project, upload=io.BytesIO(content), name=name, **kwargs
    )


def test_an_uploaded_training_file_is_encrypted_at_rest_and_hashed_as_plaintext(project, engineer):
    content = b'{"messages": [{"role": "user", "content": "' + SECRET + b'"}]}\n'

    stored = _store(project, content, actor=engineer)

    raw = Path(stored["path"]).read_bytes()
    assert raw.startswith(at_rest.MAGIC)
    assert SECRET not in raw
    assert stored["sha256"] == hashlib.sha256(content).hexdigest()
    assert stored["rows"] == 1
    assert stored_file_open_read(stored["path"]).read() == content
    event = AuditEvent.objects.get(action="training.file.upload")
    assert event.data["sha256"] == stored["sha256"]
    assert event.actor == engineer


def test_a_job_from_an_upload_records_the_plaintext_hash(
    engineer, project, tiny_base_model, data_files
):
    train = services.training_file_store(
        project=project, upload=io.BytesIO(data_files["sft_train"].read_bytes()), name="t.jsonl"
    )

    job = services.training_job_create(
        actor=engineer,
        project=project,
        name="from upload",
        kind="sft",
        method="lora",
        base_model=tiny_base_model,
        values=dict(QUICK),
        train_file=train["path"],
    )

    plain = hashlib.sha256(data_files["sft_train"].read_bytes()).hexdigest()
    assert job.data["train"]["sha256"] == plain


def test_a_training_file_over_the_limit_is_refused_naming_the_field(project, settings):
    settings.PORTAL_TRAINING_FILE_MAX_BYTES = 100

    with pytest.raises(ValidationError) as refused:
        _store(project, b"x" * 101, field="train_file")

    assert "larger than the limit of 100 bytes" in refused.value.message_dict["train_file"][0]
    assert not list((uploads_root() / str(project.pk)).iterdir())
    assert not AuditEvent.objects.filter(action="training.file.upload").exists()


def test_the_file_api_answers_400_naming_the_field_over_the_limit(
    client, engineer, project, settings
):
    settings.PORTAL_TRAINING_FILE_MAX_BYTES = 100
    client.force_login(engineer)
    upload = io.BytesIO(b"x" * 101)
    upload.name = "big.jsonl"

    response = client.post(
        f"/api/v1/projects/{project.pk}/fine_tuning/files/", {"file": upload}, format="multipart"
    )

    assert response.status_code == 400
    assert "limit of 100 bytes" in str(response.json())
    assert "file" in str(response.json())


def test_the_job_form_refuses_a_file_over_the_limit_on_its_field(
    client, engineer, project, tiny_base_model, settings
):
    settings.PORTAL_TRAINING_FILE_MAX_BYTES = 100
    client.force_login(engineer)
    upload = io.BytesIO(b"x" * 101)
    upload.name = "big.jsonl"

    response = client.post(
        f"/projects/{project.pk}/training/new/",
        {
            "name": "big",
            "kind": "sft",
            "method": "lora",
            "base_model": str(tiny_base_model.pk),
            "train_file": upload,
        },
    )

    assert response.status_code == 200
    assert "limit of 100 bytes" in response.context["form"].errors["train_file"][0]
    assert not TrainingJob.objects.exists()


def test_retention_purges_old_training_files_but_not_those_an_active_job_reads(
    engineer, project, tiny_base_model, data_files
):
    old = _store(project, name="old.jsonl")
    recent = _store(project, b'{"messages": []}\n', name="recent.jsonl")
    in_use = services.training_file_store(
        project=project,
        upload=io.BytesIO(data_files["sft_train"].read_bytes()),
        name="in-use.jsonl",
    )
    services.training_job_create(
        actor=engineer,
        project=project,
        name="queued",
        kind="sft",
        method="lora",
        base_model=tiny_base_model,
        values=dict(QUICK),
        train_file=in_use["path"],
    )
    long_ago = time.time() - 40 * 86400
    for path in (old["path"], in_use["path"]):
        os.utime(path, (long_ago, long_ago))

    call_command("purge_raw_uploads", "--days", "30")

    assert not Path(old["path"]).exists()
    assert Path(recent["path"]).exists()
    assert Path(in_use["path"]).exists()
    event = AuditEvent.objects.get(action="training.file.purge")
    assert event.data["file"] == old["id"]
    assert training_files_purge(days=0) == []


def test_rotation_moves_training_files_to_the_new_key(project, settings):
    old = Fernet.generate_key().decode()
    settings.PORTAL_ENCRYPTION_KEYS = [old]
    stored = _store(project)
    new = Fernet.generate_key().decode()

    settings.PORTAL_ENCRYPTION_KEYS = [new, old]
    encryption_rotate()
    settings.PORTAL_ENCRYPTION_KEYS = [new]

    assert SECRET in stored_file_open_read(stored["path"]).read()
    assert AuditEvent.objects.filter(action="training.file.rekey").count() == 1


def test_the_stale_job_sweep_deletes_the_decrypted_data_a_dead_worker_left(
    engineer, project, tiny_base_model, data_files, django_capture_on_commit_callbacks
):
    job = services.training_job_create(
        actor=engineer,
        project=project,
        name="lost",
        kind="sft",
        method="lora",
        base_model=tiny_base_model,
        values=dict(QUICK),
        train_file=str(data_files["sft_train"]),
    )
    folder = job_data_dir(job)
    folder.mkdir(parents=True)
    (folder / "train.jsonl").write_bytes(SECRET)
    TrainingJob.objects.filter(pk=job.pk).update(
        status=JobStatus.RUNNING, heartbeat_at="2020-01-01T00:00:00Z"
    )

    with django_capture_on_commit_callbacks(execute=True):
        assert services.training_jobs_sweep_stale(project=project) == 1

    assert not folder.exists()


def private_modes(folder: Path) -> tuple[int, set[int]]:
    return stat.S_IMODE(folder.stat().st_mode), {
        stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()
    }
