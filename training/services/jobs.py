"""Creating, cancelling, resuming and sweeping training jobs (the web side of the state
machine). The worker side, which runs and follows the child process, is in execution.py."""

import hashlib
import json
import shutil
import uuid
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.text import get_valid_filename

from core import at_rest, keys, realtime
from core.models import JOB_ACTIVE, JobStatus, Project, User
from core.services.audit import audit_record
from core.services.jobs import job_cancel_request, jobs_sweep_dead
from training import distributed, presets, tasks
from training.models import (
    BaseModel,
    JobKind,
    ModelVersion,
    TrainingCheckpoint,
    TrainingJob,
)
from training.services.base_models import model_dir_resolve


def jobs_root() -> Path:
    return Path(settings.MEDIA_ROOT) / "training" / "jobs"


def uploads_root() -> Path:
    return Path(settings.MEDIA_ROOT) / "training" / "files"


# Stored as dataset uploads are (core.services.protection; governance rotates these too).
def stored_file_open_write(path: str | Path) -> IO[bytes]:
    return at_rest.open_write(path, keys.encryption_keys())


def stored_file_open_read(path: str | Path) -> IO[bytes]:
    return at_rest.open_read(path, keys.encryption_keys())


def training_files_stored() -> list[Path]:
    """Every stored training-file upload, oldest folder first."""
    root = uploads_root()
    if not root.is_dir():
        return []
    return [p for p in sorted(root.glob("*/*")) if p.is_file() and not p.name.startswith(".")]


def sha256_path(path: Path) -> str:
    """The sha256 of a file's plaintext (stored uploads are encrypted at rest)."""
    digest = hashlib.sha256()
    with stored_file_open_read(path) as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def max_training_file_bytes() -> int:
    return settings.PORTAL_TRAINING_FILE_MAX_BYTES


def training_file_store(
    *,
    project: Project,
    upload: IO[bytes],
    name: str,
    actor: User | None = None,
    field: str = "file",
) -> dict[str, Any]:
    """Keep an uploaded JSONL file under MEDIA_ROOT, encrypted at rest as dataset uploads
    are; returns {id, path, sha256, rows, name} (the hash is of the plaintext). A file over
    PORTAL_TRAINING_FILE_MAX_BYTES is refused as it streams in, naming `field`. Stored files
    are deleted after PORTAL_RAW_UPLOAD_RETENTION_DAYS (`training_files_purge`)."""
    limit = max_training_file_bytes()
    folder = uploads_root() / str(project.pk)
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    tmp = folder / f".upload-{uuid.uuid4().hex}"
    rows = size = 0
    chunks = (
        upload.chunks() if hasattr(upload, "chunks") else iter(lambda: upload.read(1 << 20), b"")
    )
    try:
        with stored_file_open_write(tmp) as out:
            for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise ValidationError(
                        {
                            field: f"{Path(name).name}: file is larger than the limit of "
                            f"{limit} bytes"
                        }
                    )
                digest.update(chunk)
                rows += chunk.count(b"\n")
                out.write(chunk)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    sha = digest.hexdigest()
    final = folder / f"{sha[:16]}-{get_valid_filename(Path(name).name) or 'data.jsonl'}"
    tmp.replace(final)
    if rows == 0 and size:
        rows = 1
    audit_record(
        actor=actor,
        action="training.file.upload",
        project_id=project.pk,
        data={"file": f"file-{sha[:16]}", "sha256": sha, "bytes": size, "field": field},
    )
    return {
        "id": f"file-{sha[:16]}",
        "path": str(final),
        "sha256": sha,
        "rows": rows,
        "name": Path(name).name,
    }


def training_files_purge(*, now: datetime | None = None, days: int | None = None) -> list[Path]:
    """Delete stored training-file uploads older than `days` (PORTAL_RAW_UPLOAD_RETENTION_DAYS;
    0 keeps everything), except those a queued or running job still has to read. Jobs keep
    the files' hashes; a job made from a purged file can no longer be resumed."""
    days = settings.PORTAL_RAW_UPLOAD_RETENTION_DAYS if days is None else days
    if days <= 0:
        return []
    cutoff = ((now or timezone.now()) - timedelta(days=days)).timestamp()
    in_use = {
        part.get("path")
        for data in TrainingJob.objects.filter(status__in=JOB_ACTIVE).values_list("data", flat=True)
        for part in (data.get("train") or {}, data.get("validation") or {})
    }
    purged = []
    for path in training_files_stored():
        if str(path) in in_use or path.stat().st_mtime >= cutoff:
            continue
        project_id = int(path.parent.name) if path.parent.name.isdigit() else None
        with transaction.atomic():
            audit_record(
                actor=None,
                action="training.file.purge",
                project_id=project_id,
                data={
                    "file": f"file-{path.name[:16]}",
                    "sha256_prefix": path.name[:16],
                    "retention_days": days,
                },
            )
            path.unlink(missing_ok=True)
        purged.append(path)
    return purged


