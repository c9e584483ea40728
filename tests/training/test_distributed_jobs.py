import io
import json
from pathlib import Path

import pytest
from django.core.management import call_command

from core.models import JobStatus
from tests.training.conftest import QUICK, wait_finished
from training import services
from training.models import ModelVersion, TrainingJob
from training.selectors.lineage import lineage_section

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.celery]

# 6 optimizer steps of 4 rows each: one process of 4, or two of 2 (the same rows per step).
STEPS = {**QUICK, "max_steps": 6, "save_steps": 3, "seed": 7}


def _sft(engineer, project, base, files, **values):
    return services.training_job_create(
        actor=engineer,
        project=project,
        name=f"sft-{values.get('num_processes', 1)}proc",
        kind="sft",
        method="lora",
        base_model=base,
        values={**STEPS, **values},
        train_file=str(files["sft_train"]),
        eval_file=str(files["sft_val"]),
    )


def _losses(job: TrainingJob) -> list[float]:
    return [m.values["loss"] for m in job.metrics.order_by("step") if "loss" in m.values]


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_two_process_ddp_on_cpu_trains_both_ranks_and_matches_one_process(
    celery_worker, engineer, project, tiny_base_model, data_files, settings
):
    settings.TRAINING_WORKER_GPUS = 0
    single = _sft(
        engineer,
        project,
        tiny_base_model,
        data_files,
        num_processes=1,
        per_device_train_batch_size=4,
    )
    single = wait_finished(single, timeout=300)
    ddp = _sft(
        engineer,
        project,
        tiny_base_model,
        data_files,
        num_processes=2,
        per_device_train_batch_size=2,
    )
    ddp = wait_finished(ddp, timeout=400)

    assert single.status == JobStatus.SUCCEEDED, single.error
    assert ddp.status == JobStatus.SUCCEEDED, ddp.error
    assert ddp.config["effective_batch_size"] == single.config["effective_batch_size"] == 4
    assert ddp.config["launch"]["world_size"] == 2
    assert ddp.config["launch"]["backend"] == "gloo"
    assert ddp.result["world_size"] == 2
    log = list(ddp.log_lines.values_list("message", flat=True))
    assert any("world size 2 (ddp over gloo)" in line for line in log)
    assert any(line.startswith("World size 2: rank 0 of 2") for line in log)
    assert any(line.startswith("Rank 1 of 2 finished: 6 optimizer steps") for line in log)
    workdir = Path(ddp.workdir)
    rank1 = _events(workdir / "events.rank1.jsonl")
    assert [e["step"] for e in rank1 if e["type"] == "metric" and "loss" in e["values"]]
    assert {e["type"] for e in _events(workdir / "events.jsonl")} >= {"metric", "checkpoint"}
    # Rank 1's own checkpoint and metric events never reached the job.
    assert sorted(ddp.checkpoints.values_list("step", flat=True)) == [3, 6]
    assert ddp.metrics.filter(step=6).count() == single.metrics.filter(step=6).count()
    assert ModelVersion.objects.filter(job=ddp).count() == 1
    assert (workdir / "accelerate_config.yaml").exists()
    single_losses, ddp_losses = _losses(single), _losses(ddp)
    assert len(ddp_losses) == len(single_losses) == 6
    assert ddp_losses[-1] == pytest.approx(single_losses[-1], rel=0.05)
    assert ddp.result["train_metrics"]["train_loss"] == pytest.approx(
        single.result["train_metrics"]["train_loss"], rel=0.05
    )
    dossier_job = next(j for j in lineage_section(version=ddp.model_version).jobs)
    assert dossier_job["launch"]["accelerate_config"]["distributed_type"] == "MULTI_CPU"
    assert dossier_job["launch"]["world_size"] == 2


def test_launch_job_prints_the_world_size_when_the_job_starts(
    celery_worker, engineer, project, tiny_base_model, data_files, tmp_path, settings
):
    settings.TRAINING_WORKER_GPUS = 0
    config = tmp_path / "job.yaml"
    config.write_text(
        f"project: {project.slug}\nuser: {engineer.username}\nbase_model: tiny-llama\n"
        f"kind: sft\nmethod: lora\ntrain_file: {data_files['sft_train']}\n"
        "hyperparameters: {max_steps: 2, max_length: 64, per_device_train_batch_size: 2,"
        " lora_target_modules: [q_proj], num_processes: 2, distributed_strategy: ddp}\n"
    )
    out = io.StringIO()

    call_command("launch_job", str(config), "--timeout", "400", stdout=out)

    printed = out.getvalue()
    assert "world size 2 (ddp over gloo)" in printed
    assert printed.index("world size 2") < printed.index("status: succeeded")
    assert TrainingJob.objects.get().result["world_size"] == 2
