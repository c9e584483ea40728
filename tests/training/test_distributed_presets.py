import json

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import DeepSpeedPlugin
from accelerate.utils import constants as accelerate_constants
from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env
from django.core.exceptions import ValidationError
from django.urls import reverse
from trl import SFTConfig

from tests.training.conftest import QUICK
from training import distributed, presets, services
from training.ml import methods
from training.ml.train import _common_args
from training.models import TrainingJob


def _config(gpus: int, **values):
    config = presets.resolve_config(kind="sft", method="lora", values=values)
    config = distributed.resolve_processes(config, gpus=gpus)
    return config, distributed.launch_record(config, gpus=gpus)


def _launch_args(yaml_path: str):
    """accelerate launch's own reading of a config file: the parser, then its validation,
    which merges the file into the arguments and refuses what contradicts itself."""
    args = launch_command_parser().parse_args(
        ["--config_file", yaml_path, "-m", "training.runner", "train", "spec.json"]
    )
    return _validate_launch_command(args)


def test_cpu_ddp_preset_is_a_multi_cpu_config_accelerate_loads(tmp_path):
    config, record = _config(0, num_processes=2)

    paths = distributed.write_launch_files(record, tmp_path)
    loaded = load_config_from_file(paths["accelerate_config"])

    assert loaded.distributed_type == "MULTI_CPU"
    assert loaded.use_cpu is True
    assert loaded.num_processes == 2
    assert loaded.mixed_precision == "no"
    assert record["backend"] == "gloo"
    assert "deepspeed_config" not in paths


def test_gpu_ddp_preset_launches_as_multi_gpu(tmp_path, monkeypatch):
    _, record = _config(4, num_processes=4, precision="bf16")
    paths = distributed.write_launch_files(record, tmp_path)

    args, defaults, _ = _launch_args(paths["accelerate_config"])
    env = prepare_multi_gpu_env(args)

    assert defaults.distributed_type == "MULTI_GPU"
    assert args.multi_gpu is True
    assert args.num_processes == 4
    assert env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    assert record["backend"] == "nccl"


def test_fsdp_preset_becomes_fsdp_settings_accelerate_knows(tmp_path):
    _, record = _config(2, num_processes=2, distributed_strategy="fsdp")
    paths = distributed.write_launch_files(record, tmp_path)

    args, defaults, _ = _launch_args(paths["accelerate_config"])
    env = prepare_multi_gpu_env(args)

    assert defaults.distributed_type == "FSDP"
    assert args.use_fsdp is True
    assert env["ACCELERATE_USE_FSDP"] == "true"
    # FullyShardedDataParallelPlugin needs a GPU to build; its accepted values are these.
    assert env["FSDP_SHARDING_STRATEGY"] in accelerate_constants.FSDP_SHARDING_STRATEGY
    assert env["FSDP_AUTO_WRAP_POLICY"] in accelerate_constants.FSDP_AUTO_WRAP_POLICY
    assert env["FSDP_BACKWARD_PREFETCH"] in accelerate_constants.FSDP_BACKWARD_PREFETCH
    assert env["FSDP_STATE_DICT_TYPE"] == "FULL_STATE_DICT"
    assert env["FSDP_USE_ORIG_PARAMS"] == "true"


@pytest.mark.parametrize(("strategy", "stage"), [("zero2", 2), ("zero3", 3)])
def test_deepspeed_presets_load_in_accelerate_deepspeed_plugin(
    tmp_path, monkeypatch, strategy, stage
):
    _, record = _config(2, num_processes=2, distributed_strategy=strategy, precision="bf16")
    paths = distributed.write_launch_files(record, tmp_path)

    args, defaults, precision_from_file = _launch_args(paths["accelerate_config"])
    # What `accelerate launch` passes to the DeepSpeed processes, as it computes it.
    args.deepspeed_fields_from_accelerate_config = ",".join(
        [*defaults.deepspeed_config, *(["mixed_precision"] if precision_from_file else [])]
    )
    _, env = prepare_deepspeed_cmd_env(args)
    for name, value in env.items():
        if name.startswith("ACCELERATE_"):
            monkeypatch.setenv(name, value)
    plugin = DeepSpeedPlugin()

    assert defaults.distributed_type == "DEEPSPEED"
    assert plugin.zero_stage == stage
    assert plugin.hf_ds_config.is_zero3() is (stage == 3)
    assert plugin.zero3_init_flag is (stage == 3)
    assert (
        json.loads((tmp_path / "deepspeed_config.json").read_text()) == (record["deepspeed_config"])
    )


