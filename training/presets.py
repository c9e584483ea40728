"""Hyperparameters: defaults, named presets, help text for every field, and the validation
that runs before a job is queued (against what the registry recorded about the base model,
so the web process never loads weights).

Plain Python: the form, the API, `launch_job` and the runner all read the same table.
"""

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

KINDS = ("sft", "reward", "dpo", "grpo")
METHODS = ("full", "partial", "lora", "prompt_tuning")
SCHEDULES = ("linear", "cosine", "constant", "constant_with_warmup")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")


@dataclass(frozen=True)
class Field:
    default: Any
    help: str
    kind: type = str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()


FIELDS: dict[str, Field] = {
    "seed": Field(0, "Random seed for weights of new layers, data order and dropout.", int, 0),
    "learning_rate": Field(
        2e-4,
        "Peak step size of AdamW. LoRA and prompt tuning like 1e-4 to 1e-3; full fine-tuning "
        "1e-5 to 5e-5.",
        float,
        1e-8,
        1.0,
    ),
    "lr_scheduler_type": Field(
        "cosine", "How the learning rate decays after warmup.", str, choices=SCHEDULES
    ),
    "warmup_ratio": Field(
        0.03, "Fraction of steps spent ramping the learning rate up from zero.", float, 0, 0.5
    ),
    "num_train_epochs": Field(
        1.0, "Passes over the training split (ignored when max steps is set).", float, 0.01, 100
    ),
    "max_steps": Field(
        0, "Stop after this many optimizer steps; 0 means train for the epochs above.", int, 0
    ),
    "per_device_train_batch_size": Field(
        4, "Rows per forward pass on each GPU. Lower it if the GPU runs out of memory.", int, 1, 512
    ),
    "gradient_accumulation_steps": Field(
        1,
        "Forward passes summed before each optimizer step; effective batch = batch size x this "
        "x GPUs.",
        int,
        1,
        1024,
    ),
    "effective_batch_size": Field(
        0,
        "Rows per optimizer step over all processes (batch size x accumulation x processes); "
        "given, it sets the accumulation steps; 0 computes it from them.",
        int,
        0,
        1 << 16,
    ),
    "num_processes": Field(
        0,
        "Processes the job trains in, one per GPU; 0 means one per GPU of the worker (1 on a "
        "CPU-only worker, where 2 or more run data parallel over gloo).",
        int,
        0,
        64,
    ),
    "distributed_strategy": Field(
        "ddp",
        "How several processes share the work: ddp (each holds the whole model), fsdp, or "
        "DeepSpeed ZeRO stage 2 or 3 (zero2, zero3) which shard it across GPUs.",
        str,
        choices=("ddp", "fsdp", "zero2", "zero3"),
    ),
    "weight_decay": Field(0.0, "AdamW decoupled weight decay.", float, 0, 1),
    "optim": Field(
        "adamw_torch",
        "Optimizer (AdamW).",
        str,
        choices=("adamw_torch", "adamw_torch_fused"),
    ),
    "max_length": Field(
        512,
        "Longest sequence in tokens; longer rows are truncated. Must fit the model's context.",
        int,
        8,
    ),
    "packing": Field(False, "SFT: pack several short rows into one sequence for throughput.", bool),
    "assistant_only_loss": Field(
        False,
        "SFT on chat data: train only on the assistant's tokens, not on the user's prompt.",
        bool,
    ),
    "precision": Field(
        "auto",
        "Numeric precision on GPU (auto picks bf16 where supported); CPUs always use fp32.",
        str,
        choices=PRECISIONS,
    ),
    "gradient_checkpointing": Field(
        False, "Recompute activations in the backward pass: less memory, ~30% slower.", bool
    ),
    "logging_steps": Field(1, "Send loss and learning rate every this many steps.", int, 1),
    "eval_steps": Field(
        0,
        "Evaluate on the validation split every this many steps; 0 turns evaluation off.",
        int,
        0,
    ),
    "save_steps": Field(50, "Save a checkpoint every this many steps (and on cancel).", int, 1),
    "save_total_limit": Field(3, "Keep at most this many checkpoints on disk.", int, 1, 100),
    "early_stopping_patience": Field(
        0,
        "Stop when the validation loss has not improved for this many evaluations; 0 = never. "
        "Needs evaluation steps.",
        int,
        0,
    ),
    "lora_r": Field(16, "LoRA rank: the width of the low-rank update.", int, 1, 1024),
    "lora_alpha": Field(32, "LoRA scaling; the update is multiplied by alpha / rank.", int, 1),
    "lora_dropout": Field(0.05, "Dropout on the LoRA branch.", float, 0, 0.9),
    "lora_target_modules": Field(
        ["q_proj", "k_proj", "v_proj", "o_proj"],
        "Names of the linear layers that get adapters (e.g. q_proj, v_proj, up_proj).",
        list,
    ),
    "trainable_layers": Field(
        2, "Partial: how many of the last transformer layers to train.", int, 0
    ),
    "train_head": Field(True, "Partial: also train the output head and final norm.", bool),
    "num_virtual_tokens": Field(
        20, "Prompt tuning: learned soft tokens placed before every input.", int, 1, 512
    ),
    "dpo_beta": Field(
        0.1, "DPO: how far the policy may move from the reference (higher = closer).", float, 0
    ),
    "grpo_num_generations": Field(
        4, "GRPO: completions sampled per prompt and compared with each other.", int, 2, 64
    ),
    "grpo_max_completion_length": Field(64, "GRPO: longest sampled completion, in tokens.", int, 1),
    "grpo_beta": Field(0.0, "GRPO: KL penalty towards the starting policy (0 = none).", float, 0),
    "smoke_batches": Field(
        2, "Pre-flight: batches run forward and backward before training starts.", int, 1, 20
    ),
}

