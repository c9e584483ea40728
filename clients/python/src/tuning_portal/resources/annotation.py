"""Datasets and their uploads, label schemas, guidelines, items, the annotation and
adjudication queues, agreement, quality checks, snapshots and exports."""

import builtins
import datetime
import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tuning_portal._exceptions import TuningPortalError
from tuning_portal.pagination import CursorPaginator, Paginator
from tuning_portal.resources._base import FileInput, Resource, file_field, form_value, wait_until
from tuning_portal.types import (
    AdjudicationTask,
    AnnotationSettings,
    Dataset,
    Disagreement,
    ExportFile,
    Guideline,
    Item,
    LabelSchema,
    QualityCheck,
    Resolution,
    Snapshot,
    Submission,
    Task,
    Upload,
)

CHUNK = 64 * 1024


class Datasets(Resource):
    """GET/POST projects/<p>/datasets/, GET projects/<p>/datasets/<id>/."""

    def list(self, *, project: int | None = None) -> builtins.list[Dataset]:
        return [Dataset.from_dict(r) for r in self._client._get(self._path(project, "datasets/"))]

    def retrieve(self, dataset_id: int, *, project: int | None = None) -> Dataset:
        path = self._path(project, f"datasets/{int(dataset_id)}/")
        return Dataset.from_dict(self._client._get(path))

    def upload(
        self,
        *,
        file: FileInput,
        source_description: str,
        license: str,
        consent_basis: str,
        collection_date: datetime.date | str,
        project: int | None = None,
        name: str = "",
        synthetic: bool = False,
        prompt_synthetic: bool = False,
        response_synthetic: bool = False,
        required_fields: builtins.list[str] | None = None,
        metadata_fields: builtins.list[str] | None = None,
        mapping: str = "",
        wait: bool = False,
        timeout: float = 600.0,
        poll_interval: float = 0.5,
    ) -> Upload:
        """Upload a dataset file (JSONL, CSV, ...) with its provenance. The import runs on
        the server's worker: the answer is the upload, queued; with `wait` it is returned
        once the import finished (`status` succeeded, with `dataset` set, or failed)."""
        fields: dict[str, Any] = {
            "source_description": source_description,
            "license": license,
            "consent_basis": consent_basis,
            "collection_date": str(collection_date),
            "name": name,
            "synthetic": synthetic,
            "prompt_synthetic": prompt_synthetic,
            "response_synthetic": response_synthetic,
            "mapping": mapping,
        }
        if required_fields:
            fields["required_fields"] = required_fields
        if metadata_fields:
            fields["metadata_fields"] = metadata_fields
        with file_field(file) as (file_name, content):
            body = self._client._post(
                self._path(project, "datasets/"),
                data={k: form_value(v) for k, v in fields.items()},
                files={"file": (file_name, content)},
            )
        upload = Upload.from_dict(body)
        if wait:
            upload = self._client.uploads.wait(
                upload.id, project=project, timeout=timeout, poll_interval=poll_interval
            )
        return upload


