"""Mirroring a training job to MLflow, with links both ways, while the portal stays the
source of truth.

The worker mirrors, not the runner: the worker already reads every event the runner
writes, and it knows what the runner must not (the job's page, its project, the hashes
and lineage of its data, base model and parent version). What MLflow receives is exactly
what the portal stored: the same steps, the same values.

MLflow must never fail or slow a job. The worker only puts what it saw on a queue; a
thread of its own talks to MLflow. The first error stops the mirror (MLflow's client
retries on its own before raising); the job gets one warning in its log, after it has
ended. Nothing the runner printed is mirrored: an error message or a log line can quote
training rows, which stay in the portal.
"""

import hashlib
import json
import logging
import math
import queue
import re
import threading
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.urls import reverse

from core.models import JobStatus
from training.models import ModelVersion, TrainingJob
from training.presets import relevant_settings

logger = logging.getLogger(__name__)

# MLflow's own limits: per log_batch call, and on a parameter's or tag's value.
METRICS_PER_BATCH = 1000
PARAMS_PER_BATCH = 100
PARAM_VALUE_LIMIT = 6000
TAG_VALUE_LIMIT = 8000
MLFLOW_STATUS: dict[str, str] = {
    JobStatus.SUCCEEDED: "FINISHED",
    JobStatus.FAILED: "FAILED",
    JobStatus.CANCELLED: "KILLED",
}
_STOP = ("stop", None)
NOT_IN_MLFLOW_NAMES = re.compile(r"[^A-Za-z0-9_\-. /]")


def portal_job_url(job: TrainingJob) -> str:
    """The job's page: absolute with PORTAL_BASE_URL set, else its path."""
    path = reverse("training:job", args=[job.project_id, job.pk])
    return f"{settings.PORTAL_BASE_URL}{path}"


def mlflow_ui_base() -> str:
    """Where people open MLflow runs: MLFLOW_UI_URL, else the tracking server (less any
    credentials in its URI); empty for a file store without a UI setting."""
    if settings.MLFLOW_UI_URL:
        return str(settings.MLFLOW_UI_URL)
    parts = urlsplit(settings.MLFLOW_TRACKING_URI)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return ""
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def mlflow_run_url(*, experiment_id: str, run_id: str) -> str:
    base = mlflow_ui_base()
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}" if base else ""