PRESETS: dict[str, dict[str, Any]] = {
    "lora-quick": {
        "description": "LoRA SFT, one epoch, rank 16: a first look at whether the data helps.",
        "kind": "sft",
        "method": "lora",
        "values": {"learning_rate": 2e-4, "num_train_epochs": 1.0, "lora_r": 16},
    },
    "lora-thorough": {
        "description": "LoRA SFT, three epochs with evaluation and early stopping.",
        "kind": "sft",
        "method": "lora",
        "values": {
            "learning_rate": 1e-4,
            "num_train_epochs": 3.0,
            "lora_r": 32,
            "lora_alpha": 64,
            "eval_steps": 50,
            "early_stopping_patience": 3,
        },
    },
    "full-sft": {
        "description": "Full fine-tuning: every weight trains; small learning rate.",
        "kind": "sft",
        "method": "full",
        "values": {"learning_rate": 2e-5, "num_train_epochs": 2.0, "warmup_ratio": 0.1},
    },
    "reward-model": {
        "description": "Reward model on preference pairs (sequence-classification head).",
        "kind": "reward",
        "method": "full",
        "values": {"learning_rate": 5e-5, "num_train_epochs": 1.0},
    },
    "dpo-lora": {
        "description": "DPO with a LoRA adapter on preference pairs.",
        "kind": "dpo",
        "method": "lora",
        "values": {"learning_rate": 5e-5, "dpo_beta": 0.1},
    },
    "grpo-lora": {
        "description": "GRPO against a reward model, LoRA policy.",
        "kind": "grpo",
        "method": "lora",
        "values": {"learning_rate": 1e-5, "grpo_num_generations": 4, "max_steps": 50},
    },
}


