"""Multi-process training: the strategies a job can ask for, the accelerate (and DeepSpeed)
configuration each one writes, the command that launches the runner with it, and the checks
that refuse a job the worker's devices cannot run.

Plain Python like training/presets.py: the service resolves a job's `launch` record once, at
creation, and stores it in the job's config, so the dossier shows the exact YAML and JSON the
worker wrote and `accelerate launch` read.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

STRATEGIES: dict[str, str] = {
    "ddp": "Data parallel (DDP): every process holds the whole model and trains on its own "
    "slice of each batch; gradients are averaged. On a CPU worker it runs over gloo.",
    "fsdp": "FSDP: parameters, gradients and optimizer state sharded across the GPUs.",
    "zero2": "DeepSpeed ZeRO stage 2: optimizer state and gradients sharded across the GPUs.",
    "zero3": "DeepSpeed ZeRO stage 3: parameters too; the largest models per GPU.",
}
GPU_ONLY_STRATEGIES = ("fsdp", "zero2", "zero3")
ACCELERATE_CONFIG_FILE = "accelerate_config.yaml"
DEEPSPEED_CONFIG_FILE = "deepspeed_config.json"


def visible_gpus() -> int:
    """CUDA devices this process may use: CUDA_VISIBLE_DEVICES when set, else nvidia-smi's
    count (no torch import: the web process stays light)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    smi = shutil.which("nvidia-smi")
    if not smi:
        return 0
    try:
        out = subprocess.run(  # noqa: S603 - fixed argv
            [smi, "-L"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def free_port() -> int:
    """A TCP port free now on this machine, for the processes' rendezvous."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def mixed_precision(precision: str, *, gpus: int) -> str:
    """accelerate's `mixed_precision` for a job's `precision` setting (CPU trains in fp32)."""
    if gpus == 0 or precision == "fp32":
        return "no"
    return "bf16" if precision == "auto" else precision


def deepspeed_config(stage: int, *, gradient_checkpointing: bool) -> dict[str, Any]:
    """A ZeRO config whose sizes and precision stay "auto": the trainer fills them from the
    job's settings, so the JSON and the job can never disagree."""
    zero: dict[str, Any] = {
        "stage": stage,
        "overlap_comm": True,
        "contiguous_gradients": True,
        "reduce_bucket_size": "auto",
    }
    if stage == 3:
        zero.update(
            stage3_prefetch_bucket_size="auto",
            stage3_param_persistence_threshold="auto",
            # One safetensors file at the end, as the registry expects.
            stage3_gather_16bit_weights_on_model_save=True,
        )
    else:
        zero.update(allgather_partitions=True, reduce_scatter=True, allgather_bucket_size=5e8)
    return {
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
        "zero_optimization": zero,
        "activation_checkpointing": {"partition_activations": gradient_checkpointing},
    }


def accelerate_config(
    strategy: str,
    *,
    num_processes: int,
    gpus: int,
    precision: str,
    gradient_checkpointing: bool,
    deepspeed_file: str = DEEPSPEED_CONFIG_FILE,
) -> dict[str, Any]:
    """The `accelerate launch --config_file` content for one machine. Multi-node adds
    num_machines, machine_rank, main_process_ip and main_process_port (docker/compose.yaml)."""
    cpu = gpus == 0
    config: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "debug": False,
        "distributed_type": "MULTI_CPU" if cpu else "MULTI_GPU",
        "mixed_precision": mixed_precision(precision, gpus=gpus),
        "num_machines": 1,
        "machine_rank": 0,
        "num_processes": num_processes,
        "rdzv_backend": "static",
        "same_network": True,
        "use_cpu": cpu,
        "main_training_function": "main",
        "downcast_bf16": "no",
    }
    if not cpu:
        config["gpu_ids"] = "all"
    if strategy == "fsdp":
        config["distributed_type"] = "FSDP"
        config["fsdp_config"] = {
            "fsdp_version": 1,
            "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "fsdp_backward_prefetch": "BACKWARD_PRE",
            "fsdp_sharding_strategy": "FULL_SHARD",
            # The final model is saved whole, so the registry hashes ordinary weights.
            "fsdp_state_dict_type": "FULL_STATE_DICT",
            "fsdp_offload_params": False,
            "fsdp_cpu_ram_efficient_loading": True,
            "fsdp_sync_module_states": True,
            "fsdp_use_orig_params": True,  # PEFT freezes part of each wrapped module
            "fsdp_activation_checkpointing": gradient_checkpointing,
        }
    elif strategy in ("zero2", "zero3"):
        config["distributed_type"] = "DEEPSPEED"
        # With a DeepSpeed file, accelerate refuses a precision of its own: the file's
        # "auto" takes the job's precision from the trainer.
        del config["mixed_precision"]
        config["deepspeed_config"] = {
            "deepspeed_config_file": deepspeed_file,
            "zero3_init_flag": strategy == "zero3",
        }
    return config


def launch_record(config: dict[str, Any], *, gpus: int) -> dict[str, Any]:
    """What a job with resolved settings `config` records about how it runs: world size,
    strategy, backend, and the configuration files' content (None for one process)."""
    processes = int(config["num_processes"])
    strategy = config["distributed_strategy"]
    record: dict[str, Any] = {
        "world_size": processes,
        "strategy": strategy if processes > 1 else "single",
        "device": "gpu" if gpus else "cpu",
        "backend": ("nccl" if gpus else "gloo") if processes > 1 else None,
        "accelerate_config": None,
        "deepspeed_config": None,
    }
    if processes > 1:
        record["accelerate_config"] = accelerate_config(
            strategy,
            num_processes=processes,
            gpus=gpus,
            precision=config["precision"],
            gradient_checkpointing=bool(config["gradient_checkpointing"]),
        )
        if strategy in ("zero2", "zero3"):
            record["deepspeed_config"] = deepspeed_config(
                int(strategy[-1]), gradient_checkpointing=bool(config["gradient_checkpointing"])
            )
    return record


def write_launch_files(record: dict[str, Any], folder: Path) -> dict[str, str]:
    """Write the record's accelerate YAML (and DeepSpeed JSON) into `folder`; their paths.
    The YAML names the DeepSpeed file by its full path there."""
    paths: dict[str, str] = {}
    accelerate = record.get("accelerate_config")
    if not accelerate:
        return paths
    accelerate = dict(accelerate)
    if record.get("deepspeed_config"):
        ds_path = folder / DEEPSPEED_CONFIG_FILE
        ds_path.write_text(json.dumps(record["deepspeed_config"], indent=2))
        accelerate["deepspeed_config"] = {
            **accelerate["deepspeed_config"],
            "deepspeed_config_file": str(ds_path),
        }
        paths["deepspeed_config"] = str(ds_path)
    yaml_path = folder / ACCELERATE_CONFIG_FILE
    yaml_path.write_text(yaml.safe_dump(accelerate, sort_keys=True))
    paths["accelerate_config"] = str(yaml_path)
    return paths


def launch_command(
    runner_args: list[str], record: dict[str, Any], paths: dict[str, str], *, port: int
) -> list[str]:
    """The argv that starts the runner in `record["world_size"]` processes.

    accelerate 1.15 starts a single process for `--cpu` unless an MPI host file is given, so
    CPU data parallel goes through torchrun (torch.distributed.run), which sets the same
    RANK / WORLD_SIZE / MASTER_* variables accelerate's own GPU launcher passes on; the
    trainer then joins a gloo group. GPUs go through `accelerate launch` with the YAML."""
    processes = int(record.get("world_size") or 1)
    if processes <= 1:
        return [sys.executable, "-m", "training.runner", *runner_args]
    if record.get("device") == "cpu":
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nnodes",
            "1",
            "--nproc_per_node",
            str(processes),
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(port),
            "-m",
            "training.runner",
            *runner_args,
        ]
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        paths["accelerate_config"],
        "--main_process_port",
        str(port),
        "-m",
        "training.runner",
        *runner_args,
    ]


