"""Training speed: the portal's SFT job against TRL called directly (tokens/s), and the
latency from submit to the first optimizer step on the packaged default model."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.models import JobStatus
from tests.training.conftest import sft_rows
from training import services
from training.models import TrainingJob
from training.services.execution import first_step_latency, training_job_execute

pytestmark = pytest.mark.django_db(transaction=True)

SETTINGS = {
    "max_steps": 8,
    "per_device_train_batch_size": 4,
    "gradient_accumulation_steps": 1,
    "learning_rate": 2e-4,
    "max_length": 128,
    "logging_steps": 1,
    "save_steps": 1000,
    "warmup_ratio": 0.0,
    "lr_scheduler_type": "constant",
    "lora_r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.0,
    "lora_target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "seed": 0,
}

DIRECT = """
import json, sys, time
from datasets import Dataset
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer
base, data, out, s = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
rows = [{"messages": json.loads(l)["messages"]} for l in open(data)]
tok = AutoTokenizer.from_pretrained(base)
model = AutoModelForCausalLM.from_pretrained(base)
model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=s["lora_r"],
    lora_alpha=s["lora_alpha"], lora_dropout=s["lora_dropout"],
    target_modules=s["lora_target_modules"]))
args = SFTConfig(output_dir=out, max_steps=s["max_steps"], learning_rate=s["learning_rate"],
    per_device_train_batch_size=s["per_device_train_batch_size"], max_length=s["max_length"],
    logging_steps=1, save_steps=s["save_steps"], lr_scheduler_type="constant", seed=0,
    report_to="none", include_num_input_tokens_seen="all", disable_tqdm=True,
    dataset_num_proc=None, bf16=False, gradient_checkpointing=False, optim="adamw_torch",
    logging_first_step=True, dataloader_num_workers=0)
trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
    processing_class=tok)
result = trainer.train()
print(json.dumps({"tokens": trainer.state.num_input_tokens_seen,
    "runtime": result.metrics["train_runtime"]}))
"""


@pytest.fixture
def default_model(db):
    return services.base_model_ensure_default()


@pytest.fixture
def bench_data(tmp_path) -> Path:
    path = tmp_path / "sft.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in sft_rows(64)))
    return path


def _portal_tokens_per_second(job: TrainingJob) -> float:
    final = job.metrics.filter(values__has_key="train_runtime").order_by("-id").first()
    return final.values["num_input_tokens_seen"] / final.values["train_runtime"]


def test_sft_overhead_ratio(default_model, bench_data, tmp_path, engineer, project, report):
    direct = subprocess.run(  # noqa: S603 - our own script
        [
            sys.executable,
            "-c",
            DIRECT,
            default_model.path,
            str(bench_data),
            str(tmp_path / "direct"),
            json.dumps(SETTINGS),
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},  # as the portal's runner has
    )
    figures = json.loads(direct.stdout.strip().splitlines()[-1])
    direct_tps = figures["tokens"] / figures["runtime"]
    job = services.training_job_create(
        actor=engineer,
        project=project,
        name="bench",
        kind="sft",
        method="lora",
        base_model=default_model,
        values=SETTINGS,
        train_file=str(bench_data),
    )
    TrainingJob.objects.filter(pk=job.pk).update(status=JobStatus.QUEUED)
    training_job_execute(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.error
    portal_tps = _portal_tokens_per_second(job)

    ratio = portal_tps / direct_tps
    report("sft_direct_tokens_per_s", direct_tps, "tokens/s")
    report("sft_portal_tokens_per_s", portal_tps, "tokens/s")
    report("sft_overhead_ratio", ratio, "x")
    assert ratio >= 0.95


def test_queue_to_first_step_s(celery_worker, default_model, bench_data, engineer, project, report):
    started = time.monotonic()
    job = services.training_job_create(
        actor=engineer,
        project=project,
        name="first-step",
        kind="sft",
        method="lora",
        base_model=default_model,
        values={**SETTINGS, "max_steps": 2},
        train_file=str(bench_data),
    )
    while job.status not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED):
        assert time.monotonic() - started < 300, "the job did not finish"
        time.sleep(0.2)
        job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.error

    latency = first_step_latency(job)
    report("queue_to_first_step_s", latency, "s")
    assert latency <= 60