def unknown_key_message(name: str, known: Iterable[str], *, noun: str = "key") -> str:
    """What to tell someone who wrote `name`: that it means nothing here, and the closest
    names that do."""
    close = difflib.get_close_matches(str(name), list(known), n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    return f"unknown {noun}.{hint}"


class ConfigError(ValueError):
    """Bad job settings: `errors` maps each field to what is wrong with it."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


def coerce_value(name: str, field: Field, value: Any) -> Any:
    if field.kind is bool:
        if isinstance(value, str):
            return value.strip().lower() in ("1", "true", "yes", "on")
        return bool(value)
    if field.kind is list:
        if isinstance(value, str):
            return [v.strip() for v in value.replace("\n", ",").split(",") if v.strip()]
        if isinstance(value, list | tuple):
            return [str(v) for v in value]
        raise TypeError("expected a list of names")
    if field.kind is int:
        if isinstance(value, float) and not value.is_integer():
            raise TypeError("expected a whole number")
        return int(value)
    return field.kind(value)


def _resolve(
    *, kind: str, method: str, values: dict[str, Any], preset: str | None
) -> tuple[dict[str, Any], dict[str, str]]:
    """The merged settings and every problem found: a setting that is wrong keeps its raw
    value in the first and is named in the second."""
    errors: dict[str, str] = {}
    if kind not in KINDS:
        errors["kind"] = f"{kind!r} is not one of {', '.join(KINDS)}."
    if method not in METHODS:
        errors["method"] = f"{method!r} is not one of {', '.join(METHODS)}."
    if preset and preset not in PRESETS:
        errors["preset"] = f"{preset!r} is not one of {', '.join(PRESETS)}."
    for name in sorted(set(values) - set(FIELDS)):
        errors[name] = unknown_key_message(name, FIELDS, noun="setting")
    merged: dict[str, Any] = {name: field.default for name, field in FIELDS.items()}
    if preset in PRESETS:
        merged.update(PRESETS[preset]["values"])
    merged.update({k: v for k, v in values.items() if k in FIELDS and v is not None})
    for name, field in FIELDS.items():
        try:
            value = coerce_value(name, field, merged[name])
        except (TypeError, ValueError) as error:
            errors[name] = f"{merged[name]!r} is not valid ({error})."
            continue
        if field.choices and value not in field.choices:
            errors[name] = f"{value!r} is not one of {', '.join(field.choices)}."
        if field.minimum is not None and value < field.minimum:
            errors[name] = f"must be at least {field.minimum:g} (got {value})."
        if field.maximum is not None and value > field.maximum:
            errors[name] = f"must be at most {field.maximum:g} (got {value})."
        merged[name] = value
    merged["kind"], merged["method"] = kind, method
    return merged, errors


def resolve_config(
    *, kind: str, method: str, values: dict[str, Any], preset: str | None = None
) -> dict[str, Any]:
    """Defaults, then the preset, then `values`; each checked for type and range. Raises
    ConfigError naming every wrong setting at once."""
    merged, errors = _resolve(kind=kind, method=method, values=values, preset=preset)
    if errors:
        raise ConfigError(errors)
    return merged


def check_config(
    *,
    kind: str,
    method: str,
    values: dict[str, Any],
    preset: str | None = None,
    info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`resolve_config` and, when `info` (the registry's record of the base model) is given,
    `check_against_model` together: one ConfigError names every problem of both, so an
    unknown setting does not hide a context length the model cannot take."""
    merged, errors = _resolve(kind=kind, method=method, values=values, preset=preset)
    if info is not None:
        errors.update(_model_errors(merged, info, skip=set(errors)))
    if errors:
        raise ConfigError(errors)
    return merged


def check_against_model(config: dict[str, Any], info: dict[str, Any]) -> None:
    """What can be checked before queueing from the registry's record of the base model."""
    errors = _model_errors(config, info, skip=set())
    if errors:
        raise ConfigError(errors)


def _model_errors(config: dict[str, Any], info: dict[str, Any], skip: set[str]) -> dict[str, str]:
    """The problems of `config` against the base model, leaving out checks that read a
    setting named in `skip` (already wrong on its own)."""

    def usable(*names: str) -> bool:
        return not skip.intersection(names)

    errors: dict[str, str] = {}
    modules = set(info.get("linear_modules") or [])
    if usable("method", "lora_target_modules") and config["method"] == "lora" and modules:
        targets = config["lora_target_modules"]
        missing = [t for t in targets if t not in modules]
        if not targets:
            errors["lora_target_modules"] = "name at least one module."
        elif missing:
            errors["lora_target_modules"] = (
                f"{', '.join(missing)} not found in the model; it has {', '.join(sorted(modules))}."
            )
    layers = info.get("num_layers")
    if (
        usable("method", "trainable_layers", "train_head")
        and config["method"] == "partial"
        and layers is not None
    ):
        if config["trainable_layers"] > layers:
            errors["trainable_layers"] = f"the model has only {layers} layers."
        if config["trainable_layers"] == 0 and not config["train_head"]:
            errors["trainable_layers"] = "unfreeze at least one layer or the head."
    limit = info.get("max_positions")
    if usable("max_length") and limit and config["max_length"] > limit:
        errors["max_length"] = f"{config['max_length']} exceeds the model's context of {limit}."
    if (
        usable("kind", "method")
        and config["kind"] == "grpo"
        and config["method"] == "prompt_tuning"
    ):
        errors["method"] = "GRPO supports full, partial and LoRA policies."
    if (
        usable("early_stopping_patience", "eval_steps")
        and config["early_stopping_patience"]
        and not config["eval_steps"]
    ):
        errors["early_stopping_patience"] = "needs evaluation steps above 0."
    return errors


# Settings that only one kind of job or one method reads (training/ml); every other setting
# applies to all jobs. The dossier and the job page show a job only the settings it used.
ONLY_FOR_KIND = {
    "packing": ("sft",),
    "assistant_only_loss": ("sft",),
    "dpo_beta": ("dpo",),
    "grpo_num_generations": ("grpo",),
    "grpo_max_completion_length": ("grpo",),
    "grpo_beta": ("grpo",),
}
ONLY_FOR_METHOD = {
    "lora_r": ("lora",),
    "lora_alpha": ("lora",),
    "lora_dropout": ("lora",),
    "lora_target_modules": ("lora",),
    "trainable_layers": ("partial",),
    "train_head": ("partial",),
    "num_virtual_tokens": ("prompt_tuning",),
}


def relevant_settings(config: dict[str, Any], *, kind: str, method: str) -> dict[str, Any]:
    """`config` without the settings a `kind` job trained by `method` never reads (a LoRA
    SFT job has no use for dpo_beta, grpo_* or num_virtual_tokens)."""
    return {
        name: value
        for name, value in config.items()
        # `launch` records how the job ran (training/distributed.py), not a setting.
        if name != "launch"
        and kind in ONLY_FOR_KIND.get(name, (kind,))
        and method in ONLY_FOR_METHOD.get(name, (method,))
    }
