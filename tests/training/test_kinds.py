import io

import pytest

from core.models import JobStatus
from tests.training.conftest import QUICK
from training import services
from training.models import ModelVersion
from training.services.execution import training_job_execute

# The task body runs here (the runner is still a real child process); no broker needed.
pytestmark = pytest.mark.django_db


def _run(engineer, project, base, files, *, kind, method, data="sft", **extra):
    values = {**QUICK, **extra.pop("values", {})}
    job = services.training_job_create(
        actor=engineer,
        project=project,
        name=f"{kind}-{method}",
        kind=kind,
        method=method,
        base_model=base,
        values=values,
        train_file=str(files[f"{data}_train"]),
        eval_file=str(files[f"{data}_val"]),
        **extra,
    )
    training_job_execute(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.error
    return job


def _losses(job):
    return [m.values["loss"] for m in job.metrics.order_by("step") if "loss" in m.values]


@pytest.mark.parametrize(
    ("method", "values"),
    [
        ("partial", {"trainable_layers": 1, "learning_rate": 2e-3}),
        ("full", {"learning_rate": 2e-3}),
        ("prompt_tuning", {"learning_rate": 3e-2, "num_virtual_tokens": 4}),
    ],
)
def test_sft_methods_train_and_register_a_version(
    engineer, project, tiny_base_model, data_files, method, values
):
    job = _run(
        engineer, project, tiny_base_model, data_files, kind="sft", method=method, values=values
    )

    losses = _losses(job)
    assert losses[-1] < losses[0]
    version = ModelVersion.objects.get(job=job)
    figures = job.preflight
    if method == "prompt_tuning":
        assert version.kind == "adapter"
        assert figures["trainable_params"] == 4 * tiny_base_model.info["hidden_size"]
        assert version.metrics["sanity"]["lift"] > 0
    else:
        assert version.kind == "full"
        assert figures["trainable_params"] <= figures["total_params"]
        assert "model.safetensors" in version.checkpoint_sha256
    if method == "partial":
        assert figures["trainable_params"] < figures["total_params"]


def test_reward_model_separates_preferences_and_grpo_steps_against_it(
    engineer, project, tiny_base_model, data_files
):
    reward_job = _run(
        engineer,
        project,
        tiny_base_model,
        data_files,
        kind="reward",
        method="full",
        data="pref",
        values={"max_steps": 24, "learning_rate": 1e-3},
    )
    reward = ModelVersion.objects.get(job=reward_job)
    assert reward.task == "reward"
    assert reward.metrics["pairwise_accuracy"] >= 0.8  # chance is 0.5

    policy_job = _run(
        engineer,
        project,
        tiny_base_model,
        data_files,
        kind="grpo",
        method="lora",
        data="pref",
        reward_version=reward,
        values={
            "max_steps": 1,
            "grpo_num_generations": 2,
            "grpo_max_completion_length": 6,
            "learning_rate": 1e-3,
        },
    )

    rewards = [m.values["reward"] for m in policy_job.metrics.all() if "reward" in m.values]
    assert len(rewards) == 1
    assert policy_job.result["global_step"] == 1
    assert ModelVersion.objects.get(job=policy_job).kind == "adapter"


def test_dpo_lora_learns_to_prefer_the_chosen_answers(
    engineer, project, tiny_base_model, data_files
):
    job = _run(
        engineer,
        project,
        tiny_base_model,
        data_files,
        kind="dpo",
        method="lora",
        data="pref",
        values={"max_steps": 10, "learning_rate": 5e-3},
    )

    version = ModelVersion.objects.get(job=job)
    assert version.kind == "adapter"
    sanity = version.metrics["sanity"]
    assert sanity["metric"] == "preference_margin"
    assert sanity["tuned"]["preference_margin"] > sanity["base"]["preference_margin"]
    assert sanity["lift"] > 0
    assert any("rewards/margins" in m.values for m in job.metrics.all())


def test_a_runner_failure_on_bad_data_fails_the_job_with_the_line(
    engineer, project, tiny_base_model, tmp_path
):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{"oops": 1}\n')
    job = services.training_job_create(
        actor=engineer,
        project=project,
        name="bad",
        kind="sft",
        method="lora",
        base_model=tiny_base_model,
        values=QUICK,
        train_file=str(bad),
    )

    training_job_execute(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert "bad.jsonl line 2" in job.error
    assert not ModelVersion.objects.filter(job=job).exists()


def test_a_duplicate_delivery_changes_nothing(engineer, project, tiny_base_model, data_files):
    job = services.training_job_create(
        actor=engineer,
        project=project,
        name="dup",
        kind="sft",
        method="lora",
        base_model=tiny_base_model,
        values=QUICK,
        train_file=str(data_files["sft_train"]),
    )
    job.status = JobStatus.RUNNING
    job.save(update_fields=["status"])

    training_job_execute(job_id=job.pk)

    job.refresh_from_db()
    assert job.started_at is None
    assert not job.metrics.exists()


def test_launch_job_command_runs_a_yaml_config_and_reports_failure(
    engineer, project, tiny_base_model, data_files, tmp_path
):
    from django.core.management import CommandError, call_command

    config = tmp_path / "job.yaml"
    config.write_text(
        f"project: {project.slug}\nuser: {engineer.username}\nbase_model: tiny-llama\n"
        f"kind: sft\nmethod: lora\ntrain_file: {data_files['sft_train']}\n"
        "hyperparameters: {max_steps: 3, max_length: 64, lora_target_modules: [q_proj]}\n"
    )
    out = io.StringIO()

    call_command("launch_job", str(config), "--inline", stdout=out)

    text = out.getvalue()
    assert "status: succeeded" in text
    assert "step 3: loss=" in text
    bad = tmp_path / "bad.yaml"
    bad.write_text(config.read_text().replace("[q_proj]", "[nope]"))
    with pytest.raises(CommandError, match="nope not found"):
        call_command("launch_job", str(bad), "--inline", stdout=io.StringIO())
