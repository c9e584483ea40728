"""The worker side of a training job: claim it, start the runner in a child process, follow
its JSON-lines events into the database and to browsers, heartbeat, pass on a cancel, and
settle the final state. Runs inside a Celery task on the `gpu` queue."""

import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from core.jobs import runs_under_job_lock
from core.models import JobStatus
from core.services.audit import audit_record, content_hash
from core.services.jobs import (
    job_claim,
    job_heartbeat,
    job_progress,
    job_running,
    job_settle,
)
from training import distributed
from training.models import (
    TrainingJob,
    TrainingLogLine,
    TrainingMetric,
)
from training.services.jobs import (
    checkpoint_record,
    job_data_dir,
    job_data_dir_for,
    job_data_remove,
    job_push,
    job_workdir,
    stored_file_open_read,
)
from training.services.progress import phase_event_fields, progress_next
from training.services.registry import model_version_create_for_job
from training.services.sweeps import sweep_is_trial, sweep_job_settled, sweep_trial_report
from training.services.tracking import (
    MlflowMirror,
    job_tracking_record,
    mlflow_mirror_start,
    mlflow_run_end_fields,
    mlflow_run_url,
    portal_job_url,
)

logger = logging.getLogger(__name__)

POLL_S = 0.2
HEARTBEAT_S = 2.0
# After a cancel, the child gets this long to save a checkpoint and exit before a SIGTERM.
CANCEL_GRACE_S = 30.0
LOG_LINE_LIMIT = 4000


def gpu_count() -> int:
    return distributed.visible_gpus()


def runner_command(spec_path: Path, launch: dict[str, Any], paths: dict[str, str]) -> list[str]:
    """Plain python for one process; torchrun (CPU) or `accelerate launch` (GPU) for more."""
    return distributed.launch_command(
        ["train", str(spec_path)], launch, paths, port=distributed.free_port()
    )