def launch_env(record: dict[str, Any]) -> dict[str, str]:
    """Environment for the launcher: on a CPU, each process gets its share of the cores
    (torchrun would otherwise pin every process to one thread)."""
    processes = int(record.get("world_size") or 1)
    if processes <= 1 or record.get("device") != "cpu" or "OMP_NUM_THREADS" in os.environ:
        return {}
    return {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // processes))}


def check_launch(config: dict[str, Any], *, gpus: int) -> dict[str, str]:
    """Problems (per setting) of a job's resolved settings on workers with `gpus` GPUs each
    (0: CPU only). Call after `resolve_processes`."""
    errors: dict[str, str] = {}
    precision = config["precision"]
    if gpus == 0 and precision in ("bf16", "fp16"):
        errors["precision"] = (
            f"{precision} needs a GPU; the training workers have none, so jobs train in fp32 "
            "there. Choose auto or fp32."
        )
    processes = int(config["num_processes"])
    strategy = config["distributed_strategy"]
    if gpus == 0 and strategy in GPU_ONLY_STRATEGIES:
        errors["distributed_strategy"] = (
            f"{strategy} shards across GPUs; the training workers have none. Choose ddp."
        )
    if gpus and processes > gpus:
        errors["num_processes"] = (
            f"{processes} processes but the training workers have {gpus} GPU"
            f"{'s' if gpus != 1 else ''}: one process per GPU."
        )
    if processes > 1 and config["kind"] == "grpo":
        errors["num_processes"] = "GRPO jobs run in one process for now."
    wanted = int(config.get("effective_batch_size") or 0)
    per_step = int(config["per_device_train_batch_size"]) * processes
    if wanted and wanted % per_step:
        errors["effective_batch_size"] = (
            f"{wanted} is not a multiple of batch size x processes "
            f"({config['per_device_train_batch_size']} x {processes} = {per_step})."
        )
    return errors


def resolve_processes(config: dict[str, Any], *, gpus: int) -> dict[str, Any]:
    """`config` with `num_processes` 0 replaced by one per GPU (1 on a CPU worker) and the
    effective batch size filled in: given, it sets the accumulation steps; else it is
    computed from them."""
    config = dict(config)
    processes = int(config["num_processes"]) or max(gpus, 1)
    config["num_processes"] = processes
    per_step = int(config["per_device_train_batch_size"]) * processes
    wanted = int(config.get("effective_batch_size") or 0)
    if wanted and wanted % per_step:
        return config  # check_launch names it
    if wanted:
        config["gradient_accumulation_steps"] = wanted // per_step
    config["effective_batch_size"] = per_step * int(config["gradient_accumulation_steps"])
    return config
