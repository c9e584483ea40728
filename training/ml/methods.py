"""Training methods (full, partial, LoRA, prompt tuning) applied to a loaded model, and the
figures pre-flight reports about them."""

from typing import Any

from torch import nn

ADAPTER_MARKERS = ("lora_", "prompt_encoder", "modules_to_save", "prompt_embeddings")


class MethodError(ValueError):
    """The method does not fit the model; the message says which setting and why."""


def linear_module_names(model: nn.Module) -> set[str]:
    return {
        name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)
    }


def _decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The stack of transformer blocks: the longest ModuleList in the model."""
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList)]
    if not lists:
        raise MethodError("partial: the model has no list of layers to unfreeze.")
    return max(lists, key=len)


def _head_modules(model: nn.Module, task: str) -> list[nn.Module]:
    names = ("score", "classifier") if task == "reward" else ("lm_head",)
    heads = [getattr(model, n) for n in names if isinstance(getattr(model, n, None), nn.Module)]
    # The final norm feeds the head directly; training it with the head is the usual choice.
    inner = getattr(model, "model", None)
    norm = getattr(inner, "norm", None)
    return heads + ([norm] if isinstance(norm, nn.Module) else [])


def apply_method(model: nn.Module, cfg: dict[str, Any], task: str) -> nn.Module:
    """Return the model to train: frozen where the method says so, or wrapped by peft.

    `task` is the job kind; a reward model is a sequence classifier with a `score` head.
    """
    method = cfg["method"]
    if method == "full":
        for param in model.parameters():
            param.requires_grad_(True)
        return model
    if method == "partial":
        for param in model.parameters():
            param.requires_grad_(False)
        layers = _decoder_layers(model)
        n = int(cfg.get("trainable_layers", 0))
        if n > len(layers):
            raise MethodError(f"trainable_layers: {n} asked, the model has {len(layers)} layers.")
        chosen = list(layers[len(layers) - n :]) if n else []
        if cfg.get("train_head", True):
            chosen += _head_modules(model, task)
        if not chosen:
            raise MethodError("partial: unfreeze at least one layer or the head.")
        for module in chosen:
            for param in module.parameters():
                param.requires_grad_(True)
        return model

    from peft import LoraConfig, PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model

    task_type = TaskType.SEQ_CLS if task == "reward" else TaskType.CAUSAL_LM
    if method == "lora":
        targets = list(cfg.get("lora_target_modules") or [])
        present = linear_module_names(model)
        missing = [t for t in targets if t not in present]
        if missing or not targets:
            raise MethodError(
                f"lora_target_modules: {', '.join(missing) or '(none)'} not in the model; "
                f"its linear modules are {', '.join(sorted(present))}."
            )
        peft_config = LoraConfig(
            task_type=task_type,
            r=int(cfg["lora_r"]),
            lora_alpha=int(cfg["lora_alpha"]),
            lora_dropout=float(cfg["lora_dropout"]),
            target_modules=targets,
        )
    elif method == "prompt_tuning":
        peft_config = PromptTuningConfig(
            task_type=task_type,
            num_virtual_tokens=int(cfg["num_virtual_tokens"]),
            prompt_tuning_init=PromptTuningInit.RANDOM,
        )
    else:
        raise MethodError(f"method: unknown method {method!r}.")
    return get_peft_model(model, peft_config)


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def frozen_base_problems(model: nn.Module) -> list[str]:
    """For PEFT: names of trainable parameters that are not part of the adapter."""
    return [
        name
        for name, p in model.named_parameters()
        if p.requires_grad and not any(marker in name for marker in ADAPTER_MARKERS)
    ]


def estimate(
    *,
    trainable: int,
    total: int,
    tokens: int,
    bytes_per_param: int,
    batch_tokens: int,
    hidden_size: int,
    layers: int,
    world_size: int = 1,
    strategy: str = "ddp",
    gradient_checkpointing: bool = False,
) -> dict[str, Any]:
    """Rough figures for a person to sanity-check a job before it takes a GPU; memory is
    per process (one GPU).

    FLOPs: 6·N·T when every weight trains (2 forward, 4 backward); with frozen weights the
    backward still flows through them for activations but skips weight gradients, ~4·N·T.
    Memory: weights + gradients and two AdamW moments (fp32) for the trainable part, plus
    activations (~34·hidden·tokens per layer in the batch, Korthikanti et al. 2022).
    Gradient checkpointing keeps only each layer's input (~2·hidden·tokens) and recomputes
    one layer at a time. Across processes, ZeRO-2 shards gradients and optimizer state,
    ZeRO-3 and FSDP the weights as well; DDP replicates everything.
    """
    flops_per_token = (6 if trainable >= total * 0.5 else 4) * total
    world = max(1, world_size)
    sharded = world > 1 and strategy in ("fsdp", "zero2", "zero3")
    weights = total * bytes_per_param
    if world > 1 and strategy in ("fsdp", "zero3"):
        weights = weights // world
    optimizer = trainable * (4 + 4 + 4)
    if sharded:
        optimizer = optimizer // world
    per_layer = 34 * hidden_size * batch_tokens * bytes_per_param // 2
    if gradient_checkpointing:
        activations = 2 * hidden_size * batch_tokens * bytes_per_param * max(1, layers) + per_layer
    else:
        activations = per_layer * max(1, layers)
    return {
        "trainable_params": trainable,
        "total_params": total,
        "trainable_fraction": trainable / total if total else 0.0,
        "train_tokens": tokens,
        "flops": float(flops_per_token) * tokens,
        "memory_bytes": float(weights + optimizer + activations),
        "memory_breakdown": {
            "weights": float(weights),
            "gradients_and_optimizer": float(optimizer),
            "activations": float(activations),
        },
        "world_size": world,
        "memory_scope": "per process" if world > 1 else "whole job",
    }