def training_file_path(*, project: Project, file_id: str) -> str:
    """The stored upload behind an API file id, looked up only in the project's folder."""
    key = file_id.removeprefix("file-")
    if len(key) != 16 or not all(c in "0123456789abcdef" for c in key):
        raise ValidationError(f"{file_id!r} is not a file id.")
    matches = sorted((uploads_root() / str(project.pk)).glob(f"{key}-*"))
    if not matches:
        raise ValidationError(f"No uploaded file {file_id} in this project.")
    return str(matches[0])


def _data_from_file(path: str | None, label: str) -> dict[str, Any] | None:
    if not path:
        return None
    file = Path(path)
    if not file.is_file():
        raise ValidationError({label: f"{path} does not exist on the server."})
    return {"path": str(file), "sha256": sha256_path(file), "name": file.name}


def _check_base_model_folder(base_model: BaseModel) -> None:
    """A local base model still lies under a model root (a row registered before roots
    existed, or a folder swapped for a link since, is refused at launch too)."""
    if base_model.source == BaseModel.Source.HUB:
        return
    try:
        model_dir_resolve(base_model.path)
    except ValidationError:
        raise ValidationError(
            {
                "base_model": f"{base_model.name} is not in the server's model folders "
                "(TRAINING_MODEL_ROOTS) any more; register it again from there."
            }
        ) from None


def _refuse(errors: dict[str, list[str]], field: str, message: str) -> None:
    errors.setdefault(field, []).append(message)


def _gather(errors: dict[str, list[str]], check: Any, *args: Any, **kwargs: Any) -> Any:
    """Run `check` and add what it refuses to `errors` (a list of messages per field);
    returns what the check returned, or None when it refused."""
    try:
        return check(*args, **kwargs)
    except ValidationError as error:
        found = error.message_dict if hasattr(error, "error_dict") else {"detail": error.messages}
        for field, messages in found.items():
            errors.setdefault(field, []).extend(messages)
        return None


def _check_lineage(
    *,
    project: Project,
    kind: str,
    base_model: BaseModel,
    parent: ModelVersion | None,
    reward: ModelVersion | None,
) -> None:
    errors = {}
    if parent is not None:
        if parent.project_id != project.pk:
            errors["parent_version"] = "That version belongs to another project."
        elif parent.base_weights_sha256 != base_model.weights_sha256:
            errors["parent_version"] = (
                f"{parent.name} was trained on other base weights than {base_model.name}."
            )
        elif parent.task == JobKind.REWARD:
            errors["parent_version"] = "A reward model cannot be the parent of a generator."
    if kind == JobKind.GRPO:
        if reward is None:
            errors["reward_version"] = "GRPO needs a trained reward-model version."
        elif reward.project_id != project.pk or reward.task != JobKind.REWARD:
            errors["reward_version"] = "Choose a reward-model version of this project."
    if errors:
        raise ValidationError(errors)


def worker_gpus() -> int:
    """GPUs on each training worker (TRAINING_WORKER_GPUS, or this machine's count)."""
    configured = int(settings.TRAINING_WORKER_GPUS)
    return configured if configured >= 0 else distributed.visible_gpus()


