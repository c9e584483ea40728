"""Dataset uploads: provenance is required, the file is stored and hashed, then a worker
imports it in one transaction (COPY on PostgreSQL), so a refused file leaves nothing."""

import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import IO, Any, cast

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.text import get_valid_filename

from annotation import import_workers, importing_arrow, tasks
from annotation.importing import (
    TABLE_FORMATS,
    ImportFormat,
    ImportRefused,
    ImportReport,
    PreferenceShape,
    detect_format,
    iter_rows,
    jsonl_lines,
)
from annotation.item_rows import ITEM_COLUMNS, ItemRows
from annotation.models import Dataset, DatasetUpload, Item, LabelSchema
from annotation.schemas import preference_shape
from core import keys, realtime
from core.db import rows_insert
from core.jobs import runs_under_job_lock
from core.models import Project, User
from core.services.audit import audit_record, content_hash
from core.services.jobs import job_claim, job_fail, job_finish
from core.services.protection import stored_file_open_read, stored_file_open_write

SPDX_PROPRIETARY = "proprietary"
PROGRESS_EVERY_ROWS = 20_000
# How an upload's rows are mapped before they are stored ("" keeps them as they are).
MAPPINGS = {
    "": "rows as they are in the file",
    "preference_pairs": "chosen/rejected pairs (hh-rlhf transcripts or TRL preference rows)",
}


@dataclass(frozen=True)
class Provenance:
    """What Datasheets for Datasets asks of every source; all of it is required.

    Synthetic content is recorded per field: `prompt_synthetic` (the prompts or inputs)
    and `response_synthetic` (the responses); `synthetic` says both, as the single flag of
    earlier versions did."""

    source_description: str
    license: str
    consent_basis: str
    collection_date: date
    synthetic: bool = False
    prompt_synthetic: bool = False
    response_synthetic: bool = False

    def synthetic_fields(self) -> dict[str, bool]:
        return {
            "prompt": self.synthetic or self.prompt_synthetic,
            "response": self.synthetic or self.response_synthetic,
        }

    def validated(self) -> "Provenance":
        errors = {}
        if not self.source_description.strip():
            errors["source_description"] = "say where the rows come from"
        if not self.license.strip():
            errors["license"] = 'give an SPDX licence id (e.g. CC-BY-4.0) or "proprietary"'
        elif " " in self.license.strip():
            errors["license"] = "an SPDX id has no spaces (e.g. CC-BY-SA-4.0)"
        if not self.consent_basis.strip():
            errors["consent_basis"] = "say on what basis the people in the data agreed"
        if self.collection_date > timezone.now().date():
            errors["collection_date"] = "is in the future"
        if errors:
            raise ValidationError(errors)
        return self


def max_upload_bytes() -> int:
    return settings.PORTAL_MAX_UPLOAD_BYTES


def _upload_dir(upload_id: uuid.UUID) -> Path:
    return Path(settings.MEDIA_ROOT) / "uploads" / str(upload_id)


def _copy_hashing(source: IO[bytes], target: Path, *, file_name: str) -> tuple[str, int]:
    """Copy to storage while hashing; refuse as soon as the size limit is passed."""
    limit = max_upload_bytes()
    digest = hashlib.sha256()
    size = 0
    target.parent.mkdir(parents=True, exist_ok=True)
    # Encrypted at rest (governance owns the keys); the hash is of the plaintext.
    with stored_file_open_write(target) as out:
        while chunk := source.read(1 << 20):
            size += len(chunk)
            if size > limit:
                out.close()
                shutil.rmtree(target.parent, ignore_errors=True)
                raise ValidationError(
                    {"file": f"{file_name}: file is larger than the limit of {limit} bytes"}
                )
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest(), size


def _refuse_duplicate(project: Project, sha256: str, file_name: str) -> None:
    earlier = Dataset.objects.filter(project=project, file_sha256=sha256).first()
    if earlier is not None:
        raise ValidationError(
            {
                "file": (
                    f"{file_name}: this exact file was already imported as dataset "
                    f"“{earlier.name}” on {earlier.created_at:%Y-%m-%d} (sha256 {sha256[:12]}…)"
                )
            }
        )


