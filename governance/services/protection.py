"""Data protection: stored dataset uploads encrypted at rest (Fernet, rotatable keys) and
deleted after the retention period. Items, snapshots and every hash are kept."""

from collections import Counter
from collections.abc import Callable
from datetime import datetime

from annotation.services.datasets import dataset_uploads_stored, raw_uploads_purge
from core import at_rest, keys
from core.services.audit import audit_record
from core.services.protection import encrypted_columns_rotate
from training.services.jobs import training_files_purge, training_files_stored


def encryption_rotate(*, on_progress: Callable[[str, int], None] | None = None) -> Counter:
    """Re-encrypt every stored upload and every value encrypted at rest under the first
    key of PORTAL_ENCRYPTION_KEYS (and encrypt any written before encryption was on). Run
    after putting a new key first; remove the old keys once this has finished. Safe to run
    again after an interruption: each file is replaced atomically, rows in committed
    batches."""
    fernets = keys.encryption_keys()
    done: Counter = Counter()
    for upload, path in dataset_uploads_stored():
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


def uploads_purge(*, now: datetime | None = None, days: int | None = None) -> dict[str, list]:
    """Every retention duty: raw dataset uploads and training-file uploads past
    PORTAL_RAW_UPLOAD_RETENTION_DAYS (or `days`)."""
    return {
        "datasets": raw_uploads_purge(now=now, days=days),
        "training_files": training_files_purge(now=now, days=days),
    }