def test_one_process_writes_no_launch_files(tmp_path):
    config, record = _config(0)

    assert config["num_processes"] == 1
    assert record["world_size"] == 1
    assert distributed.write_launch_files(record, tmp_path) == {}
    assert distributed.launch_command(["train", "s.json"], record, {}, port=1)[1:] == [
        "-m",
        "training.runner",
        "train",
        "s.json",
    ]


def test_num_processes_zero_means_one_per_gpu():
    config, record = _config(4)

    assert config["num_processes"] == 4
    assert record["strategy"] == "ddp"


def test_effective_batch_size_sets_the_accumulation_steps():
    config, _ = _config(0, num_processes=2, per_device_train_batch_size=2, effective_batch_size=16)

    assert config["gradient_accumulation_steps"] == 4
    assert config["effective_batch_size"] == 16


def test_memory_estimate_counts_checkpointing_and_sharding():
    common = {
        "trainable": 1000,
        "total": 1000,
        "tokens": 10,
        "bytes_per_param": 2,
        "batch_tokens": 512,
        "hidden_size": 64,
        "layers": 8,
    }
    plain = methods.estimate(**common)
    checkpointed = methods.estimate(**common, gradient_checkpointing=True)
    ddp = methods.estimate(**common, world_size=4, strategy="ddp")
    zero3 = methods.estimate(**common, world_size=4, strategy="zero3")

    assert (
        checkpointed["memory_breakdown"]["activations"] < (plain["memory_breakdown"]["activations"])
    )
    assert ddp["memory_bytes"] == plain["memory_bytes"]
    assert zero3["memory_breakdown"]["weights"] == plain["memory_breakdown"]["weights"] / 4
    assert zero3["memory_breakdown"]["gradients_and_optimizer"] == (
        plain["memory_breakdown"]["gradients_and_optimizer"] / 4
    )


@pytest.mark.django_db
def test_fp16_on_a_cpu_worker_is_refused_naming_the_field(
    engineer, project, tiny_base_model, data_files, settings
):
    settings.TRAINING_WORKER_GPUS = 0

    with pytest.raises(ValidationError) as refused:
        services.training_job_create(
            actor=engineer,
            project=project,
            name="fp16",
            kind="sft",
            method="lora",
            base_model=tiny_base_model,
            values={**QUICK, "precision": "fp16", "distributed_strategy": "zero3"},
            train_file=str(data_files["sft_train"]),
        )

    errors = refused.value.message_dict
    assert "fp16 needs a GPU" in errors["precision"][0]
    assert "zero3 shards across GPUs" in errors["distributed_strategy"][0]
    assert not TrainingJob.objects.exists()


@pytest.mark.django_db
def test_more_processes_than_gpus_is_refused(
    engineer, project, tiny_base_model, data_files, settings
):
    settings.TRAINING_WORKER_GPUS = 2

    with pytest.raises(ValidationError) as refused:
        services.training_job_create(
            actor=engineer,
            project=project,
            name="too many",
            kind="sft",
            method="lora",
            base_model=tiny_base_model,
            values={**QUICK, "num_processes": 3},
            train_file=str(data_files["sft_train"]),
        )

    assert "one process per GPU" in refused.value.message_dict["num_processes"][0]
    assert not TrainingJob.objects.exists()