class Uploads(Resource):
    """GET projects/<p>/uploads/<uuid>/."""

    def retrieve(self, upload_id: str, *, project: int | None = None) -> Upload:
        return Upload.from_dict(self._client._get(self._path(project, f"uploads/{upload_id}/")))

    def wait(
        self,
        upload_id: str,
        *,
        project: int | None = None,
        timeout: float = 600.0,
        poll_interval: float = 0.5,
    ) -> Upload:
        """The upload once its import finished; TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            upload = self.retrieve(upload_id, project=project)
            if upload.done:
                return upload
            if time.monotonic() > deadline:
                raise TimeoutError(f"upload {upload_id} still {upload.status} after {timeout} s")
            time.sleep(poll_interval)


class Schemas(Resource):
    """GET/POST projects/<p>/schemas/ (publishing a schema makes a new version)."""

    def list(self, *, project: int | None = None) -> builtins.list[LabelSchema]:
        rows = self._client._get(self._path(project, "schemas/"))
        return [LabelSchema.from_dict(r) for r in rows]

    def create(
        self, *, task_type: str, config: dict[str, Any], project: int | None = None
    ) -> LabelSchema:
        body = {"task_type": task_type, "config": config}
        return LabelSchema.from_dict(self._client._post(self._path(project, "schemas/"), json=body))


class Guidelines(Resource):
    """GET/POST projects/<p>/guidelines/."""

    def list(self, *, project: int | None = None) -> builtins.list[Guideline]:
        rows = self._client._get(self._path(project, "guidelines/"))
        return [Guideline.from_dict(r) for r in rows]

    def create(
        self,
        *,
        markdown: str,
        examples: builtins.list[dict[str, Any]] | None = None,
        project: int | None = None,
    ) -> Guideline:
        body: dict[str, Any] = {"markdown": markdown}
        if examples is not None:
            body["examples"] = examples
        path = self._path(project, "guidelines/")
        return Guideline.from_dict(self._client._post(path, json=body))


class Items(Resource):
    """GET projects/<p>/items/ (paginated)."""

    def list(
        self,
        *,
        project: int | None = None,
        dataset: int | None = None,
        state: str | None = None,
        is_gold: bool | None = None,
        external_id: str | None = None,
        page_size: int = 100,
    ) -> Paginator[Item]:
        """Every matching item, fetched `page_size` at a time as the iterator advances."""
        path = self._path(project, "items/")
        params: dict[str, Any] = {
            "dataset": dataset,
            "state": state,
            "is_gold": None if is_gold is None else str(is_gold).lower(),
            "external_id": external_id,
        }
        return Paginator(
            lambda query: self._client._get(path, params=query),
            Item.from_dict,
            params=params,
            page_size=page_size,
        )


class Snapshots(Resource):
    """GET/POST projects/<p>/snapshots/, GET projects/<p>/snapshots/<id>/."""

    def list(self, *, project: int | None = None) -> builtins.list[Snapshot]:
        rows = self._client._get(self._path(project, "snapshots/"))
        return [Snapshot.from_dict(r) for r in rows]

    def retrieve(
        self, snapshot_id: int, *, project: int | None = None, compare: int | None = None
    ) -> Snapshot:
        """The snapshot; with `compare` (another snapshot's id) `raw["comparison"]` says
        what changed between them."""
        params = {"compare": compare} if compare is not None else None
        path = self._path(project, f"snapshots/{int(snapshot_id)}/")
        return Snapshot.from_dict(self._client._get(path, params=params))

    def create(
        self,
        *,
        name: str,
        project: int | None = None,
        seed: int = 0,
        split_ratios: dict[str, float] | None = None,
        filter: dict[str, Any] | None = None,
    ) -> Snapshot:
        """Freeze the project's gold-labelled items (those `filter` keeps) into a new
        version of snapshot `name`."""
        body: dict[str, Any] = {"name": name, "seed": seed}
        if split_ratios is not None:
            body["split_ratios"] = split_ratios
        if filter is not None:
            body["filter"] = filter
        return Snapshot.from_dict(self._client._post(self._path(project, "snapshots/"), json=body))


class Exports(Resource):
    """GET projects/<p>/snapshots/<id>/export/<format>/ (JSON Lines, engineers only).
    Formats: sft, prompt_completion, preference, classification, entity_pairs."""

    def _export_path(self, project: int | None, snapshot: int, format: str) -> str:
        return self._path(project, f"snapshots/{int(snapshot)}/export/{format}/")

    def download(
        self,
        snapshot: int,
        path: str | Path,
        *,
        format: str = "sft",
        split: str | None = None,
        project: int | None = None,
    ) -> ExportFile:
        """Stream the export to `path` (written beside and renamed over, so a failed
        download leaves no partial file)."""
        target = Path(path)
        partial = target.with_name(target.name + ".part")
        digest, size, rows = hashlib.sha256(), 0, 0
        params = {"split": split} if split else None
        with self._client._stream(
            self._export_path(project, snapshot, format), params=params
        ) as response:
            manifest = response.headers.get("X-Manifest-SHA256", "")
            try:
                with partial.open("wb") as out:
                    for chunk in response.iter_bytes(CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
                        rows += chunk.count(b"\n")
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
        partial.replace(target)
        return ExportFile(
            path=target, rows=rows, bytes=size, sha256=digest.hexdigest(), manifest_sha256=manifest
        )

    def iter_rows(
        self,
        snapshot: int,
        *,
        format: str = "sft",
        split: str | None = None,
        project: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """The export's rows, parsed, as they arrive."""
        params = {"split": split} if split else None
        with self._client._stream(
            self._export_path(project, snapshot, format), params=params
        ) as response:
            for line in response.iter_lines():
                if line.strip():
                    row = json.loads(line)
                    if not isinstance(row, dict):
                        raise TuningPortalError(f"export row is not an object: {line[:200]}")
                    yield row


class Annotation(Resource):
    """The labelling work of a project: its settings (projects/<p>/annotation/settings/),
    the annotator's queue (queue/next, submit, skip, undo), the adjudicator's queue
    (adjudication/next, resolve), agreement/ and disagreements/."""

    def settings(self, *, project: int | None = None) -> AnnotationSettings:
        path = self._path(project, "annotation/settings/")
        return AnnotationSettings.from_dict(self._client._get(path))

    def update_settings(self, *, project: int | None = None, **changes: Any) -> AnnotationSettings:
        """Change labels_per_item, agreement_rule, majority_min, order, random_seed,
        lease_seconds or gold_rate (engineers and admins)."""
        path = self._path(project, "annotation/settings/")
        return AnnotationSettings.from_dict(self._client._patch(path, json=changes))

    def next(self, *, project: int | None = None) -> Task | None:
        """Lease the next item to annotate; None when nothing is left for the caller."""
        response = self._client._request("POST", self._path(project, "queue/next/"))
        return Task.from_dict(response.json()) if response.status_code != 204 else None

    def submit(
        self,
        *,
        lease: int,
        value: dict[str, Any],
        project: int | None = None,
        submission_id: str | None = None,
        seconds_spent: float | None = None,
        next: bool = False,
    ) -> Submission:
        """Answer a leased item. `submission_id` makes the call safe to repeat (one is made
        here when not given, and the call is retried with it); with `next` the answer
        carries the next task."""
        body: dict[str, Any] = {
            "lease": lease,
            "value": value,
            "submission_id": submission_id or str(uuid.uuid4()),
            "next": next,
        }
        if seconds_spent is not None:
            body["seconds_spent"] = seconds_spent
        path = self._path(project, "queue/submit/")
        return Submission.from_dict(self._client._post(path, json=body, idempotent=True))

    def skip(self, *, lease: int, reason: str, project: int | None = None) -> dict[str, Any]:
        path = self._path(project, "queue/skip/")
        result: dict[str, Any] = self._client._post(path, json={"lease": lease, "reason": reason})
        return result

    def undo(self, *, project: int | None = None) -> Task:
        """Take back the caller's last answer: its item comes back leased to them."""
        return Task.from_dict(self._client._post(self._path(project, "queue/undo/")))

    def adjudication_next(self, *, project: int | None = None) -> AdjudicationTask | None:
        """Lease the next disputed item with its labels; None when none waits."""
        response = self._client._request("POST", self._path(project, "adjudication/next/"))
        return AdjudicationTask.from_dict(response.json()) if response.status_code != 204 else None

    def resolve(
        self, *, item: int, value: dict[str, Any], reason: str, project: int | None = None
    ) -> Resolution:
        """Decide a disputed item's final label, saying why."""
        body = {"item": item, "value": value, "reason": reason}
        path = self._path(project, "adjudication/resolve/")
        return Resolution.from_dict(self._client._post(path, json=body))

    def agreement(self, *, project: int | None = None) -> dict[str, Any]:
        """Inter-annotator agreement per question of the schema (alpha, kappas, confusion)."""
        result: dict[str, Any] = self._client._get(self._path(project, "agreement/"))
        return result

    def disagreements(
        self,
        *,
        project: int | None = None,
        state: str | None = None,
        method: str | None = None,
        dataset: int | None = None,
        page_size: int = 100,
    ) -> CursorPaginator[Disagreement]:
        """Items whose annotators disagreed, with their labels and how each was decided."""
        params = {"state": state, "method": method, "dataset": dataset}
        path = self._path(project, "disagreements/")
        return self._pages(path, Disagreement.from_dict, params, page_size)


class Checks(Resource):
    """projects/<p>/checks/ (list, start) and checks/<id>/: data quality checks, the
    leakage check every snapshot starts among them."""

    def list(
        self, *, project: int | None = None, page_size: int = 100
    ) -> CursorPaginator[QualityCheck]:
        return self._pages(self._path(project, "checks/"), QualityCheck.from_dict, None, page_size)

    def create(
        self,
        *,
        kind: str,
        project: int | None = None,
        dataset: int | None = None,
        snapshot: int | None = None,
        params: dict[str, Any] | None = None,
    ) -> QualityCheck:
        body: dict[str, Any] = {"kind": kind}
        optional = {"dataset": dataset, "snapshot": snapshot, "params": params}
        body.update({k: v for k, v in optional.items() if v is not None})
        path = self._path(project, "checks/")
        return QualityCheck.from_dict(self._client._post(path, json=body))

    def retrieve(self, check_id: int, *, project: int | None = None) -> QualityCheck:
        path = self._path(project, f"checks/{int(check_id)}/")
        return QualityCheck.from_dict(self._client._get(path))

    def wait(
        self,
        check_id: int,
        *,
        project: int | None = None,
        timeout: float | None = 600.0,
        poll_interval: float = 0.5,
    ) -> QualityCheck:
        return wait_until(
            lambda: self.retrieve(check_id, project=project),
            lambda check: check.finished,
            what=f"check {check_id}",
            timeout=timeout,
            poll_interval=poll_interval,
        )