@transaction.atomic
def training_job_create(
    *,
    actor: User | None,
    project: Project,
    name: str,
    kind: str,
    method: str,
    base_model: BaseModel,
    values: dict[str, Any] | None = None,
    preset: str | None = None,
    snapshot: Any = None,
    train_file: str | None = None,
    eval_file: str | None = None,
    parent_version: ModelVersion | None = None,
    reward_version: ModelVersion | None = None,
    resumed_from: TrainingJob | None = None,
    accept_leakage: bool = False,
    owner: User | None = None,
) -> TrainingJob:
    """Validate the settings against the base model and the data, then queue the job.

    Data comes from a snapshot (exported by the worker) or from JSONL files already on the
    server (uploads stored by `training_file_store`, or paths given by an operator on the
    command line). The Celery task is sent only after commit.
    """
    # Every check runs and every problem is reported together: fixing one field at a time,
    # each answer hiding the next, wastes the engineer's afternoon.
    errors: dict[str, list[str]] = {}
    config: dict[str, Any] = {}
    if base_model.project_id not in (None, project.pk):
        _refuse(errors, "base_model", "That base model belongs to another project.")
    else:
        _gather(errors, _check_base_model_folder, base_model)
    try:
        config = presets.check_config(
            kind=kind, method=method, values=dict(values or {}), preset=preset, info=base_model.info
        )
    except presets.ConfigError as error:
        for field, message in error.errors.items():
            _refuse(errors, field, message)
    if config:
        gpus = worker_gpus()
        config = distributed.resolve_processes(config, gpus=gpus)
        for field, message in distributed.check_launch(config, gpus=gpus).items():
            _refuse(errors, field, message)
        config["launch"] = distributed.launch_record(config, gpus=gpus)
    _gather(
        errors,
        _check_lineage,
        project=project,
        kind=kind,
        base_model=base_model,
        parent=parent_version,
        reward=reward_version,
    )
    data: dict[str, Any] = {}
    manifest = ""
    if snapshot is not None:
        if snapshot.project_id != project.pk:
            _refuse(errors, "snapshot", "That snapshot belongs to another project.")
        else:
            data["snapshot_id"] = snapshot.pk
            data["format"] = "sft" if kind == JobKind.SFT else "preference"
            data["leakage"] = _gather(
                errors, _check_snapshot, snapshot, data["format"], accept_leakage
            )
            manifest = snapshot.manifest_sha256
    else:
        train = _gather(errors, _data_from_file, train_file, "train_file")
        if train is None and not train_file:
            _refuse(errors, "train_file", "Choose a snapshot or upload a training file.")
        evaluation = _gather(errors, _data_from_file, eval_file, "eval_file")
        if train is not None:
            data["train"] = train
            if evaluation:
                data["validation"] = evaluation
            manifest = hashlib.sha256(
                (train["sha256"] + (evaluation["sha256"] if evaluation else "")).encode()
            ).hexdigest()
    if config.get("eval_steps") and not (snapshot is not None or eval_file):
        _refuse(errors, "eval_steps", "Evaluation needs a validation file or a snapshot.")
    if errors:
        raise ValidationError(errors)
    created_by = owner or actor
    if created_by is None:
        raise ValueError("A job needs an owner: give the actor or the owner.")
    job = TrainingJob.objects.create(
        project=project,
        name=name.strip() or f"{kind}-{method}",
        kind=kind,
        method=method,
        base_model=base_model,
        parent_version=parent_version,
        reward_version=reward_version,
        resumed_from=resumed_from,
        manifest_sha256=manifest,
        data=data,
        config=config,
        seed=config["seed"],
        snapshot=snapshot,
        created_by=created_by,
    )
    audit_record(
        actor=actor,
        action="training.job.create",
        target=job,
        data={
            "kind": kind,
            "method": method,
            "base_model": base_model.pk,
            "config": config,
            "snapshot": getattr(snapshot, "pk", None),
            "leakage": data.get("leakage"),
        },
    )
    transaction.on_commit(lambda: tasks.training_job_run_task.delay(job.pk))
    transaction.on_commit(lambda: job_push(job, "training.job"))
    return job


