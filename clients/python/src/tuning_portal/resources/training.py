"""Fine-tuning (files, jobs, their events and checkpoints), the model registry and the
base models. Job endpoints live under projects/<p>/fine_tuning/, shaped like OpenAI's."""

import builtins
import time
from collections.abc import Iterator, Sequence
from typing import Any

from tuning_portal.pagination import CursorPaginator
from tuning_portal.resources._base import FileInput, Resource, file_field
from tuning_portal.types import (
    BaseModel,
    Checkpoint,
    Job,
    JobEvent,
    JobStatusEvent,
    JobStreamEvent,
    ModelVersion,
    TrainingFile,
)

# The events endpoint sends at most this many log lines (and as many metrics) per call:
# a full answer means more are waiting, so the next call is made at once.
EVENTS_PAGE = 1000


class Files(Resource):
    """POST projects/<p>/fine_tuning/files/: a JSONL training or validation file."""

    def create(self, *, file: FileInput, project: int | None = None) -> TrainingFile:
        with file_field(file) as (name, content):
            body = self._client._post(
                self._path(project, "fine_tuning/files/"), files={"file": (name, content)}
            )
        return TrainingFile.from_dict(body)


class Jobs(Resource):
    """projects/<p>/fine_tuning/jobs/: list, create, retrieve, cancel, events, checkpoints;
    `stream` follows a job until it ends."""

    def list(self, *, project: int | None = None) -> builtins.list[Job]:
        """The project's newest jobs (at most 100)."""
        body = self._client._get(self._path(project, "fine_tuning/jobs/"))
        return [Job.from_dict(row) for row in body["data"]]

    def create(
        self,
        *,
        model: int,
        project: int | None = None,
        training_file: str | None = None,
        validation_file: str | None = None,
        snapshot: int | None = None,
        kind: str = "sft",
        method: str = "lora",
        name: str = "",
        preset: str | None = None,
        hyperparameters: dict[str, Any] | None = None,
        accept_leakage: bool = False,
        parent_version: int | None = None,
        reward_version: int | None = None,
    ) -> Job:
        """Queue a job on base model `model` (an id from `base_models.list()`), trained on
        a file from `files.create()` or on a snapshot. A refused setting raises
        BadRequestError naming it (`hyperparameters.learning_rate`, ...)."""
        body: dict[str, Any] = {
            "model": model,
            "kind": kind,
            "method": method,
            "name": name,
            "hyperparameters": hyperparameters or {},
            "accept_leakage": accept_leakage,
        }
        optional = {
            "training_file": training_file,
            "validation_file": validation_file,
            "snapshot": snapshot,
            "preset": preset,
            "parent_version": parent_version,
            "reward_version": reward_version,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return Job.from_dict(
            self._client._post(self._path(project, "fine_tuning/jobs/"), json=body)
        )

    def retrieve(self, job_id: int, *, project: int | None = None) -> Job:
        path = self._path(project, f"fine_tuning/jobs/{int(job_id)}/")
        return Job.from_dict(self._client._get(path))

    def cancel(self, job_id: int, *, project: int | None = None) -> Job:
        """Ask the job to stop (it keeps its last checkpoint). Safe to repeat."""
        path = self._path(project, f"fine_tuning/jobs/{int(job_id)}/cancel/")
        return Job.from_dict(self._client._post(path, idempotent=True))

    def events(
        self, job_id: int, *, after: Sequence[str] = (), project: int | None = None
    ) -> builtins.list[JobEvent]:
        """Log lines and metrics in order; `after` holds event ids already seen (the last
        log id and the last metric id), so only newer events come back."""
        path = self._path(project, f"fine_tuning/jobs/{int(job_id)}/events/")
        params = [("after", cursor) for cursor in after]
        body = self._client._get(path, params=params or None)
        return [JobEvent.from_dict(row) for row in body["data"]]

    def checkpoints(self, job_id: int, *, project: int | None = None) -> builtins.list[Checkpoint]:
        path = self._path(project, f"fine_tuning/jobs/{int(job_id)}/checkpoints/")
        return [Checkpoint.from_dict(row) for row in self._client._get(path)["data"]]

    def stream(
        self,
        job_id: int,
        *,
        project: int | None = None,
        poll_interval: float = 1.0,
        timeout: float | None = None,
    ) -> Iterator[JobStreamEvent]:
        """Follow a job live: a JobStatusEvent first and at every change of status, and
        each JobEvent (log line or metrics) once, in order. Ends after the job's final
        status, with every event it wrote before it; TimeoutError after `timeout` s.

        The portal's live socket authenticates browser sessions only, so this polls the
        job and its events (with a cursor per kind of event)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        cursors: dict[str, int] = {}
        status = None
        while True:
            # The job is read before its events: once it is seen final, the events read
            # next include everything it wrote.
            job = self.retrieve(job_id, project=project)
            full = True
            while full:
                after = [f"{kind}-{last}" for kind, last in cursors.items()]
                events = self.events(job_id, after=after, project=project)
                for event in events:
                    kind, _, number = event.id.rpartition("-")
                    if number.isdigit():
                        cursors[kind] = max(cursors.get(kind, 0), int(number))
                    yield event
                counts = [sum(e.id.startswith(k) for e in events) for k in ("log-", "metric-")]
                full = max(counts) >= EVENTS_PAGE
            if job.status != status:
                status = job.status
                yield JobStatusEvent(job=job)
            if job.done:
                return
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job.status} after {timeout} s")
            time.sleep(poll_interval)

    def wait(
        self,
        job_id: int,
        *,
        project: int | None = None,
        poll_interval: float = 1.0,
        timeout: float | None = None,
    ) -> Job:
        """The job once it ended (succeeded, failed or cancelled)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.retrieve(job_id, project=project)
            if job.done:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job.status} after {timeout} s")
            time.sleep(poll_interval)