def git_commit() -> str:
    if os.environ.get("PORTAL_GIT_COMMIT"):
        return os.environ["PORTAL_GIT_COMMIT"]
    git = shutil.which("git")
    if not git:
        return ""
    proc = subprocess.run(  # noqa: S603 - fixed argv
        [git, "rev-parse", "HEAD"],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    commit = proc.stdout.strip()
    dirty = subprocess.run(  # noqa: S603 - fixed argv
        [git, "status", "--porcelain", "--untracked-files=no"],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return f"{commit}{'+dirty' if commit and dirty else ''}"


def _private_folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)  # whatever the umask made of it
    return path


def _decrypted_copy(source: str, target: Path) -> str:
    """Write the plaintext of a stored training file (encrypted, or an operator's plain
    file) to `target` with mode 0600; returns its sha256."""
    digest = hashlib.sha256()
    handle = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with stored_file_open_read(source) as src, os.fdopen(handle, "wb") as out:
        while chunk := src.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def _prepare_data(job: TrainingJob) -> tuple[str, str | None]:
    """Paths of the plaintext train and validation JSONL files the runner reads, written
    into the job's private data folder (see `job_data_dir`): a snapshot is exported there,
    an upload decrypted there (and checked against the hash recorded at launch)."""
    data = job.data
    folder = _private_folder(job_data_dir(job))
    if "snapshot_id" in data:
        from annotation.services.exports import export_write

        snapshot = job.snapshot
        if snapshot is None:  # launched from one, and PROTECT keeps it: never here
            raise ValueError(f"Job {job.pk} names a snapshot it no longer has.")
        files: dict[str, dict[str, Any]] = {}
        for split in ("train", "validation"):
            out = folder / f"{split}.jsonl"
            exported = export_write(snapshot=snapshot, fmt=data["format"], path=out, split=split)
            out.chmod(0o600)
            files[split] = {"path": str(out), "rows": exported.rows, "sha256": exported.sha256}
        job.data = {**data, **files}
        job.save(update_fields=["data"])
        validation = files["validation"]["path"] if files["validation"]["rows"] else None
        return files["train"]["path"], validation
    paths: dict[str, str | None] = {"train": None, "validation": None}
    for split in paths:
        stored = data.get(split)
        if not stored:
            continue
        out = folder / f"{split}.jsonl"
        if _decrypted_copy(stored["path"], out) != stored["sha256"]:
            raise ValueError(f"the {split} file changed since the job was created")
        paths[split] = str(out)
    return paths["train"], paths["validation"]  # type: ignore[return-value]


def _name_uploads(job: TrainingJob, message: str) -> str:
    """The runner names the private copies (train.jsonl); the engineer knows the files by
    the names they uploaded."""
    for split in ("train", "validation"):
        stored = job.data.get(split)
        if isinstance(stored, dict) and stored.get("name"):
            message = message.replace(f"{split}.jsonl", stored["name"])
    return message


def _spec(job: TrainingJob, workdir: Path, train: str, validation: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "config": job.config,
        "base_path": job.base_model.path,
        "output_dir": str(workdir),
        "train_file": train,
        "eval_file": validation,
        "events_file": str(workdir / "events.jsonl"),
        "cancel_file": str(workdir / "CANCEL"),
        "resume_from_checkpoint": job.data.get("resume_from_checkpoint"),
        # Trackers the trainer reports to itself (W&B...); MLflow is mirrored from here.
        "report_to": list(settings.TRAINING_REPORT_TO),
        "run_name": f"{job.name} #{job.pk}",
        "job_url": portal_job_url(job),
    }
    if job.parent_version is not None:
        spec["parent_path"] = job.parent_version.path
        spec["parent_kind"] = job.parent_version.kind
        spec["parent_base_path"] = job.parent_version.base_model.path
    if job.reward_version is not None:
        reward = job.reward_version
        spec["reward_model_path"] = reward.merged_path or reward.path
    return spec


class Follower:
    """Turns the runner's events into rows and pushes. One per running job."""

    def __init__(self, job: TrainingJob, events_path: Path):
        self.job = job
        self.events_path = events_path
        self.offset = 0
        self.buffer = b""
        self.outcome: dict[str, Any] = {}
        # Set once the job's data is prepared, when MLflow mirroring is on.
        self.mirror: MlflowMirror | None = None

    def poll(self) -> None:
        if not self.events_path.exists():
            return
        with open(self.events_path, "rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read()
        self.offset += len(chunk)
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            if line.strip():
                try:
                    self.handle(json.loads(line))
                except json.JSONDecodeError:
                    logger.warning("job %s: unreadable event line %r", self.job.pk, line[:200])
        self.note_mirror_run()

    def handle(self, event: dict[str, Any]) -> None:
        job = self.job
        kind = event.get("type")
        if kind == "state":
            state = event["state"]
            if state == JobStatus.RUNNING:
                job_running(TrainingJob, pk=job.pk)
                job.status = JobStatus.RUNNING
            job_push(job, "training.status")
        elif kind == "metric":
            metric = TrainingMetric.objects.create(
                job=job, step=event["step"], epoch=event.get("epoch"), values=event["values"]
            )
            job_push(job, "training.metric", step=metric.step, values=metric.values)
            self.report_to_sweep(metric)
            if self.mirror is not None:
                self.mirror.metric(step=metric.step, values=metric.values, at=event.get("time"))
        elif kind == "log":
            self.log(event.get("message", ""), event.get("level", "info"))
        elif kind == "checkpoint":
            checkpoint_record(job, event)
            job_push(job, "training.checkpoint", step=event["step"])
            if self.mirror is not None:
                self.mirror.checkpoint(step=event["step"], files=event["files"])
        elif kind == "phase":
            self.phase(event)
        elif kind == "preflight":
            job.preflight = event["figures"]
            TrainingJob.objects.filter(pk=job.pk).update(preflight=job.preflight)
            job_push(job, "training.preflight", figures=job.preflight)
        elif kind == "environment":
            job.environment = {**job.environment, **event["environment"]}
            TrainingJob.objects.filter(pk=job.pk).update(environment=job.environment)
        elif kind == "first_step":
            job.result = {**job.result, "first_step_at": event["time"]}
            TrainingJob.objects.filter(pk=job.pk).update(result=job.result)
        elif kind == "tracking":  # a tracker the trainer reports to (report_to) named its run
            if isinstance(event.get("service"), str) and isinstance(event.get("url"), str):
                job_tracking_record(job, event["service"], {"url": event["url"]})
        elif kind in ("result", "cancelled", "error"):
            self.outcome = event

    def report_to_sweep(self, metric: TrainingMetric) -> None:
        """A trial's eval loss goes to its sweep, which may prune it (a cancel this loop
        sees at its next heartbeat)."""
        try:
            sweep_trial_report(job_id=self.job.pk, step=metric.step, values=metric.values)
        except Exception:  # the sweep's trouble must not stop the job it watches
            logger.exception("job %s: reporting to its sweep failed", self.job.pk)

    def phase(self, event: dict[str, Any]) -> None:
        """A phase starts (it has a label) or reports how far it got."""
        job_phase_record(
            self.job, event["phase"], **phase_event_fields(event), note=event.get("note") or None
        )

    def log(self, message: str, level: str = "info") -> None:
        job_log(self.job, message, level)

    def start_mirror(self) -> None:
        """Mirror the job to MLflow from here on, when MLFLOW_TRACKING_URI is set."""
        try:
            self.mirror = mlflow_mirror_start(self.job)
        except Exception as error:  # tracking is never worth the job, whatever went wrong
            logger.exception("job %s: MLflow mirror not started", self.job.pk)
            self.log(f"Not mirroring to MLflow: {type(error).__name__}: {error}", "warning")

    def note_mirror_run(self) -> None:
        """Store the MLflow run's id and link on the job once the mirror has created it."""
        mirror = self.mirror
        if mirror is None or not mirror.run_id:
            return
        if self.job.tracking.get("mlflow", {}).get("run_id") == mirror.run_id:
            return
        url = mlflow_run_url(experiment_id=mirror.experiment_id, run_id=mirror.run_id)
        job_tracking_record(
            self.job,
            "mlflow",
            {"run_id": mirror.run_id, "experiment_id": mirror.experiment_id, "url": url},
        )

    def close_mirror(self, *, wait: bool) -> None:
        """Send the settled job's end to MLflow and wait (a bounded time, after the job has
        ended) for the mirror to catch up; a failure becomes one warning in the job's log."""
        mirror = self.mirror
        if mirror is None:
            return
        job = TrainingJob.objects.get(pk=self.job.pk)
        problem = ""
        try:
            if job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED):
                mirror.end(mlflow_run_end_fields(job))
        except Exception as error:  # the job has ended well or not: tracking cannot change it
            logger.exception("job %s: MLflow run end not sent", job.pk)
            problem = f"{type(error).__name__}: {error}"
        problem = mirror.close(settings.TRAINING_MLFLOW_FLUSH_SECONDS if wait else 0) or problem
        self.note_mirror_run()
        self.mirror = None
        if problem and wait:
            self.log(
                f"Mirroring to MLflow failed ({problem}); the portal's record of this job is "
                "complete.",
                "warning",
            )


def job_log(job: TrainingJob, message: str, level: str = "info") -> None:
    line = TrainingLogLine.objects.create(job=job, level=level, message=message[:LOG_LINE_LIMIT])
    job_push(job, "training.log", level=level, message=line.message)


def job_phase_record(
    job: TrainingJob,
    phase: str,
    *,
    label: str | None = None,
    done: int = 0,
    total: int | None = None,
    unit: str = "",
    at: float | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """Store the job's phase (a new one when `label` is given, else the current one's
    progress) and tell the job's watchers; a new phase also goes to the job's log (as
    `note` when given)."""
    progress = progress_next(
        job.progress, phase, label=label, done=done, total=total, unit=unit, at=at
    )
    job.progress = progress
    job_progress(TrainingJob, pk=job.pk, progress=progress)
    job_push(job, "training.phase", progress=progress)
    if label is not None:
        job_log(job, note or f"{progress['label']}…")
    return progress


def _settle(job_id: int, status: str, **fields: Any) -> TrainingJob | None:
    """Move a started job to a final state unless someone (the sweep) already did. The
    job's decrypted data goes first, so a job seen finished has none left."""
    shutil.rmtree(job_data_dir_for(job_id), ignore_errors=True)
    with transaction.atomic():
        job = job_settle(TrainingJob, pk=job_id, status=status, runner_pid=None, **fields)
        if job is None:
            return None
        # The error can quote the runner's output (training rows): the job row keeps it.
        data = {"error_sha256": content_hash(job.error)} if job.error else {}
        audit_record(actor=None, action=f"training.job.{status}", target=job, data=data)
        # A sweep's trials wait for the sweep to register its best (sweep_register_best).
        if status == JobStatus.SUCCEEDED and not sweep_is_trial(job):
            model_version_create_for_job(job=job)
        transaction.on_commit(lambda: job_push(job, "training.status", error=job.error))
        transaction.on_commit(lambda: sweep_job_settled(job_id=job_id))
    return job


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"The runner process was killed ({name})."
    return f"The runner process exited with status {code}."


@runs_under_job_lock(TrainingJob, "job_id")
def training_job_execute(*, job_id: int) -> None:
    """Run one job to its end. Duplicate deliveries return at the claim. The decrypted
    training data lives only while this runs; a worker killed outright leaves it to the
    stale-job sweep."""
    if not job_claim(TrainingJob, pk=job_id, to=JobStatus.PREFLIGHT, worker=socket.gethostname()):
        return
    job = TrainingJob.objects.select_related(
        "base_model", "parent_version__base_model", "reward_version"
    ).get(pk=job_id)
    try:
        _execute(job)
    finally:
        job_data_remove(job)


def _execute(job: TrainingJob) -> None:
    job_push(job, "training.status")
    workdir = job_workdir(job)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "CANCEL").unlink(missing_ok=True)
    follower = Follower(job, workdir / "events.jsonl")
    environment = {
        "git_commit": git_commit(),
        "worker": socket.gethostname(),
        "gpus_visible": gpu_count(),
        "base_model_sha256": job.base_model.weights_sha256,
        "snapshot_id": job.data.get("snapshot_id"),
        "manifest_sha256": job.manifest_sha256,
        "seed": job.seed,
    }
    TrainingJob.objects.filter(pk=job.pk).update(workdir=str(workdir), environment=environment)
    job.environment = environment
    job_phase_record(job, "preparing_data", label="Preparing the training data")
    try:
        train, validation = _prepare_data(job)
    except Exception as error:  # a refused export must fail the job, whatever raised it
        _settle(job.pk, JobStatus.FAILED, error=f"Exporting the training data failed: {error}")
        return
    follower.start_mirror()
    spec = _spec(job, workdir, train, validation)
    launch = job.config.get("launch") or {"world_size": 1, "strategy": "single"}
    launch_paths = distributed.write_launch_files(launch, workdir)
    spec["world_size"] = int(launch.get("world_size") or 1)
    spec_path = workdir / "spec.json"
    spec_path.write_text(json.dumps(spec, indent=2))
    log_path = workdir / "runner.log"
    child_env = {
        **os.environ,
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUNBUFFERED": "1",
        **distributed.launch_env(launch),
    }
    with open(log_path, "ab") as log_file:
        child = subprocess.Popen(  # noqa: S603 - our runner, fixed argv
            runner_command(spec_path, launch, launch_paths),
            cwd=settings.BASE_DIR,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=child_env,
            start_new_session=True,
        )
    follower.log(
        f"Runner started (pid {child.pid}) on {socket.gethostname()}; world size "
        f"{spec['world_size']} ({launch.get('strategy')}"
        + (f" over {launch['backend']}" if launch.get("backend") else "")
        + ")."
    )
    cancel_seen_at: float | None = None
    last_beat = 0.0
    try:
        while child.poll() is None:
            follower.poll()
            now = time.monotonic()
            if now - last_beat >= HEARTBEAT_S:
                last_beat = now
                cancel = job_heartbeat(TrainingJob, pk=job.pk, runner_pid=child.pid)
                if cancel and cancel_seen_at is None:
                    cancel_seen_at = now
                    (workdir / "CANCEL").touch()
                    follower.log("Cancel requested; stopping after the current step.", "warning")
            if cancel_seen_at is not None and now - cancel_seen_at > CANCEL_GRACE_S:
                follower.log("The runner did not stop in time; terminating it.", "warning")
                os.killpg(child.pid, signal.SIGTERM)
                cancel_seen_at = float("inf")
            time.sleep(POLL_S)
    except BaseException:
        # A time limit or a worker shutdown: never leave an orphan on the GPU.
        _stop_child(child)
        follower.poll()
        _settle(
            job.pk, JobStatus.FAILED, error="The worker stopped the job (time limit or shutdown)."
        )
        follower.close_mirror(wait=False)
        raise
    follower.poll()
    _finish(job, follower, child.returncode, cancel_seen_at is not None, log_path)
    follower.close_mirror(wait=True)


def _stop_child(child: subprocess.Popen) -> None:
    if child.poll() is not None:
        return
    try:
        os.killpg(child.pid, signal.SIGTERM)
        child.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)