@transaction.atomic
def dataset_upload_create(
    *,
    project: Project,
    uploaded_by: User,
    file: IO[bytes],
    file_name: str,
    provenance: Provenance,
    name: str = "",
    required_fields: list[str] | None = None,
    metadata_fields: list[str] | None = None,
    mapping: str = "",
    run_now: bool = False,
) -> DatasetUpload:
    """Store an uploaded file and queue its import (or run it at once with `run_now`).

    Under a preference schema, rows are read as its fields say (conversational prompts
    checked, empty responses listed or refused as the schema says); `mapping` names a
    shape of public data to map rows from (MAPPINGS).

    Refuses at once: missing provenance, an unknown mapping, an unsupported extension, a
    file over the size limit, or a file this project imported before (same sha256)."""
    provenance.validated()
    if mapping not in MAPPINGS:
        raise ValidationError({"mapping": f"is one of {', '.join(repr(m) for m in MAPPINGS)}"})
    detect_format(file_name)  # raises ImportRefused for an unknown extension
    schema = LabelSchema.objects.filter(project=project).order_by("-version").first()
    shape = preference_shape(
        schema.task_type if schema else None,
        schema.config if schema else None,
        pairs=mapping == "preference_pairs",
    )
    upload = DatasetUpload(project=project, file_name=file_name, created_by=uploaded_by)
    stored = _upload_dir(upload.id) / get_valid_filename(Path(file_name).name)
    sha256, size = _copy_hashing(file, stored, file_name=file_name)
    try:
        _refuse_duplicate(project, sha256, file_name)
    except ValidationError:
        shutil.rmtree(stored.parent, ignore_errors=True)
        raise
    upload.stored_path = str(stored)
    upload.file_bytes = size
    upload.options = {
        "name": name.strip() or Path(file_name).stem,
        "sha256": sha256,
        "provenance": {
            **asdict(provenance),
            "collection_date": provenance.collection_date.isoformat(),
        },
        "required_fields": required_fields or [],
        "metadata_fields": metadata_fields or [],
        "mapping": mapping,
        # Fixed when the file is uploaded: a schema published while it waits changes nothing.
        "shape": asdict(shape) if shape is not None else None,
        "owns_file": True,
    }
    upload.save(force_insert=True)
    audit_record(
        actor=uploaded_by,
        action="dataset.upload",
        target=upload,
        project_id=project.pk,
        data={"file_name_sha256": content_hash(file_name), "sha256": sha256, "bytes": size},
    )
    if not run_now:
        transaction.on_commit(lambda: tasks.dataset_import_task.delay(str(upload.id)))
    return upload


def _progress_key(upload_id: object) -> str:
    return f"dataset-upload:{upload_id}:rows"


def upload_progress(upload: DatasetUpload) -> int:
    """Rows imported so far: live from the cache while running, from the row once done."""
    if upload.status == DatasetUpload.Status.RUNNING:
        return int(cache.get(_progress_key(upload.id)) or 0)
    return upload.rows_done


class _CountingReader:
    """Counts bytes as the parser reads, for a percentage on the progress bar."""

    def __init__(self, raw: IO[bytes]):
        self.raw = raw
        self.bytes_read = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.bytes_read += len(data)
        return data

    def readline(self, limit: int = -1) -> bytes:
        line = self.raw.readline(limit)
        self.bytes_read += len(line)
        return line

    def __iter__(self) -> Iterator[bytes]:
        for line in self.raw:
            self.bytes_read += len(line)
            yield line


def _insert_items(rows: Iterator[tuple], on_batch: Callable[[int], None]) -> int:
    """Write the items' COPY rows (ItemRows.copy_row), streamed, reporting progress."""
    count = 0

    def counted() -> Iterator[tuple]:
        nonlocal count
        for row in rows:
            yield row
            count += 1
            if count % PROGRESS_EVERY_ROWS == 0:
                on_batch(count)

    rows_insert(table=Item._meta.db_table, columns=ITEM_COLUMNS, rows=counted())
    return count


@runs_under_job_lock(DatasetUpload, "upload_id")
def dataset_import_run(
    *, upload_id: uuid.UUID | str, on_progress: Callable[[int, float], None] | None = None
) -> DatasetUpload:
    """Import a queued upload. Runs on a worker (or the CLI); a duplicate delivery finds
    the upload no longer queued and returns it unchanged."""
    claimed = job_claim(DatasetUpload, pk=upload_id)
    upload = DatasetUpload.objects.select_related("project", "created_by").get(pk=upload_id)
    if not claimed:
        return upload
    try:
        dataset = _import_all(upload, on_progress)
    except ImportRefused as refused:
        return _import_failed(upload, str(refused))
    except ValidationError as invalid:
        return _import_failed(upload, "; ".join(invalid.messages))
    upload.refresh_from_db()
    _finish_owned_file(upload)
    _push_upload(upload, dataset=dataset)
    return upload