def _check_snapshot(snapshot: Any, fmt: str, accept_leakage: bool) -> dict[str, Any]:
    """A snapshot trains only in a format its task exports to, and only once its splits were
    checked for leakage (duplicates between train, validation and test): clean, or its
    leaks accepted by the engineer after reading the report (recorded with the job)."""
    from annotation.selectors import snapshot_leakage_status
    from annotation.services.exports import export_formats_for

    formats = export_formats_for(snapshot.task_type)
    if fmt not in formats:
        raise ValidationError(
            {
                "snapshot": f"{snapshot} holds {snapshot.task_type} labels, which export as "
                f"{', '.join(formats) or 'nothing trainable'}; this job needs {fmt} data."
            }
        )
    leakage = snapshot_leakage_status(snapshot=snapshot)
    if leakage["status"] in ("queued", "running"):
        raise ValidationError(
            {
                "snapshot": f"{snapshot}'s leakage check is still {leakage['status']}; "
                "launch once it has finished (the snapshot page shows it)."
            }
        )
    if not leakage["checked"]:
        raise ValidationError(
            {
                "snapshot": f"{snapshot} has no finished leakage check "
                f"(status: {leakage['status']}); run it on the snapshot page first."
            }
        )
    if leakage["leaks"] and not accept_leakage:
        raise ValidationError(
            {
                "snapshot": f"{snapshot} has {leakage['leaks']} group(s) of duplicates across its "
                "splits; read its leakage report, then snapshot again without them or accept "
                "the leakage for this job."
            }
        )
    return {**leakage, "accepted": bool(leakage["leaks"])}


def job_push(job: TrainingJob, event_type: str, **fields: Any) -> None:
    realtime.push_to_project(
        project_id=job.project_id,
        event={"type": event_type, "job": job.pk, "status": job.status, **fields},
    )


@transaction.atomic
def training_job_cancel(*, actor: User, job: TrainingJob) -> TrainingJob:
    """Ask a job to stop. A queued job is cancelled at once; a running one is stopped by its
    worker within seconds (keeping its last checkpoint). Cancelling a finished job is an
    error."""
    job = job_cancel_request(TrainingJob, pk=job.pk)
    audit_record(actor=actor, action="training.job.cancel", target=job)
    if job.status == JobStatus.CANCELLED:
        transaction.on_commit(lambda: job_data_remove(job))
    transaction.on_commit(lambda: job_push(job, "training.status"))
    return job


def training_job_resume(
    *, actor: User | None, job: TrainingJob, automatic: bool = False
) -> TrainingJob:
    """A new job with the same settings that continues from the failed job's last intact
    checkpoint. `automatic` marks the one resume
    the housekeeping sweep makes by itself (actor None; the new job belongs to the old one's
    owner)."""
    if job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
        raise ValidationError("Only a failed or cancelled job can be resumed.")
    checkpoint = _checkpoint_newest_intact(job)
    if checkpoint is None:
        raise ValidationError("The job saved no intact checkpoint to resume from.")
    values = {k: v for k, v in job.config.items() if k in presets.FIELDS}
    with transaction.atomic():
        resumed = training_job_create(
            actor=actor,
            owner=job.created_by,
            project=job.project,
            name=f"{job.name} (resumed)",
            kind=job.kind,
            method=job.method,
            base_model=job.base_model,
            values=values,
            snapshot=job.snapshot,
            accept_leakage=bool(job.data.get("leakage", {}).get("accepted")),
            train_file=job.data.get("train", {}).get("path"),
            eval_file=job.data.get("validation", {}).get("path"),
            parent_version=job.parent_version,
            reward_version=job.reward_version,
            resumed_from=job,
        )
        resumed.data = {
            **resumed.data,
            "resume_from_checkpoint": checkpoint.path,
            "automatic_resume": automatic,
        }
        resumed.save(update_fields=["data"])
        if automatic:
            audit_record(
                actor=None,
                action="training.job.requeue",
                target=resumed,
                data={"resumed_from": job.pk, "checkpoint_step": checkpoint.step},
            )
    return resumed


def _checkpoint_intact(checkpoint: TrainingCheckpoint) -> bool:
    """The folder and every file the runner reported are there. The runner reports a
    checkpoint only once it is saved whole, so one cut short by a full disk or a kill has no
    row; this catches folders removed since (rotation, cleanup)."""
    folder = Path(checkpoint.path)
    return folder.is_dir() and all((folder / name).is_file() for name in checkpoint.files or {})


def training_jobs_sweep_stale(
    *, project: Project | None = None, stale_s: float | None = None, requeue: bool = False
) -> int:
    """Mark failed every started job whose worker is gone: its process no longer holds the
    job's lock (killed, out of memory) or it stopped sending heartbeats (a lost machine);
    see core.services.jobs.jobs_sweep_dead. Returns how many were marked. Their last
    checkpoint stays resumable; with `requeue` (the beat's sweep), a job that saved one is
    resumed automatically, once: a resumed job that dies too stays failed."""
    started = TrainingJob.objects.all()
    if project is not None:
        started = started.filter(project=project)
    lost = jobs_sweep_dead(
        TrainingJob,
        queryset=started,
        stale_s=stale_s,
        on_lost=partial(training_job_lost, requeue=requeue),
    )
    return len(lost)