def _finish(
    job: TrainingJob, follower: Follower, code: int, cancel_asked: bool, log_path: Path
) -> None:
    outcome = follower.outcome
    kind = outcome.get("type")
    if kind == "result" and code == 0:
        result = {**job.result, **outcome["result"]}
        job_phase_record(job, "registering", label="Registering the model version", total=1)
        _settle(job.pk, JobStatus.SUCCEEDED, result=result, progress={**job.progress, "done": 1})
        return
    if kind == "cancelled" or (cancel_asked and kind != "error"):
        checkpoint = outcome.get("checkpoint")
        note = f" Last checkpoint: {checkpoint}." if checkpoint else ""
        follower.log(f"Cancelled.{note}", "warning")
        _settle(job.pk, JobStatus.CANCELLED)
        return
    if kind == "error":
        error = _name_uploads(job, outcome.get("message", ""))
    else:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
        error = _describe_exit(code) + (f" Last output: {' / '.join(tail)}" if tail else "")
    last = job.checkpoints.order_by("-step").first()
    if last is not None:
        error += f" Resumable from the checkpoint at step {last.step}."
    follower.log(error, "error")
    _settle(job.pk, JobStatus.FAILED, error=error)


def first_step_latency(job: TrainingJob) -> float | None:
    """Seconds from submit to the first optimizer step (for the benchmark and the page)."""
    at = job.result.get("first_step_at")
    if at is None:
        return None
    return at - job.created_at.timestamp()
