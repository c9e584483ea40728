import datetime
import io
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.utils import timezone

from annotation.models import DatasetUpload, Item
from annotation.services.datasets import dataset_import_run, dataset_upload_create
from governance import at_rest
from governance.models import AuditEvent
from governance.services.protection import stored_file_open_read
from tests.annotation.test_datasets import PROVENANCE

pytestmark = pytest.mark.django_db

ROWS = b'{"text": "my card number is 4111 1111 1111 1111"}\n{"text": "hello"}\n'


def _upload(project, engineer, content=ROWS, name="tickets.jsonl"):
    upload = dataset_upload_create(
        project=project,
        uploaded_by=engineer,
        file=io.BytesIO(content),
        file_name=name,
        provenance=PROVENANCE,
        run_now=True,
    )
    return dataset_import_run(upload_id=upload.pk)


def test_stored_upload_is_ciphertext_on_disk_and_imports(project, engineer):
    upload = _upload(project, engineer)

    raw = Path(upload.stored_path).read_bytes()
    assert raw.startswith(at_rest.MAGIC)
    assert b"4111" not in raw
    assert Item.objects.filter(project=project).count() == 2


def test_rotation_command_moves_uploads_to_a_new_key(project, engineer, settings):
    settings.PORTAL_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    upload = _upload(project, engineer)
    old = settings.PORTAL_ENCRYPTION_KEYS[0]
    new = Fernet.generate_key().decode()

    settings.PORTAL_ENCRYPTION_KEYS = [new, old]
    call_command("rotate_encryption_key")
    settings.PORTAL_ENCRYPTION_KEYS = [new]

    assert stored_file_open_read(upload.stored_path).read() == ROWS
    assert AuditEvent.objects.filter(action="governance.upload.rekey").count() == 1
    settings.PORTAL_ENCRYPTION_KEYS = [old]
    with pytest.raises(at_rest.DecryptionError):
        stored_file_open_read(upload.stored_path).read()


def test_retention_deletes_old_raw_uploads_and_keeps_items_and_hashes(project, engineer):
    old = _upload(project, engineer)
    recent = _upload(project, engineer, content=b'{"text": "new"}\n', name="new.jsonl")
    DatasetUpload.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - datetime.timedelta(days=40)
    )

    call_command("purge_raw_uploads", "--days", "30")

    assert not Path(old.stored_path).exists()
    assert Path(recent.stored_path).exists()
    old.refresh_from_db()
    assert old.dataset.file_sha256 == old.options["sha256"]
    assert Item.objects.filter(dataset=old.dataset).count() == 2
    event = AuditEvent.objects.get(action="governance.upload.purge")
    assert event.data["sha256"] == old.options["sha256"]


def test_retention_zero_keeps_everything(project, engineer, settings):
    settings.PORTAL_RAW_UPLOAD_RETENTION_DAYS = 0
    upload = _upload(project, engineer)
    DatasetUpload.objects.filter(pk=upload.pk).update(
        created_at=timezone.now() - datetime.timedelta(days=4000)
    )

    call_command("purge_raw_uploads")

    assert Path(upload.stored_path).exists()
