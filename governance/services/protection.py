"""Data protection: stored dataset uploads encrypted at rest (Fernet, rotatable keys) and
deleted after the retention period. Items, snapshots and every hash are kept."""

import shutil
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from annotation.models import DatasetUpload
from governance import at_rest, keys
from governance.services import audit_record


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


def encryption_rotate() -> Counter:
    """Re-encrypt every stored upload under the first key of PORTAL_ENCRYPTION_KEYS (and
    encrypt any written before encryption was on). Run after putting a new key first;
    remove the old keys once this has finished. Safe to run again after an interruption:
    each file is replaced atomically."""
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
    return done


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
                    "file": upload.file_name,
                    "sha256": upload.options.get("sha256", ""),
                    "retention_days": days,
                },
            )
            # The upload folder holds only this file (annotation's layout: uploads/<id>/).
            shutil.rmtree(path.parent, ignore_errors=True)
        purged.append(upload)
    return purged
