import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from core.models import AuditEvent, JobStatus
from tests.support import servers
from tests.training.conftest import QUICK, wait_finished, wait_for
from training import services
from training.models import ModelVersion, TrainingJob
from training.services.jobs import job_workdir, sha256_path

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.celery]

FINAL_STEP = 24


def _sft(engineer, project, base, files, **values):
    return services.training_job_create(
        actor=engineer,
        project=project,
        name="sft-killed",
        kind="sft",
        method="lora",
        base_model=base,
        values={**QUICK, **values},
        train_file=str(files["sft_train"]),
        eval_file=str(files["sft_val"]),
    )


def _poll(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return value


@pytest.fixture
def beat(test_database_url, server_log_dir):
    """Celery beat as the compose stack runs it, sweeping every 2 s instead of 30."""
    child = servers.start_celery_beat(
        servers.child_env(test_database_url, PORTAL_JOB_SWEEP_SECONDS="2"), server_log_dir
    )
    yield child
    child.stop()


def test_kill_9_of_the_gpu_worker_mid_training_requeues_once_and_resumes_to_the_same_step(
    killable_workers, beat, engineer, project, tiny_base_model, data_files
):
    worker = killable_workers()
    job = _sft(engineer, project, tiny_base_model, data_files, max_steps=FINAL_STEP, save_steps=4)
    job = wait_for(job, JobStatus.RUNNING)
    checkpoint = _poll(lambda: job.checkpoints.order_by("-step").first(), 120, "a checkpoint")
    job.refresh_from_db()
    runner_pid = job.runner_pid

    killable_workers.kill(worker)
    killed_at = time.monotonic()
    killable_workers()  # the stack's other worker: it runs the sweep, then the requeued job

    try:
        job = wait_for(job, JobStatus.FAILED, timeout=60)
        assert time.monotonic() - killed_at < 60
        assert "process is gone" in job.error
        # The runner, in a session of its own, notices its parent is gone and stops.
        _poll(lambda: not _alive(runner_pid), 60, "the orphaned runner to stop")
        resumed = _poll(
            lambda: TrainingJob.objects.filter(resumed_from=job).first(), 30, "a requeue"
        )
        assert resumed.data["automatic_resume"] is True
        # The newest checkpoint the runner saved whole, whether or not the worker lived to
        # record it: the runner runs on for a few steps and rotates the oldest away.
        resumed_step = int(resumed.data["resume_from_checkpoint"].rsplit("-", 1)[-1])
        assert resumed_step >= checkpoint.step
        job.refresh_from_db()
        assert f"from the checkpoint at step {resumed_step} as job #{resumed.pk}" in job.error

        resumed = wait_finished(resumed, timeout=240)
    finally:
        with contextlib.suppress(ProcessLookupError, TypeError):
            os.kill(runner_pid, signal.SIGKILL)

    assert resumed.status == JobStatus.SUCCEEDED, resumed.error
    assert resumed.result["global_step"] == FINAL_STEP
    steps = list(resumed.metrics.values_list("step", flat=True))
    assert min(steps) > resumed_step  # it went on from the checkpoint, not from step 0
    assert TrainingJob.objects.filter(project=project).count() == 2  # requeued once only
    version = ModelVersion.objects.get(project=project)
    assert version.job_id == resumed.pk
    assert version.checkpoint_sha256  # complete: every file there with the hash it was saved with
    for name, digest in version.checkpoint_sha256.items():
        assert sha256_path(Path(version.path) / name) == digest
    assert AuditEvent.objects.filter(
        action="training.job.requeue", target_id=str(resumed.pk)
    ).exists()


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by init) counts as stopped.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def small_disk():
    """Mount a tmpfs of `size` at `folder` (root only, as here and in CI); unmounted after."""
    mounted = []

    def mount(folder: Path, size: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(  # noqa: S603 - fixed argv
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],  # noqa: S607
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a small disk here (needs root): {done.stderr.strip()}")
        mounted.append(folder)

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], check=False)  # noqa: S603, S607


def test_a_full_disk_while_saving_a_checkpoint_fails_the_job_naming_it_and_keeps_the_last_one(
    killable_workers, small_disk, engineer, project, tiny_base_model, data_files
):
    job = _sft(engineer, project, tiny_base_model, data_files, max_steps=12, save_steps=4)
    # Room for one checkpoint of the tiny model (about 140 KiB), not for two.
    small_disk(job_workdir(job) / "checkpoints", "200k")
    killable_workers()

    job = wait_finished(job, timeout=180)

    assert job.status == JobStatus.FAILED
    assert (
        "No space left on device while saving the checkpoint at step 8 to "
        "checkpoints/checkpoint-8 in the job's folder"
    ) in job.error
    assert "checkpoint-4 is intact" in job.error
    assert "Resumable from the checkpoint at step 4." in job.error
    assert list(job.checkpoints.values_list("step", flat=True)) == [4]
    kept = job.checkpoints.get()
    for name, digest in kept.files.items():
        assert sha256_path(Path(kept.path) / name) == digest
    assert not (job_workdir(job) / "checkpoints" / "checkpoint-8").exists()
    assert not ModelVersion.objects.filter(job=job).exists()