def job_tracking_record(job: TrainingJob, service: str, values: dict[str, Any]) -> None:
    """Store where `service` keeps the job (a run id, a URL). Caller: the job's worker, the
    only writer of `tracking` while the job runs."""
    job.tracking = {**job.tracking, service: {**job.tracking.get(service, {}), **values}}
    TrainingJob.objects.filter(pk=job.pk).update(tracking=job.tracking)


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def _numbers(values: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of `values`, under names MLflow accepts (one name it refuses
    would stop the whole mirror)."""
    return {
        NOT_IN_MLFLOW_NAMES.sub("_", name)[:250]: float(value)
        for name, value in values.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    }


def _run_id_of(job: TrainingJob | None) -> str:
    if job is None:
        return ""
    return str(job.tracking.get("mlflow", {}).get("run_id", ""))


def _lineage_tags(job: TrainingJob) -> dict[str, str]:
    """What the job came from, as MLflow tags: data, base model, parent version, resume."""
    tags = {
        "portal.base_model": job.base_model.name,
        "portal.base_model_sha256": job.base_model.weights_sha256,
        "portal.manifest_sha256": job.manifest_sha256,
    }
    if job.snapshot_id is not None:
        tags["portal.snapshot_id"] = str(job.snapshot_id)
    for split in ("train", "validation"):
        stored = job.data.get(split)
        if isinstance(stored, dict) and stored.get("sha256"):
            tags[f"portal.data.{split}_sha256"] = stored["sha256"]
    parent = job.parent_version
    if parent is not None:
        tags["portal.parent_version_id"] = str(parent.pk)
        tags["portal.parent_version"] = parent.name
        tags["portal.parent_version_files_sha256"] = _digest(parent.checkpoint_sha256)
        if parent_run := _run_id_of(parent.job):
            tags["portal.parent_run_id"] = parent_run
    if job.reward_version is not None:
        tags["portal.reward_version_id"] = str(job.reward_version.pk)
        tags["portal.reward_version"] = job.reward_version.name
    if job.resumed_from is not None:
        tags["portal.resumed_from_job_id"] = str(job.resumed_from.pk)
        if resumed_run := _run_id_of(job.resumed_from):
            tags["portal.resumed_from_run_id"] = resumed_run
    return tags


def mlflow_run_start_fields(job: TrainingJob) -> dict[str, Any]:
    """The run's name, parameters and tags, read from the job (its data prepared)."""
    url = portal_job_url(job)
    params = {
        "kind": job.kind,
        "method": job.method,
        "base_model": job.base_model.name,
        "seed": job.seed,
        **relevant_settings(job.config, kind=job.kind, method=job.method),
    }
    tags = {
        "portal.job_id": str(job.pk),
        "portal.job_url": url,
        "portal.project_id": str(job.project_id),
        "portal.project": job.project.name,
        "portal.kind": job.kind,
        "portal.method": job.method,
        "mlflow.user": job.created_by.get_username(),
        "mlflow.note.content": (
            f"Mirrored from the Tuning Portal, which holds the job's full record: [job "
            f"#{job.pk}]({url})."
        ),
        **_lineage_tags(job),
    }
    if commit := job.environment.get("git_commit"):
        tags["mlflow.source.git.commit"] = commit
    return {
        "experiment": f"{settings.MLFLOW_EXPERIMENT_PREFIX}{job.project_id}",
        "run_name": f"{job.name} #{job.pk}",
        "params": {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()},
        "tags": {name: value for name, value in tags.items() if value},
    }


def mlflow_run_end_fields(job: TrainingJob) -> dict[str, Any]:
    """The run's closing metrics, tags and artifacts, read from the settled job."""
    result = job.result or {}
    step = int(result.get("global_step") or 0)
    # The training loop's own figures (train_loss, train_runtime...) came as metric events:
    # here only what the runner measured after it.
    metrics = {f"quality.{k}": v for k, v in _numbers(result.get("metrics") or {}).items()}
    sanity = result.get("sanity") or {}
    if isinstance(sanity.get("lift"), int | float):
        metrics["sanity.lift"] = float(sanity["lift"])
    tags = {"portal.status": str(job.status)}
    artifacts: dict[str, Any] = {"portal/checkpoint_sha256.json": job.checkpoint_sha256}
    version = ModelVersion.objects.filter(job=job).first()
    if version is not None:
        tags.update(
            {
                "portal.model_version_id": str(version.pk),
                "portal.model_version": version.name,
                "portal.model_version_url": settings.PORTAL_BASE_URL
                + reverse("training:version", args=[job.project_id, version.pk]),
                # One hash for the version's files; the artifact lists each.
                "portal.model_files_sha256": _digest(version.checkpoint_sha256),
            }
        )
        artifacts["portal/model_files_sha256.json"] = version.checkpoint_sha256
    return {
        "status": MLFLOW_STATUS.get(job.status, "FAILED"),
        "step": step,
        "metrics": metrics,
        "tags": tags,
        "artifacts": artifacts,
    }


class MlflowMirror:
    """Sends one job's run to MLflow from a thread of its own. The caller (the worker's
    main loop) only queues; `close` waits a bounded time and says what went wrong."""

    def __init__(self, *, tracking_uri: str, start: dict[str, Any]):
        self.tracking_uri = tracking_uri
        self.start = start
        self.experiment_id = ""
        self.run_id = ""
        self.error = ""
        self._queue: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="mlflow-mirror", daemon=True)
        self._thread.start()

    def metric(self, *, step: int, values: dict[str, Any], at: float | None = None) -> None:
        numbers = _numbers(values)
        if numbers:
            self._put("metrics", (step, numbers, int((at or time.time()) * 1000)))

    def checkpoint(self, *, step: int, files: dict[str, str]) -> None:
        self._put("artifact", (f"checkpoints/checkpoint-{step}.json", files))

    def end(self, fields: dict[str, Any]) -> None:
        self._put("end", fields)

    def close(self, timeout: float) -> str:
        """Wait up to `timeout` seconds for everything queued to reach MLflow; the reason it
        did not, or "" when it did."""
        self._queue.put(_STOP)
        self._thread.join(timeout)
        if self.error:
            return self.error
        if self._thread.is_alive():
            return f"MLflow did not take the run within {timeout:g} s of the job's end"
        return ""

    def _put(self, kind: str, payload: Any) -> None:
        if not self.error:
            self._queue.put((kind, payload))

    def _work(self) -> None:
        try:
            # Imported here: ~1.5 s that the job's own loop must not wait for.
            from mlflow.tracking import MlflowClient

            client = MlflowClient(tracking_uri=self.tracking_uri)
            self._create_run(client)
            while True:
                items = [self._queue.get()]
                while True:  # take what piled up: one request for many metrics
                    try:
                        items.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                if self._send(client, items):
                    return
        except Exception as error:  # whatever MLflow raises, the job must not see it
            self.error = self._redacted(f"{type(error).__name__}: {error}")[:500]
            logger.warning("MLflow mirror of %s stopped: %s", self.start["run_name"], self.error)

    def _redacted(self, text: str) -> str:
        """`text` less the tracking URI's password (an error can quote the URI whole)."""
        password = urlsplit(self.tracking_uri).password
        return text.replace(password, "***") if password else text

    def _create_run(self, client: Any) -> None:
        from mlflow.entities import Param
        from mlflow.exceptions import MlflowException

        name = self.start["experiment"]
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            try:
                experiment_id = client.create_experiment(name)
            except MlflowException:  # another worker created it meanwhile
                experiment_id = client.get_experiment_by_name(name).experiment_id
        else:
            experiment_id = experiment.experiment_id
        tags = {k: v[:TAG_VALUE_LIMIT] for k, v in self.start["tags"].items()}
        run = client.create_run(experiment_id, run_name=self.start["run_name"], tags=tags)
        params = [Param(k, v[:PARAM_VALUE_LIMIT]) for k, v in self.start["params"].items()]
        for i in range(0, len(params), PARAMS_PER_BATCH):
            client.log_batch(run.info.run_id, params=params[i : i + PARAMS_PER_BATCH])
        self.experiment_id, self.run_id = str(experiment_id), str(run.info.run_id)

    def _send(self, client: Any, items: list[tuple[str, Any]]) -> bool:
        """Send `items` in order, metrics batched; True once the stop is reached."""
        from mlflow.entities import Metric, RunTag

        metrics: list[Any] = []

        def flush() -> None:
            for i in range(0, len(metrics), METRICS_PER_BATCH):
                client.log_batch(self.run_id, metrics=metrics[i : i + METRICS_PER_BATCH])
            metrics.clear()

        for kind, payload in items:
            if kind == "metrics":
                step, numbers, at = payload
                metrics.extend(Metric(k, v, at, step) for k, v in numbers.items())
                continue
            flush()
            if kind == "artifact":
                client.log_dict(self.run_id, payload[1], payload[0])
            elif kind == "end":
                at = int(time.time() * 1000)
                metrics.extend(
                    Metric(k, v, at, payload["step"]) for k, v in payload["metrics"].items()
                )
                flush()
                for path, content in payload["artifacts"].items():
                    client.log_dict(self.run_id, content, path)
                tags = [RunTag(k, v) for k, v in payload["tags"].items()]
                client.log_batch(self.run_id, tags=tags)
                client.set_terminated(self.run_id, payload["status"])
            elif kind == "stop":
                return True
        flush()
        return False


def mlflow_mirror_start(job: TrainingJob) -> MlflowMirror | None:
    """A mirror for `job` when MLFLOW_TRACKING_URI is set; call once its data is prepared."""
    if not settings.MLFLOW_TRACKING_URI:
        return None
    return MlflowMirror(
        tracking_uri=settings.MLFLOW_TRACKING_URI, start=mlflow_run_start_fields(job)
    )