def training_job_lost(job: TrainingJob, *, requeue: bool = True) -> None:
    """The sweep failed `job` (in its transaction): the dead worker's child is no more, its
    decrypted exports go (when it shares this disk), the checkpoints its runner saved after
    the worker's last look are recorded, and with `requeue` the job resumes from the newest
    intact one; the error says which."""
    TrainingJob.objects.filter(pk=job.pk).update(runner_pid=None)
    job.runner_pid = None
    checkpoints_recover(job)
    transaction.on_commit(lambda: job_data_remove(job))
    transaction.on_commit(lambda: job_push(job, "training.status"))
    if requeue and not job.data.get("automatic_resume") and job.checkpoints.exists():
        note = _requeue_once(job)
    else:
        last = _checkpoint_newest_intact(job)
        note = f"Resumable from the checkpoint at step {last.step}." if last else ""
    if note:
        job.error = f"{job.error} {note}"
        TrainingJob.objects.filter(pk=job.pk).update(error=job.error)


def _requeue_once(job: TrainingJob) -> str:
    """Resume a lost job from its newest intact checkpoint, in a savepoint: a job that cannot
    be resumed (its checkpoints are gone or damaged) just stays failed. Returns what to add
    to its error."""
    try:
        with transaction.atomic():
            resumed = training_job_resume(actor=None, job=job, automatic=True)
    except ValidationError as error:
        return "Not resumed: " + " ".join(error.messages)
    step = resumed.data["resume_from_checkpoint"].rsplit("-", 1)[-1]
    return f"Resumed automatically from the checkpoint at step {step} as job #{resumed.pk}."


def checkpoint_record(job: TrainingJob, event: dict[str, Any]) -> TrainingCheckpoint:
    """Record a checkpoint the runner reported saved whole (its `checkpoint` event): the row
    and the job's checkpoint hashes."""
    checkpoint, _ = TrainingCheckpoint.objects.update_or_create(
        job=job,
        step=event["step"],
        defaults={
            "path": event["path"],
            "files": event["files"],
            "metrics": event.get("metrics", {}),
        },
    )
    hashes = {**job.checkpoint_sha256, f"checkpoint-{event['step']}": event["files"]}
    job.checkpoint_sha256 = hashes
    TrainingJob.objects.filter(pk=job.pk).update(checkpoint_sha256=hashes)
    return checkpoint


def checkpoints_recover(job: TrainingJob) -> int:
    """Record the checkpoints a lost job's runner reported in its event file after its worker
    last read it (the worker died; the runner, in a session of its own, went on for a few
    steps and may have rotated the older ones away). Returns how many were new. Nothing when
    the file is on another machine's disk."""
    events = job_workdir(job) / "events.jsonl"
    if not events.is_file():
        return 0
    known = set(job.checkpoints.values_list("step", flat=True))
    added = 0
    with open(events, "rb") as handle:
        for line in handle:
            try:
                event = json.loads(line)
            except ValueError:  # the line the runner was writing when it stopped
                continue
            if event.get("type") == "checkpoint" and event.get("step") not in known:
                checkpoint_record(job, event)
                known.add(event["step"])
                added += 1
    return added


def _checkpoint_newest_intact(job: TrainingJob) -> TrainingCheckpoint | None:
    return next((c for c in job.checkpoints.order_by("-step") if _checkpoint_intact(c)), None)


def job_workdir(job: TrainingJob) -> Path:
    return jobs_root() / str(job.pk)


def job_data_dir(job: TrainingJob) -> Path:
    """The private folder (0700, files 0600) of the decrypted training files written for a
    job's runner. It lives only while the job runs: `job_data_remove` deletes it when the job
    ends, whichever way."""
    return job_data_dir_for(job.pk)


def job_data_dir_for(job_id: int) -> Path:
    return jobs_root() / str(job_id) / "data"


def job_data_remove(job: TrainingJob) -> None:
    shutil.rmtree(job_data_dir(job), ignore_errors=True)


def job_files_remove(job: TrainingJob) -> None:
    """Delete a finished job's working files (not its model version's)."""
    shutil.rmtree(job_workdir(job) / "checkpoints", ignore_errors=True)
