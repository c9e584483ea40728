"""Data protection: stored dataset uploads encrypted at rest (Fernet, rotatable keys) and
deleted after the retention period. Items, snapshots and every hash are kept."""

import shutil
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

from django.apps import apps
from django.conf import settings
from django.db import connection, models, transaction
from django.utils import timezone

from annotation.models import DatasetUpload
from governance import at_rest, keys
from governance.fields import EncryptedJSONField, rewrite_rows, rotate_token
from governance.services import audit_record, content_hash
from training.services.jobs import training_files_purge, training_files_stored

ROTATE_BATCH = 2000


def stored_file_open_write(path: str | Path) -> BinaryIO:
    """Where an upload is written: plaintext in, ciphertext on disk under the newest key."""
    return at_rest.open_write(path, keys.encryption_keys())


def stored_file_open_read(path: str | Path) -> BinaryIO:
    """The plaintext of a stored upload, whichever configured key encrypted it."""
    return at_rest.open_read(path, keys.encryption_keys())


def _stored_uploads():
    for upload in DatasetUpload.objects.exclude(stored_path="").order_by("created_at"):
        path = Path(upload.stored_path)
        if path.is_file():
            yield upload, path


def encrypted_columns() -> list[tuple[type[models.Model], list[EncryptedJSONField]]]:
    """Every model with values encrypted at rest, and those fields."""
    found = []
    for model in apps.get_models():
        fields = [f for f in model._meta.concrete_fields if isinstance(f, EncryptedJSONField)]
        if fields and not model._meta.proxy:
            found.append((model, fields))
    return found


def encrypted_columns_rotate(*, on_progress: Callable[[str, int], None] | None = None) -> Counter:
    """Put every value encrypted at rest (item payloads, honeypot answers, prompts and
    references) under the first key; plaintext JSON written before encryption was turned
    on is encrypted. Batches commit one by one: an interrupted run is finished by running
    it again."""
    done: Counter = Counter()
    for model, fields in encrypted_columns():
        label, table = model._meta.label, model._meta.db_table
        done[label] = rewrite_rows(
            connection,
            table=table,
            pk=model._meta.pk.column,
            columns=[f.column for f in fields],
            change=lambda token, column, pk, table=table: rotate_token(
                token, where=f"{table}.{column} row {pk}"
            ),
            batch=ROTATE_BATCH,
            on_batch=(
                None if on_progress is None else lambda rows, label=label: on_progress(label, rows)
            ),
        )
        audit_record(
            actor=None,
            action="governance.encryption.rekey_rows",
            data={"model": label, "fields": [f.name for f in fields], "rows": done[label]},
        )
    return done


def encryption_rotate(*, on_progress: Callable[[str, int], None] | None = None) -> Counter:
    """Re-encrypt every stored upload and every value encrypted at rest under the first
    key of PORTAL_ENCRYPTION_KEYS (and encrypt any written before encryption was on). Run
    after putting a new key first; remove the old keys once this has finished. Safe to run
    again after an interruption: each file is replaced atomically, rows in committed
    batches."""
    fernets = keys.encryption_keys()
    done: Counter = Counter()
    for upload, path in _stored_uploads():
        outcome = at_rest.reencrypt(path, fernets)
        done[outcome] += 1
        audit_record(
            actor=None,
            action="governance.upload.rekey",
            target=upload,
            project_id=upload.project_id,
            data={"outcome": outcome},
        )
    for path in training_files_stored():
        outcome = at_rest.reencrypt(path, fernets)
        done[outcome] += 1
        audit_record(
            actor=None,
            action="training.file.rekey",
            project_id=int(path.parent.name) if path.parent.name.isdigit() else None,
            data={"file": f"file-{path.name[:16]}", "outcome": outcome},
        )
    rows = encrypted_columns_rotate(on_progress=on_progress)
    done["rows"] = sum(rows.values())
    return done


def uploads_purge(*, now=None, days: int | None = None) -> dict[str, list]:
    """Every retention duty: raw dataset uploads and training-file uploads past
    PORTAL_RAW_UPLOAD_RETENTION_DAYS (or `days`)."""
    return {
        "datasets": raw_uploads_purge(now=now, days=days),
        "training_files": training_files_purge(now=now, days=days),
    }


def raw_uploads_purge(*, now=None, days: int | None = None) -> list[DatasetUpload]:
    """Delete raw upload files imported more than `days` (PORTAL_RAW_UPLOAD_RETENTION_DAYS)
    ago. 0 keeps everything. Uploads still queued or running are never touched."""
    days = settings.PORTAL_RAW_UPLOAD_RETENTION_DAYS if days is None else days
    if days <= 0:
        return []
    cutoff = (now or timezone.now()) - timedelta(days=days)
    purged = []
    candidates = DatasetUpload.objects.filter(
        created_at__lt=cutoff,
        status__in=[DatasetUpload.Status.SUCCEEDED, DatasetUpload.Status.FAILED],
    ).exclude(stored_path="")
    for upload in candidates.order_by("created_at"):
        path = Path(upload.stored_path)
        if not path.exists() or not upload.options.get("owns_file"):
            continue  # gone already, or a file the portal did not copy in and must not delete
        with transaction.atomic():
            audit_record(
                actor=None,
                action="governance.upload.purge",
                target=upload,
                project_id=upload.project_id,
                data={
                    "file_name_sha256": content_hash(upload.file_name),
                    "sha256": upload.options.get("sha256", ""),
                    "retention_days": days,
                },
            )
            # The upload folder holds only this file (annotation's layout: uploads/<id>/).
            shutil.rmtree(path.parent, ignore_errors=True)
        purged.append(upload)
    return purged