@pytest.mark.django_db
def test_api_refuses_bf16_on_a_cpu_worker_in_the_precision_field(
    client, engineer, project, tiny_base_model, data_files, settings
):
    settings.TRAINING_WORKER_GPUS = 0
    client.force_login(engineer)
    with open(data_files["sft_train"], "rb") as handle:
        upload = client.post(f"/api/v1/projects/{project.pk}/fine_tuning/files/", {"file": handle})

    response = client.post(
        f"/api/v1/projects/{project.pk}/fine_tuning/jobs/",
        {
            "model": tiny_base_model.pk,
            "training_file": upload.json()["id"],
            "hyperparameters": {**QUICK, "precision": "bf16", "effective_batch_size": 7},
        },
        content_type="application/json",
    )

    assert response.status_code == 400
    body = response.json()
    assert "bf16 needs a GPU" in body["precision"][0]
    assert "not a multiple of batch size" in body["effective_batch_size"][0]
    assert not TrainingJob.objects.exists()


@pytest.mark.django_db
def test_form_refuses_fp16_on_a_cpu_worker_next_to_the_field(
    client, engineer, project, tiny_base_model, data_files, settings
):
    settings.TRAINING_WORKER_GPUS = 0
    client.force_login(engineer)

    with open(data_files["sft_train"], "rb") as train:
        response = client.post(
            reverse("training:job_new", args=[project.pk]),
            {
                "kind": "sft",
                "method": "lora",
                "base_model": tiny_base_model.pk,
                "train_file": train,
                "precision": "fp16",
                "max_length": 64,
            },
        )

    assert response.status_code == 200
    assert "fp16 needs a GPU" in response.content.decode()
    assert "fp16 needs a GPU" in response.context["form"].errors["precision"][0]
    assert not TrainingJob.objects.exists()


@pytest.mark.django_db
def test_scaling_settings_reach_the_trainer_config(
    engineer, project, tiny_base_model, data_files, settings, tmp_path
):
    settings.TRAINING_WORKER_GPUS = 0
    job = services.training_job_create(
        actor=engineer,
        project=project,
        name="scaled",
        kind="sft",
        method="lora",
        base_model=tiny_base_model,
        values={
            **QUICK,
            "per_device_train_batch_size": 2,
            "effective_batch_size": 8,
            "num_processes": 2,
            "gradient_checkpointing": True,
        },
        train_file=str(data_files["sft_train"]),
    )
    spec = {"config": job.config, "output_dir": str(tmp_path)}

    trainer_args = SFTConfig(**_common_args(spec, "fp32", has_eval=False))

    assert job.config["gradient_accumulation_steps"] == 2
    assert job.config["effective_batch_size"] == 8
    assert trainer_args.gradient_accumulation_steps == 2
    assert trainer_args.per_device_train_batch_size == 2
    assert trainer_args.gradient_checkpointing is True
    assert trainer_args.bf16 is False
    assert trainer_args.fp16 is False


@pytest.mark.django_db
def test_job_page_shows_processes_batch_precision_and_checkpointing(
    client, engineer, project, tiny_base_model, data_files, settings
):
    settings.TRAINING_WORKER_GPUS = 0
    job = services.training_job_create(
        actor=engineer,
        project=project,
        name="scaled",
        kind="sft",
        method="lora",
        base_model=tiny_base_model,
        values={
            **QUICK,
            "per_device_train_batch_size": 2,
            "gradient_accumulation_steps": 3,
            "num_processes": 2,
            "gradient_checkpointing": True,
        },
        train_file=str(data_files["sft_train"]),
    )
    client.force_login(engineer)

    response = client.get(reverse("training:job", args=[project.pk, job.pk]))

    page = " ".join(response.content.decode().split())
    assert response.status_code == 200
    assert "2 processes · ddp over gloo" in page
    assert "batch 2 per process × 3 accumulation = effective batch" in page
    assert 'data-testid="effective-batch">12<' in page
    assert "gradient checkpointing on" in page
    assert "MULTI_CPU" in page