class ModelVersions(Resource):
    """GET projects/<p>/models/ and projects/<p>/models/<id>/ (with its lineage)."""

    def list(self, *, project: int | None = None) -> builtins.list[ModelVersion]:
        return [
            ModelVersion.from_dict(r) for r in self._client._get(self._path(project, "models/"))
        ]

    def retrieve(self, version_id: int, *, project: int | None = None) -> ModelVersion:
        path = self._path(project, f"models/{int(version_id)}/")
        return ModelVersion.from_dict(self._client._get(path))


class BaseModels(Resource):
    """GET projects/<p>/base_models/ (the project's own and the global ones) and
    base_models/<id>/; registrations (base_models/registrations/) add one."""

    def list(self, *, project: int | None = None) -> builtins.list[BaseModel]:
        rows = self._client._get(self._path(project, "base_models/"))
        return [BaseModel.from_dict(r) for r in rows]

    def retrieve(self, base_model_id: int, *, project: int | None = None) -> BaseModel:
        path = self._path(project, f"base_models/{int(base_model_id)}/")
        return BaseModel.from_dict(self._client._get(path))

    def register(
        self,
        *,
        project: int | None = None,
        name: str = "",
        source: str = "local",
        path: str = "",
        license: str = "",
        packaged: bool = False,
    ) -> dict[str, Any]:
        """Queue a registration (a folder under a model root, a hub id, or the packaged
        default); follow it with `registration(id)` until `base_model` is set."""
        body = {
            "name": name,
            "source": source,
            "path": path,
            "license": license,
            "packaged": packaged,
        }
        url = self._path(project, "base_models/registrations/")
        result: dict[str, Any] = self._client._post(url, json=body)
        return result

    def registrations(
        self, *, project: int | None = None, page_size: int = 100, **filters: Any
    ) -> CursorPaginator[dict[str, Any]]:
        """Filters: status, name."""
        path = self._path(project, "base_models/registrations/")
        return self._pages(path, dict, filters, page_size)

    def registration(self, registration_id: int, *, project: int | None = None) -> dict[str, Any]:
        path = self._path(project, f"base_models/registrations/{int(registration_id)}/")
        result: dict[str, Any] = self._client._get(path)
        return result
