"""Data protection: stored dataset uploads encrypted at rest (Fernet, rotatable keys) and
deleted after the retention period. Items, snapshots and every hash are kept."""

import shutil
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from annotation.models import DatasetUpload
from core import at_rest, keys
from core.services.audit import audit_record, content_hash
from core.services.protection import encrypted_columns_rotate
from training.services.jobs import training_files_purge, training_files_stored


def _stored_uploads():
    for upload in DatasetUpload.objects.exclude(stored_path="").order_by("created_at"):
        path = Path(upload.stored_path)
        if path.is_file():
            yield upload, path


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