def import_workers_for(fmt: ImportFormat, file_bytes: int) -> int:
    """How many worker processes parse a file: none for a small one, for CSV and Label
    Studio exports (records may span lines, or the file is one document), or on one core."""
    if fmt != ImportFormat.JSONL or file_bytes < settings.PORTAL_IMPORT_PARALLEL_MIN_BYTES:
        return 0
    workers = min(settings.PORTAL_IMPORT_WORKERS, os.cpu_count() or 1)
    return workers if workers > 1 else 0


def _item_rows(
    upload: DatasetUpload,
    dataset: Dataset,
    fmt: ImportFormat,
    reader: IO[bytes],
    report: ImportReport,
) -> Iterator[tuple]:
    options = upload.options
    shape = PreferenceShape(**options["shape"]) if options.get("shape") else None
    workers = import_workers_for(fmt, upload.file_bytes)
    if workers:
        job = import_workers.Job(
            filename=upload.file_name,
            required=tuple(options["required_fields"]),
            metadata_fields=tuple(options["metadata_fields"]),
            project_id=upload.project_id,
            dataset_id=dataset.pk,
            sha256=options["sha256"],
            key=keys.primary_encryption_key(),
            shape=shape,
        )
        lines = jsonl_lines(reader, upload.file_name, max_upload_bytes())
        return import_workers.copy_rows(lines, job, workers=workers, on_note=report.note)
    rows = ItemRows(upload.project_id, dataset.pk, options["sha256"])
    parsed = iter_rows(
        reader,
        filename=upload.file_name,
        fmt=fmt,
        required_fields=options["required_fields"],
        metadata_fields=options["metadata_fields"],
        max_bytes=max_upload_bytes(),
        shape=shape,
    )

    def made() -> Iterator[tuple]:
        for row in parsed:
            report.note_row(row)
            yield rows.copy_row(row)

    return made()


def _plain_copy(raw: IO[bytes], target: Path) -> Path:
    """The stored upload's plaintext on disk, for readers that seek (Parquet's footer)."""
    with open(target, "wb") as out:
        shutil.copyfileobj(raw, out, 1 << 20)
    return target


def _table_item_rows(
    upload: DatasetUpload,
    dataset: Dataset,
    fmt: ImportFormat,
    path: Path,
    report: ImportReport,
) -> Iterator[tuple]:
    """COPY rows of a Parquet or Arrow file or a zipped datasets folder at `path`."""
    options = upload.options
    shape = PreferenceShape(**options["shape"]) if options.get("shape") else None
    rows = ItemRows(upload.project_id, dataset.pk, options["sha256"])
    parsed = importing_arrow.table_rows(
        path,
        filename=upload.file_name,
        fmt=fmt,
        workdir=path.parent,
        required_fields=options["required_fields"],
        metadata_fields=options["metadata_fields"],
        max_bytes=max_upload_bytes(),
        shape=shape,
    )
    for row in parsed:
        report.note_row(row)
        yield rows.copy_row(row)


