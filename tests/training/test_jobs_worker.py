import json
import os
import signal

import pytest

from core.models import JobStatus
from tests.training.conftest import QUICK, wait_finished, wait_for
from tests.training.test_training_files import private_modes
from training import services
from training.models import ModelVersion
from training.services import inference
from training.services.jobs import job_data_dir

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.celery]


def _sft(engineer, project, base, files, method="lora", **values):
    return services.training_job_create(
        actor=engineer,
        project=project,
        name=f"sft-{method}",
        kind="sft",
        method=method,
        base_model=base,
        values={**QUICK, **values},
        train_file=str(files["sft_train"]),
        eval_file=str(files["sft_val"]),
    )


def test_sft_lora_job_runs_on_the_worker_and_its_loss_falls(
    celery_worker, engineer, project, tiny_base_model, data_files
):
    job = _sft(engineer, project, tiny_base_model, data_files, eval_steps=6)

    job = wait_finished(job)

    assert job.status == JobStatus.SUCCEEDED, job.error
    losses = [m.values["loss"] for m in job.metrics.order_by("step") if "loss" in m.values]
    assert len(losses) >= 10
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    assert any("eval_loss" in m.values for m in job.metrics.all())
    assert job.preflight["trainable_params"] < job.preflight["total_params"] / 5
    assert job.environment["libraries"]["trl"]
    assert job.environment["base_model_sha256"] == tiny_base_model.weights_sha256
    assert {"checkpoint-6", "checkpoint-12"} <= set(job.checkpoint_sha256)
    assert job.checkpoints.count() == 2
    version = ModelVersion.objects.get(job=job)
    assert version.kind == "adapter"
    assert version.stage == "candidate"
    assert "adapter_model.safetensors" in version.checkpoint_sha256
    assert version.metrics["sanity"]["lift"] > 0

    outputs = inference.generate(
        base_model=tiny_base_model,
        model_version=version,
        prompts=["repeat cat", "repeat dog", "hi"],
        max_new_tokens=6,
    )
    assert len(outputs) == 3
    assert all(isinstance(o, str) for o in outputs)


def test_cancel_stops_a_running_job_within_seconds_and_keeps_a_checkpoint(
    celery_worker, engineer, project, tiny_base_model, data_files
):
    job = _sft(engineer, project, tiny_base_model, data_files, max_steps=100000, save_steps=20)
    job = wait_for(job, JobStatus.RUNNING)
    wait_until_metrics(job, 3)

    services.training_job_cancel(actor=engineer, job=job)

    job = wait_finished(job, timeout=30)
    assert job.status == JobStatus.CANCELLED
    assert job.checkpoints.exists()
    assert not ModelVersion.objects.filter(job=job).exists()


def test_a_killed_runner_marks_the_job_failed(
    celery_worker, engineer, project, tiny_base_model, data_files
):
    job = _sft(engineer, project, tiny_base_model, data_files, max_steps=100000)
    job = wait_for(job, JobStatus.RUNNING)
    wait_until_metrics(job, 2)
    job.refresh_from_db()

    os.kill(job.runner_pid, signal.SIGKILL)

    job = wait_finished(job, timeout=30)
    assert job.status == JobStatus.FAILED
    assert "killed (SIGKILL)" in job.error


def wait_until_metrics(job, count, timeout=60):
    import time

    deadline = time.monotonic() + timeout
    while job.metrics.count() < count:
        assert time.monotonic() < deadline, "no metrics arrived"
        time.sleep(0.2)


def test_decrypted_training_data_is_private_while_the_job_runs_and_gone_after_a_cancel(
    celery_worker, engineer, project, tiny_base_model, data_files
):
    with open(data_files["sft_train"], "rb") as handle:
        stored = services.training_file_store(project=project, upload=handle, name="t.jsonl")
    job = services.training_job_create(
        actor=engineer,
        project=project,
        name="private",
        kind="sft",
        method="lora",
        base_model=tiny_base_model,
        values={**QUICK, "max_steps": 100000, "save_steps": 1000},
        train_file=stored["path"],
    )
    job = wait_for(job, JobStatus.RUNNING)
    folder = job_data_dir(job)

    assert private_modes(folder) == (0o700, {0o600})
    assert (folder / "train.jsonl").read_bytes() == data_files["sft_train"].read_bytes()
    services.training_job_cancel(actor=engineer, job=job)
    job = wait_finished(job, timeout=30)
    assert job.status == JobStatus.CANCELLED
    assert not folder.exists()


def test_decrypted_training_data_is_deleted_after_a_failed_job(
    celery_worker, engineer, project, tiny_base_model, tmp_path
):
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"not": "a training row"}\n' * 8)
    job = services.training_job_create(
        actor=engineer,
        project=project,
        name="broken",
        kind="sft",
        method="lora",
        base_model=tiny_base_model,
        values=dict(QUICK),
        train_file=str(broken),
    )

    job = wait_finished(job)

    assert job.status == JobStatus.FAILED
    assert not job_data_dir(job).exists()
    spec = json.loads((job_data_dir(job).parent / "spec.json").read_text())
    assert spec["train_file"] == str(job_data_dir(job) / "train.jsonl")  # the runner's copy


def test_decrypted_training_data_is_deleted_after_a_successful_job(
    celery_worker, engineer, project, tiny_base_model, data_files
):
    job = _sft(engineer, project, tiny_base_model, data_files, max_steps=2, save_steps=2)

    job = wait_finished(job)

    assert job.status == JobStatus.SUCCEEDED, job.error
    assert not job_data_dir(job).exists()
    spec = json.loads((job_data_dir(job).parent / "spec.json").read_text())
    assert spec["train_file"] == str(job_data_dir(job) / "train.jsonl")
