"""Data parallel on a CPU: the step time of a 2-process DDP job (gloo) over a 1-process job at
the same per-process batch, on the tiny model. Each process does the same work per step, so
1.0 would be perfect scaling (twice the rows per step at the same pace); the excess is the
gradient all-reduce and two processes sharing the machine's cores. Every process gets one
thread: with torch's default (a thread per core) a single process on a busy 2-core machine
spins its threads against each other and the ratio measures that instead."""

import json
from pathlib import Path

import pytest

from core.models import JobStatus
from tests.training.conftest import sft_rows
from training import services
from training.models import TrainingJob
from training.services.execution import training_job_execute

pytestmark = pytest.mark.django_db(transaction=True)

SETTINGS = {
    "max_steps": 12,
    "per_device_train_batch_size": 4,
    "gradient_accumulation_steps": 1,
    "learning_rate": 2e-4,
    "max_length": 64,
    "logging_steps": 1,
    "save_steps": 1000,
    "warmup_ratio": 0.0,
    "lora_r": 8,
    "lora_target_modules": ["q_proj", "v_proj"],
    "seed": 0,
}


def _step_seconds(job: TrainingJob) -> float:
    final = job.metrics.filter(values__has_key="train_runtime").order_by("-id").first()
    return final.values["train_runtime"] / job.result["global_step"]


def _run(engineer, project, base, data: Path, processes: int) -> TrainingJob:
    job = services.training_job_create(
        actor=engineer,
        project=project,
        name=f"bench-{processes}proc",
        kind="sft",
        method="lora",
        base_model=base,
        values={**SETTINGS, "num_processes": processes, "distributed_strategy": "ddp"},
        train_file=str(data),
    )
    training_job_execute(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.result["world_size"] == processes
    return job


def test_ddp_two_process_step_ratio(
    engineer, project, tiny_model_dir, tmp_path, settings, report, capsys, monkeypatch
):
    settings.TRAINING_WORKER_GPUS = 0
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    base = services.base_model_register(
        actor=None, project=None, name="tiny-llama", source="local", path=str(tiny_model_dir)
    )
    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in sft_rows(128)))

    single = _run(engineer, project, base, data, 1)
    double = _run(engineer, project, base, data, 2)

    ratio = _step_seconds(double) / _step_seconds(single)
    report("ddp_2proc_step_ratio", ratio, "x")
    with capsys.disabled():
        print(f"\nddp_2proc_step_ratio: {ratio:.3f} x")
        print(f"ddp_1proc_step_s: {_step_seconds(single):.4f} s")
        print(f"ddp_2proc_step_s: {_step_seconds(double):.4f} s")
    assert ratio > 0
