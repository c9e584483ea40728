import datetime
import io
import json
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import FieldError
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from annotation.models import DatasetUpload, Item
from annotation.services.datasets import dataset_import_run, dataset_upload_create
from core import at_rest
from core.fields import TOKEN_PREFIX, EncryptedValueError
from core.models import AuditEvent
from core.services.protection import stored_file_open_read
from evaluation.services import prompt_set_create
from tests.annotation.test_datasets import PROVENANCE
from tests.support.stored import stored_item, stored_prompt

pytestmark = pytest.mark.django_db

ROWS = b'{"text": "my card number is 4111 1111 1111 1111"}\n{"text": "hello"}\n'


@pytest.fixture(autouse=True)
def own_media_root(settings, tmp_path):
    # Rotation walks every stored file: keep other tests' files (other keys) out of view.
    settings.MEDIA_ROOT = str(tmp_path / "media")


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


def test_item_payloads_and_honeypot_answers_are_ciphertext_in_the_database(
    project, engineer, settings
):
    key = Fernet.generate_key().decode()
    settings.PORTAL_ENCRYPTION_KEYS = [key]
    content = ROWS + b'{"text": "secret honeypot 5555", "gold_answer": {"label": "pos"}}\n'
    upload = _upload(project, engineer, content=content)
    items = list(Item.objects.filter(dataset=upload.dataset).order_by("row_number"))

    for item in items:
        raw_payload, raw_gold = stored_item(item.pk)
        assert raw_payload.startswith(TOKEN_PREFIX)
        assert "4111" not in raw_payload
        assert "text" not in raw_payload
        assert json.loads(Fernet(key).decrypt(raw_payload.encode())) == item.payload
        assert (raw_gold is None) == (not item.is_gold)
    assert items[0].payload == {"text": "my card number is 4111 1111 1111 1111"}
    honeypot = items[2]
    assert honeypot.is_gold
    assert honeypot.gold_answer == {"label": "pos"}
    assert "pos" not in stored_item(honeypot.pk)[1]
    # Two rows with the same payload do not show it: Fernet tokens are randomised.
    twin = Item.objects.create(
        project=project, dataset=upload.dataset, row_number=9, payload=items[1].payload
    )
    assert stored_item(twin.pk)[0] != stored_item(items[1].pk)[0]


def test_prompts_and_references_are_ciphertext_in_the_database(project, engineer):
    prompt_set = prompt_set_create(
        actor=engineer,
        project=project,
        name="held out",
        rows=[{"prompt": "my iban is DE89 3704 0044 0532 0130 00", "reference": "noted"}],
    )
    prompt = prompt_set.prompts.get()

    raw_text, raw_reference = stored_prompt(prompt.pk)
    assert raw_text.startswith(TOKEN_PREFIX)
    assert "DE89" not in raw_text
    assert raw_reference.startswith(TOKEN_PREFIX)
    assert "noted" not in raw_reference
    assert prompt.text == "my iban is DE89 3704 0044 0532 0130 00"
    assert prompt.reference == "noted"


def test_the_database_cannot_be_asked_about_encrypted_payloads(project):
    with pytest.raises(FieldError):
        list(Item.objects.filter(payload__text="hello"))
    with pytest.raises(FieldError):
        list(Item.objects.filter(payload={"text": "hello"}))


def test_rotation_moves_item_payloads_to_the_new_key_and_encrypts_legacy_plaintext(
    project, engineer, settings
):
    old = Fernet.generate_key().decode()
    settings.PORTAL_ENCRYPTION_KEYS = [old]
    upload = _upload(project, engineer)
    first, second = Item.objects.filter(dataset=upload.dataset).order_by("row_number")
    with connection.cursor() as cursor:  # a row written before encryption was turned on
        cursor.execute(
            "UPDATE annotation_item SET payload = %s WHERE id = %s",
            ['{"text": "legacy"}', second.pk],
        )
    new = Fernet.generate_key().decode()

    settings.PORTAL_ENCRYPTION_KEYS = [new, old]
    err = io.StringIO()
    call_command("rotate_encryption_key", stdout=io.StringIO(), stderr=err)
    settings.PORTAL_ENCRYPTION_KEYS = [new]

    assert "annotation.Item" in err.getvalue()
    assert "2/2 rows" in err.getvalue()
    by_pk = {i.pk: i.payload for i in Item.objects.filter(dataset=upload.dataset)}
    assert by_pk == {
        first.pk: {"text": "my card number is 4111 1111 1111 1111"},
        second.pk: {"text": "legacy"},
    }
    assert stored_item(second.pk)[0].startswith(TOKEN_PREFIX)
    event = AuditEvent.objects.get(
        action="governance.encryption.rekey_rows", data__model="annotation.Item"
    )
    assert event.data == {
        "model": "annotation.Item",
        "fields": ["payload", "gold_answer"],
        "rows": 2,
    }
    settings.PORTAL_ENCRYPTION_KEYS = [old]
    with pytest.raises(EncryptedValueError, match="annotation_item.payload"):
        Item.objects.get(pk=first.pk)


def test_rotation_names_the_row_no_key_decrypts(project, engineer, settings):
    settings.PORTAL_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    upload = _upload(project, engineer)
    item = Item.objects.filter(dataset=upload.dataset).first()
    DatasetUpload.objects.filter(pk=upload.pk).update(stored_path="")  # purged
    settings.PORTAL_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]  # the old key is lost

    with pytest.raises(CommandError, match=f"annotation_item.payload row {item.pk}"):
        call_command("rotate_encryption_key", stdout=io.StringIO(), stderr=io.StringIO())


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
