import json
import time
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from core.models import JobStatus
from evaluation import services as evaluation_services
from evaluation.models import GenerationJob
from tests.training.conftest import QUICK, wait_finished
from training import services
from training.models import ModelVersion
from training.selectors.lineage import lineage_section
from training.services.compression import compression_job_create

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.celery]

PROMPTS = ["repeat cat", "repeat dog", "repeat sun", "repeat red", "say blue", "say fish"]


def _lora_version(engineer, project, base, files) -> ModelVersion:
    job = services.training_job_create(
        actor=engineer,
        project=project,
        name="sft-lora",
        kind="sft",
        method="lora",
        base_model=base,
        values=QUICK,
        train_file=str(files["sft_train"]),
    )
    job = wait_finished(job)
    assert job.status == JobStatus.SUCCEEDED, job.error
    return ModelVersion.objects.get(job=job)


def _child(job) -> ModelVersion:
    job = wait_finished(job, timeout=240)
    assert job.status == JobStatus.SUCCEEDED, job.error
    return ModelVersion.objects.get(job=job)


def _wait_gate(version: ModelVersion, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        version.refresh_from_db()
        if "compression_gate" in version.metrics:
            return version.metrics["compression_gate"]
        time.sleep(0.5)
    raise AssertionError(f"no gate recorded on {version}")


def test_merged_child_gives_the_adapters_logits(
    celery_worker, engineer, project, tiny_base_model, data_files
):
    parent = _lora_version(engineer, project, tiny_base_model, data_files)

    child = _child(compression_job_create(actor=engineer, version=parent, kind="merge"))

    assert child.kind == ModelVersion.Kind.FULL
    assert child.parent_id == parent.pk
    assert child.task == parent.task
    assert "model.safetensors" in child.checkpoint_sha256
    tokenizer = AutoTokenizer.from_pretrained(child.path)
    enc = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    base = AutoModelForCausalLM.from_pretrained(tiny_base_model.path, dtype=torch.float32)
    adapted = PeftModel.from_pretrained(base, parent.path).eval()
    merged = AutoModelForCausalLM.from_pretrained(child.path, dtype=torch.float32).eval()
    with torch.no_grad():
        gap = (adapted(**enc).logits - merged(**enc).logits).abs().max().item()
    assert gap < 1e-4
    assert child.job.result["metrics"]["merge_max_logit_diff"] < 1e-4
    figures = child.metrics["compression"]
    assert figures["kind"] == "merge"
    assert figures["child"]["tokens_per_second"] > 0
    assert figures["child"]["cost_per_million_tokens"] > 0
    # The parent serves base + adapter; the merged child only its own weights.
    assert figures["child"]["size_bytes"] < figures["parent"]["size_bytes"]
    assert _wait_gate(child)["status"] == "not_evaluated"  # the parent answered no prompt set


def test_quantized_child_is_smaller_and_gated_against_its_parent(
    celery_worker, engineer, project, tiny_base_model, data_files
):
    parent = _lora_version(engineer, project, tiny_base_model, data_files)
    prompt_set = evaluation_services.prompt_set_create(
        actor=engineer,
        project=project,
        name="repeat",
        rows=[{"prompt": p, "reference": p.split()[-1] * 2} for p in PROMPTS],
    )
    contestant = evaluation_services.contestant_create(
        actor=engineer, project=project, label="", model_version=parent
    )
    generation = evaluation_services.generation_job_start(
        actor=engineer, contestant=contestant, prompt_set=prompt_set, max_new_tokens=8
    )
    deadline = time.monotonic() + 120
    while generation.status != GenerationJob.Status.SUCCEEDED and time.monotonic() < deadline:
        time.sleep(0.3)
        generation.refresh_from_db()
    assert generation.status == GenerationJob.Status.SUCCEEDED, generation.error

    job = compression_job_create(
        actor=engineer, version=parent, kind="quantize", gate_tolerance=0.1
    )
    child = _child(job)
    gate = _wait_gate(child)

    assert child.parent_id == parent.pk
    assert child.job.config["quantization"] == "int8_weight_only"
    config = json.loads((Path(child.path) / "config.json").read_text())
    assert config["quantization_config"]["quant_method"] == "torchao"
    figures = child.metrics["compression"]
    assert figures["child"]["size_bytes"] < figures["parent"]["size_bytes"]
    assert figures["ratios"]["size_bytes"] < 0.8
    assert gate["status"] in ("passed", "failed")
    assert gate["tolerance"] == 0.1
    assert gate["prompts"] == len(PROMPTS)
    assert gate["passed"] == (gate["p_value"] >= gate["alpha"])
    assert gate["interval"][0] <= gate["child"] - gate["parent"] <= gate["interval"][1]
    assert gate["prompt_sets"][0]["prompt_set"] == prompt_set.pk
    assert GenerationJob.objects.filter(
        contestant__model_version=child, status=GenerationJob.Status.SUCCEEDED
    ).exists()

    dossier = lineage_section(version=child)
    assert dossier.version["compression"]["child"]["size_bytes"] == figures["child"]["size_bytes"]
    assert dossier.version["compression_gate"]["status"] == gate["status"]
    assert parent.pk in dossier.version_ids


def test_distilled_student_is_trained_on_the_teachers_answers(
    celery_worker, engineer, project, tiny_base_model, data_files, tmp_path
):
    teacher = _lora_version(engineer, project, tiny_base_model, data_files)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    with open(prompts, "rb") as handle:
        stored = services.training_file_store(project=project, upload=handle, name="p.jsonl")

    job = compression_job_create(
        actor=engineer,
        version=teacher,
        kind="distill",
        method="full",
        prompts_file=stored["path"],
        values={**QUICK, "max_steps": 4, "per_device_train_batch_size": 2, "max_new_tokens": 8},
    )
    child = _child(job)

    assert child.parent_id == teacher.pk
    assert child.kind == ModelVersion.Kind.FULL
    result = child.job.result
    assert result["distill"] == {
        "method": "sequence",
        "prompts": len(PROMPTS),
        "answers_sha256": result["distill"]["answers_sha256"],
    }
    answers = Path(child.job.workdir) / "teacher_answers.jsonl"
    rows = [json.loads(line) for line in answers.read_text().splitlines()]
    assert [r["messages"][0]["content"] for r in rows] == PROMPTS
    assert all(r["messages"][-1]["role"] == "assistant" for r in rows)
    assert any("loss" in m.values for m in child.job.metrics.all())
    assert child.metrics["compression"]["kind"] == "distill"
    assert lineage_section(version=child).version["compression"]["kind"] == "distill"
    gate = _wait_gate(child)
    assert gate["status"] == "not_evaluated"


def test_gkd_distills_a_lora_student_against_the_teacher(
    celery_worker, engineer, project, tiny_base_model, data_files, tmp_path
):
    teacher = _lora_version(engineer, project, tiny_base_model, data_files)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"messages": [{"role": "user", "content": p}]}) + "\n" for p in PROMPTS)
    )
    with open(prompts, "rb") as handle:
        stored = services.training_file_store(project=project, upload=handle, name="p.jsonl")

    job = compression_job_create(
        actor=engineer,
        version=teacher,
        kind="distill",
        method="lora",
        distill_method="gkd",
        prompts_file=stored["path"],
        values={**QUICK, "max_steps": 2, "per_device_train_batch_size": 2, "max_new_tokens": 6},
    )
    child = _child(job)

    assert child.kind == ModelVersion.Kind.ADAPTER
    assert child.parent_id == teacher.pk
    assert child.job.result["distill"]["method"] == "gkd"
    assert any("loss" in m.values for m in child.job.metrics.all())
    assert child.metrics["compression"]["child"]["peak_memory_bytes"] > 0
    assert _wait_gate(child)["status"] == "not_evaluated"