def _import_all(upload: DatasetUpload, on_progress: Callable[[int, float], None] | None) -> Dataset:
    options = upload.options
    provenance = options["provenance"]
    fmt = detect_format(upload.file_name)
    total = max(upload.file_bytes, 1)
    fields = Provenance(
        **{**provenance, "collection_date": date.fromisoformat(provenance["collection_date"])}
    ).synthetic_fields()
    shape = options.get("shape")
    report = ImportReport(responses_field=shape["responses_field"] if shape else None)
    with transaction.atomic():
        _refuse_duplicate(upload.project, options["sha256"], upload.file_name)
        dataset = Dataset.objects.create(
            project=upload.project,
            name=options["name"],
            file_name=upload.file_name,
            file_format=str(fmt),
            file_sha256=options["sha256"],
            file_bytes=upload.file_bytes,
            created_by=upload.created_by,
            source_description=provenance["source_description"],
            license=provenance["license"],
            consent_basis=provenance["consent_basis"],
            collection_date=provenance["collection_date"],
            synthetic=fields["prompt"] and fields["response"],
            prompt_synthetic=fields["prompt"],
            response_synthetic=fields["response"],
        )
        with stored_file_open_read(upload.stored_path) as raw:
            reader = _CountingReader(raw)

            def on_batch(count: int) -> None:
                percent = round(100 * reader.bytes_read / total, 1)
                cache.set(_progress_key(upload.id), count, timeout=3600)
                realtime.push_to_project(
                    project_id=upload.project_id,
                    event={
                        "type": "dataset.upload",
                        "upload": str(upload.id),
                        "rows": count,
                        "percent": percent,
                    },
                )
                if on_progress is not None:
                    on_progress(count, percent)

            # The parsers only read and readline it (the import passes a byte limit).
            stream = cast(IO[bytes], reader)
            # Tables are read from a plaintext copy in a private temporary folder (Parquet
            # seeks; a zip is extracted), removed however the import ends.
            with tempfile.TemporaryDirectory(prefix="portal-import-") as workdir:
                if fmt in TABLE_FORMATS:
                    local = _plain_copy(stream, Path(workdir) / "upload")
                    values = _table_item_rows(upload, dataset, ImportFormat(fmt), local, report)
                else:
                    values = _item_rows(upload, dataset, ImportFormat(fmt), stream, report)
                try:
                    count = _insert_items(values, on_batch)
                except ImportRefused as refused:
                    if refused.file is None:
                        refused.file = upload.file_name
                    raise
        if count == 0:
            raise ImportRefused(
                file=upload.file_name, line=None, field=None, reason="the file holds no rows"
            )
        Dataset.objects.filter(pk=dataset.pk).update(row_count=count)
        job_finish(
            DatasetUpload, pk=upload.pk, rows_done=count, dataset=dataset, report=report.as_dict()
        )
        audit_record(
            actor=upload.created_by,
            action="dataset.import",
            target=dataset,
            data={
                "rows": count,
                "sha256": options["sha256"],
                "license": provenance["license"],
                "upload": str(upload.id),
                "mapping": options.get("mapping", ""),
                "synthetic_fields": fields,
                "empty_response_rows": report.empty_response_rows,
                "conversations": report.conversations,
            },
        )
    dataset.row_count = count
    return dataset


def _import_failed(upload: DatasetUpload, message: str) -> DatasetUpload:
    with transaction.atomic():
        job_fail(DatasetUpload, pk=upload.pk, error=message, rows_done=0)
        audit_record(
            actor=upload.created_by,
            action="dataset.import.failed",
            target=upload,
            project_id=upload.project_id,
            # The message can quote the file's content: the row keeps it, the log its hash.
            data={"error_sha256": content_hash(message)},
        )
    upload.refresh_from_db()
    _finish_owned_file(upload)
    _push_upload(upload)
    return upload


def dataset_upload_lost(upload: DatasetUpload) -> None:
    """The housekeeping sweep failed an upload whose worker died (in its transaction): its
    rows were never committed (one transaction), so once the failure commits only the
    stored file and the live progress remain to remove."""

    def cleanup() -> None:
        _finish_owned_file(upload)
        _push_upload(upload)

    transaction.on_commit(cleanup)


def _finish_owned_file(upload: DatasetUpload) -> None:
    """A failed upload's file is deleted; an imported one is kept as the raw source."""
    if upload.status == DatasetUpload.Status.FAILED and upload.options.get("owns_file"):
        shutil.rmtree(Path(upload.stored_path).parent, ignore_errors=True)
    cache.delete(_progress_key(upload.id))


def _push_upload(upload: DatasetUpload, dataset: Dataset | None = None) -> None:
    event: dict[str, Any] = {
        "type": "dataset.upload",
        "upload": str(upload.id),
        "status": upload.status,
        "rows": upload.rows_done,
    }
    if upload.error:
        event["error"] = upload.error
    realtime.push_to_project(project_id=upload.project_id, event=event)


def dataset_uploads_stored() -> Iterator[tuple[DatasetUpload, Path]]:
    """Every upload whose file is still stored, oldest first, with its path (governance
    re-encrypts them when keys rotate)."""
    for upload in DatasetUpload.objects.exclude(stored_path="").order_by("created_at"):
        path = Path(upload.stored_path)
        if path.is_file():
            yield upload, path


def raw_uploads_purge(
    *, now: datetime | None = None, days: int | None = None
) -> list[DatasetUpload]:
    """Retention, run by governance: delete raw upload files imported more than `days`
    (PORTAL_RAW_UPLOAD_RETENTION_DAYS) ago. 0 keeps everything. Uploads still queued or
    running are never touched."""
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
