"""One training job from a resolved spec: load, apply the method, pre-flight (estimates and a
smoke run), train with TRL, save, hash, and a sanity check against the frozen base.

The spec is a plain dict: `config` (the resolved hyperparameters, see training/presets.py)
plus paths: base_path, output_dir, train_file, eval_file, events_file, cancel_file and,
when they apply, parent_path / parent_kind, reward_model_path, resume_from_checkpoint.
"""

import errno
import math
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    EarlyStoppingCallback,
    set_seed,
)

from training.ml import data as data_mod
from training.ml import methods
from training.ml.events import (
    CancelCallback,
    CheckpointCallback,
    EventWriter,
    MetricsCallback,
    PhaseCallback,
    Phases,
    reporting_callbacks,
)
from training.ml.modelio import hash_directory, write_json

LIBRARIES = ("torch", "transformers", "peft", "trl", "accelerate", "datasets", "tokenizers")


class Cancelled(Exception):
    pass


class CheckpointSaveError(RuntimeError):
    """Saving a checkpoint failed part-way; the message says where and why, in words."""


def _disk_was_full(error: BaseException, folder: Path, last_saved: str | None) -> bool:
    """torch reports a short write as "unexpected pos ..." and safetensors wraps ENOSPC in
    its own error, so besides an ENOSPC down the exception chain, a disk with less room
    left than one more checkpoint (or 1 MiB) counts as full. Call before cleaning up."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno == errno.ENOSPC:
            return True
        seen = seen.__cause__ or seen.__context__
    needed = 1 << 20
    if last_saved and Path(last_saved).is_dir():
        needed = max(needed, sum(f.stat().st_size for f in Path(last_saved).rglob("*")))
    return shutil.disk_usage(folder).free < needed


def checkpoint_save_failure(
    error: BaseException, out_dir: Path, step: int, last_saved: str | None
) -> CheckpointSaveError | None:
    """When training stopped while a checkpoint was being written (its folder exists but was
    never reported saved), remove the half-written folder, so nothing resumes from it and
    the disk gets its space back, and describe the failure. Earlier checkpoints are left as
    they are. None when the error happened elsewhere."""
    folder = out_dir / "checkpoints" / f"checkpoint-{step}"
    if not folder.is_dir() or str(folder) == last_saved:
        return None
    disk_full = _disk_was_full(error, folder, last_saved)
    shutil.rmtree(folder, ignore_errors=True)
    where = folder.relative_to(out_dir)
    previous = f" The checkpoint {Path(last_saved).name} is intact." if last_saved else ""
    if disk_full:
        free = shutil.disk_usage(folder.parent).free
        return CheckpointSaveError(
            f"No space left on device while saving the checkpoint at step {step} to {where} "
            f"in the job's folder ({free // 1024} KiB free on that disk).{previous}"
        )
    return CheckpointSaveError(
        f"Saving the checkpoint at step {step} to {where} failed: "
        f"{type(error).__name__}: {error}.{previous}"
    )


def environment() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    libs = {}
    for name in LIBRARIES:
        try:
            libs[name] = version(name)
        except PackageNotFoundError:
            libs[name] = None
    hardware: dict[str, Any] = {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        hardware["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        hardware["cuda_version"] = torch.version.cuda
    return {"libraries": libs, "hardware": hardware}


def world_size(cfg: dict) -> int:
    """Processes training this job: WORLD_SIZE from the launcher, else the job's setting."""
    return int(os.environ.get("WORLD_SIZE") or cfg.get("num_processes") or 1)


def process_rank() -> int:
    """This process's rank among the job's processes (0 when it trains alone)."""
    return int(os.environ.get("RANK") or 0)


def _precision(cfg: dict) -> str:
    wanted = cfg.get("precision", "auto")
    if not torch.cuda.is_available():
        return "fp32"
    if wanted == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return wanted


def _dtype(precision: str) -> torch.dtype:
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)


def load_tokenizer(path: str):
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(spec: dict, tokenizer, dtype: torch.dtype):
    """The starting weights: the base, or the base with a parent version merged in."""
    kind = spec["config"]["kind"]
    base = spec["base_path"]
    parent = spec.get("parent_path")
    if parent and spec.get("parent_kind") == "full":
        base, parent = parent, None
    if kind == "reward":
        model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, dtype=dtype)
        model.config.pad_token_id = tokenizer.pad_token_id
    else:
        model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
    if parent:
        from peft import PeftModel

        # Continue from an earlier adapter: fold it into the weights, then train anew on top.
        model = PeftModel.from_pretrained(model, parent).merge_and_unload()
    return model


def _common_args(spec: dict, precision: str, has_eval: bool) -> dict[str, Any]:
    cfg = spec["config"]
    eval_steps = int(cfg.get("eval_steps") or 0) if has_eval else 0
    args = {
        "output_dir": str(Path(spec["output_dir"]) / "checkpoints"),
        "learning_rate": float(cfg["learning_rate"]),
        "lr_scheduler_type": cfg["lr_scheduler_type"],
        "warmup_steps": float(cfg["warmup_ratio"]),  # < 1 means a ratio in transformers 5
        "num_train_epochs": float(cfg["num_train_epochs"]),
        "max_steps": int(cfg.get("max_steps") or -1),
        "per_device_train_batch_size": int(cfg["per_device_train_batch_size"]),
        "per_device_eval_batch_size": int(cfg["per_device_train_batch_size"]),
        "gradient_accumulation_steps": int(cfg["gradient_accumulation_steps"]),
        "weight_decay": float(cfg["weight_decay"]),
        "optim": cfg.get("optim", "adamw_torch"),
        "seed": int(cfg["seed"]),
        "data_seed": int(cfg["seed"]),
        "logging_steps": int(cfg["logging_steps"]),
        "logging_first_step": True,
        "save_strategy": "steps",
        "save_steps": int(cfg["save_steps"]),
        "save_total_limit": int(cfg.get("save_total_limit") or 3),
        "eval_strategy": "steps" if eval_steps else "no",
        "eval_steps": eval_steps or None,
        # Trackers are added as guarded callbacks (events.reporting_callbacks), so that one
        # failing never fails the job; the trainer adds none of its own.
        "report_to": "none",
        "run_name": spec.get("run_name"),
        "bf16": precision == "bf16",
        "fp16": precision == "fp16",
        "gradient_checkpointing": bool(cfg.get("gradient_checkpointing")),
        "include_num_input_tokens_seen": "all",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "remove_unused_columns": True,
    }
    if eval_steps and int(cfg.get("early_stopping_patience") or 0):
        args.update(
            load_best_model_at_end=True,
            metric_for_best_model="eval_loss",
            greater_is_better=False,
            save_steps=eval_steps,
        )
    return args


def build_trainer(spec, model, tokenizer, train_ds, eval_ds, callbacks, precision):
    cfg = spec["config"]
    kind = cfg["kind"]
    args = _common_args(spec, precision, eval_ds is not None)
    max_length = int(cfg["max_length"])
    if kind == "sft" and spec.get("teacher_path"):
        from training.ml.compress import gkd_trainer

        return gkd_trainer(spec, model, tokenizer, train_ds, callbacks, args)
    if kind == "sft":
        from trl import SFTConfig, SFTTrainer

        sft_args = SFTConfig(
            **args,
            max_length=max_length,
            packing=bool(cfg.get("packing")),
            assistant_only_loss=bool(cfg.get("assistant_only_loss")),
            dataset_num_proc=None,
        )
        return SFTTrainer(
            model=model,
            args=sft_args,
            train_dataset=train_ds,
            eval_dataset=eval_ds,
            processing_class=tokenizer,
            callbacks=callbacks,
        )
    if kind == "reward":
        from trl import RewardConfig, RewardTrainer

        return RewardTrainer(
            model=model,
            args=RewardConfig(**args, max_length=max_length, dataset_num_proc=None),
            train_dataset=train_ds,
            eval_dataset=eval_ds,
            processing_class=tokenizer,
            callbacks=callbacks,
        )
    if kind == "dpo":
        from trl import DPOConfig, DPOTrainer

        return DPOTrainer(
            model=model,
            args=DPOConfig(
                **args, max_length=max_length, beta=float(cfg["dpo_beta"]), dataset_num_proc=None
            ),
            train_dataset=train_ds,
            eval_dataset=eval_ds,
            processing_class=tokenizer,
            callbacks=callbacks,
        )
    if kind == "grpo":
        from trl import GRPOConfig, GRPOTrainer

        reward_path = spec.get("reward_model_path")
        if not reward_path:
            raise ValueError("reward_model: GRPO needs a trained reward model version.")
        generations = int(cfg["grpo_num_generations"])
        args["per_device_train_batch_size"] = max(
            generations, args["per_device_train_batch_size"] // generations * generations
        )
        args["eval_strategy"] = "no"
        args["eval_steps"] = None
        args.pop("load_best_model_at_end", None)
        args.pop("metric_for_best_model", None)
        args.pop("greater_is_better", None)
        reward_tokenizer = load_tokenizer(reward_path)
        return GRPOTrainer(
            model=model,
            reward_funcs=reward_path,
            args=GRPOConfig(
                **args,
                num_generations=generations,
                max_completion_length=int(cfg["grpo_max_completion_length"]),
                beta=float(cfg["grpo_beta"]),
                temperature=1.0,
            ),
            train_dataset=train_ds,
            processing_class=tokenizer,
            reward_processing_classes=reward_tokenizer,
            callbacks=callbacks,
        )
    raise ValueError(f"kind: unknown job kind {kind!r}.")


# --- pre-flight --------------------------------------------------------------------------


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _texts(rows: list[dict], tokenizer, limit: int | None = None) -> list[str]:
    return [data_mod.render_text(row, tokenizer) for row in rows[:limit]]


def smoke_run(
    model, tokenizer, rows, cfg, task: str, out_dir: Path, phases: Phases | None = None
) -> dict[str, Any]:
    """A few forward/backward passes without an optimizer step (so nothing changes), then a
    checkpoint save; for PEFT, a check that gradients reach the adapter and nothing else.
    Also times a forward pass alone and the save, which the estimate of the later phases
    (evaluation, sanity check, checkpoints) is made from."""
    batches = max(1, int(cfg.get("smoke_batches") or 2))
    batch_size = int(cfg["per_device_train_batch_size"])
    texts = _texts(rows, tokenizer, batches * batch_size) or ["hello"]
    if phases is not None:
        phases.start(
            "smoke_run",
            "Pre-flight smoke run",
            total=math.ceil(len(texts) / batch_size) + 1,
            unit="batches",
        )
    model.train()
    tokens = 0
    started = time.perf_counter()
    # (tokens, seconds) of each batch: the first pays for warming up (allocations, kernel
    # choices), many times a later one's cost on a CPU, so the speed leaves it out.
    batch_costs: list[tuple[int, float]] = []
    for start in range(0, len(texts), batch_size):
        batch_started = time.perf_counter()
        enc = tokenizer(
            texts[start : start + batch_size],
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=int(cfg["max_length"]),
        ).to(_device(model))
        if task == "reward":
            loss = model(**enc).logits.float().pow(2).mean()
        else:
            labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
            loss = model(**enc, labels=labels).loss
        if not torch.isfinite(loss):
            raise RuntimeError(f"smoke run: the loss is {loss.item()} on the first batches.")
        loss.backward()
        tokens += int(enc["attention_mask"].sum())
        batch_costs.append((int(enc["attention_mask"].sum()), time.perf_counter() - batch_started))
        if phases is not None:
            phases.advance()
    elapsed = time.perf_counter() - started
    steady = batch_costs[1:] or batch_costs
    steady_seconds = sum(seconds for _, seconds in steady)
    steady_speed = sum(n for n, _ in steady) / steady_seconds if steady_seconds else 0.0
    forward_started = time.perf_counter()
    with torch.no_grad():
        model(**enc)
    forward_seconds = time.perf_counter() - forward_started
    forward_tokens = int(enc["attention_mask"].sum())
    with_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is not None]
    frozen_with_grad = [
        n for n, p in model.named_parameters() if not p.requires_grad and p.grad is not None
    ]
    if not with_grad:
        raise RuntimeError("smoke run: no trainable parameter received a gradient.")
    if frozen_with_grad:
        raise RuntimeError(f"smoke run: frozen parameters got gradients: {frozen_with_grad[:3]}")
    if cfg["method"] in ("lora", "prompt_tuning"):
        leaks = methods.frozen_base_problems(model)
        if leaks:
            raise RuntimeError(f"smoke run: base weights are trainable under PEFT: {leaks[:5]}")
    model.zero_grad(set_to_none=True)
    probe = out_dir / "smoke-checkpoint"
    save_started = time.perf_counter()
    model.save_pretrained(probe)
    saved = hash_directory(probe)
    save_seconds = time.perf_counter() - save_started
    shutil.rmtree(probe, ignore_errors=True)
    if not saved:
        raise RuntimeError("smoke run: the checkpoint save wrote no files.")
    if phases is not None:
        phases.advance()
    return {
        "smoke_batches": math.ceil(len(texts) / batch_size),
        "smoke_seconds": elapsed,
        "forward_tokens_per_second": forward_tokens / forward_seconds if forward_seconds else 0.0,
        "save_seconds": save_seconds,
        "smoke_tokens_per_second": tokens / elapsed if elapsed else 0.0,
        "steady_tokens_per_second": steady_speed,
        "checkpoint_files": sorted(saved),
        "grad_params": len(with_grad),
    }


def _token_lengths(rows: list[dict], tokenizer, phases: Phases, label: str) -> list[int]:
    phases.start("tokenising", label, total=len(rows), unit="rows")
    lengths = []
    for text in _texts(rows, tokenizer):
        lengths.append(len(tokenizer(text)["input_ids"]))
        phases.advance()
    return lengths


def sanity_passes(cfg: dict, has_eval: bool) -> int:
    """How many times the sanity check runs the model over the check rows: the tuned model's
    figures, then (PEFT with a validation split) the frozen base's; preference kinds score
    the chosen and the rejected answer of each row."""
    is_peft = cfg["method"] in ("lora", "prompt_tuning")
    passes = 1 + (1 if is_peft and has_eval else 0)
    return passes * (2 if cfg["kind"] != "sft" else 1)


def preflight(
    model, tokenizer, rows, cfg, task, out_dir, events, phases: Phases, eval_rows=None
) -> dict[str, Any]:
    """Figures for the job page, a smoke run, and an estimate of the time each later phase
    takes, measured on this machine: the page's estimate covers the whole job, not only
    the optimizer steps."""
    lengths = _token_lengths(rows, tokenizer, phases, "Tokenising the training rows")
    max_length = int(cfg["max_length"])
    too_long = sum(1 for n in lengths if n > max_length)
    epochs = float(cfg["num_train_epochs"])
    world = world_size(cfg)
    per_step = (
        int(cfg["per_device_train_batch_size"]) * int(cfg["gradient_accumulation_steps"]) * world
    )
    steps = int(cfg.get("max_steps") or 0) or math.ceil(len(rows) / per_step * epochs)
    mean_len = sum(min(n, max_length) for n in lengths) / len(lengths)
    train_tokens = int(mean_len * per_step * steps)
    if cfg["kind"] in ("reward", "dpo"):
        train_tokens *= 2  # chosen and rejected
    trainable, total = methods.parameter_counts(model)
    config = model.config
    figures = methods.estimate(
        trainable=trainable,
        total=total,
        tokens=train_tokens,
        bytes_per_param=next(model.parameters()).element_size(),
        batch_tokens=int(cfg["per_device_train_batch_size"]) * int(min(max(lengths), max_length)),
        hidden_size=int(getattr(config, "hidden_size", 0) or 0),
        layers=int(getattr(config, "num_hidden_layers", 0) or 0),
        world_size=world,
        strategy=str(cfg.get("distributed_strategy") or "ddp"),
        gradient_checkpointing=bool(cfg.get("gradient_checkpointing")),
    )
    figures.update(
        rows=len(rows),
        steps=steps,
        max_tokens_per_row=max(lengths),
        mean_tokens_per_row=mean_len,
        rows_truncated=too_long,
        effective_batch_size=per_step,
        per_device_train_batch_size=int(cfg["per_device_train_batch_size"]),
        gradient_accumulation_steps=int(cfg["gradient_accumulation_steps"]),
        gradient_checkpointing=bool(cfg.get("gradient_checkpointing")),
        precision=_precision(cfg),
    )
    if too_long:
        events.log(
            f"{too_long} of {len(rows)} rows are longer than max_length={max_length} tokens "
            f"(longest {max(lengths)}) and will be truncated.",
            "warning",
        )
    figures.update(smoke_run(model, tokenizer, rows, cfg, task, out_dir, phases))
    figures["estimate_seconds"] = estimate_phases(
        figures, cfg, eval_rows or [], tokenizer, mean_len
    )
    figures["estimated_seconds"] = sum(figures["estimate_seconds"].values())
    return figures


def estimate_phases(
    figures: dict, cfg: dict, eval_rows: list[dict], tokenizer, mean_len: float
) -> dict[str, float]:
    """Seconds for each phase of the job from the smoke run's speeds: training, checkpoint
    saves, evaluations, the final save and the sanity check (the caller adds the pre-flight
    as it took)."""
    max_length = int(cfg["max_length"])
    steps = figures["steps"]
    # Optimizer and bookkeeping roughly double a bare forward/backward.
    train_speed = figures["steady_tokens_per_second"] / 2 or 1.0
    forward_speed = figures["forward_tokens_per_second"] or train_speed * 3
    check_rows = eval_rows or []
    check_tokens = sum(
        min(len(tokenizer(t)["input_ids"]), max_length) for t in _texts(check_rows, tokenizer)
    )
    if not check_rows:  # the check falls back to the training rows
        check_tokens = int(mean_len * figures["rows"])
    evals = steps // int(cfg["eval_steps"]) if cfg.get("eval_steps") and eval_rows else 0
    saves = steps // int(cfg["save_steps"])
    return {
        "preflight": 0.0,
        "training": figures["train_tokens"] / train_speed,
        "checkpoints": saves * figures["save_seconds"],
        "evaluation": evals * check_tokens * (2 if cfg["kind"] != "sft" else 1) / forward_speed,
        "final_save": figures["save_seconds"],
        "sanity_check": sanity_passes(cfg, bool(eval_rows)) * check_tokens / forward_speed,
    }


# --- sanity check and final figures -----------------------------------------------------


def _no_tick(rows: int) -> None:
    return None


@torch.no_grad()
def _mean_nll(model, tokenizer, texts: list[str], max_length: int, tick=_no_tick) -> float:
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(texts), 8):
        enc = tokenizer(
            texts[start : start + 8],
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=max_length,
        ).to(_device(model))
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        out = model(**enc, labels=labels)
        n = int((labels[:, 1:] != -100).sum())
        total += float(out.loss) * n
        count += n
        tick(len(texts[start : start + 8]))
    return total / max(count, 1)


@torch.no_grad()
def _sequence_logprob(
    model, tokenizer, texts: list[str], max_length: int, tick=_no_tick
) -> list[float]:
    model.eval()
    scores = []
    for text in texts:
        enc = tokenizer(text, return_tensors="pt", truncation=True, max_length=max_length)
        enc = enc.to(_device(model))
        logits = model(**enc).logits[:, :-1].float()
        target = enc["input_ids"][:, 1:]
        logp = torch.log_softmax(logits, -1).gather(-1, target.unsqueeze(-1)).sum()
        scores.append(float(logp))
        tick(1)
    return scores


@torch.no_grad()
def _reward_scores(
    model, tokenizer, texts: list[str], max_length: int, tick=_no_tick
) -> list[float]:
    model.eval()
    scores: list[float] = []
    for start in range(0, len(texts), 8):
        enc = tokenizer(
            texts[start : start + 8],
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=max_length,
        ).to(_device(model))
        scores.extend(model(**enc).logits[:, 0].float().tolist())
        tick(len(texts[start : start + 8]))
    return scores


def quality(model, tokenizer, rows: list[dict], cfg: dict, tick=_no_tick) -> dict[str, float]:
    """The headline figure for the job's kind on `rows` (the validation split). `tick(n)` is
    called as rows are scored (preference kinds score each row twice)."""
    kind = cfg["kind"]
    max_length = int(cfg["max_length"])
    if kind == "sft":
        loss = _mean_nll(model, tokenizer, _texts(rows, tokenizer), max_length, tick)
        return {"validation_loss": loss, "validation_perplexity": math.exp(min(loss, 50))}
    chosen = [data_mod.render_text(r, tokenizer, part="chosen") for r in rows]
    rejected = [data_mod.render_text(r, tokenizer, part="rejected") for r in rows]
    if kind == "reward":
        good = _reward_scores(model, tokenizer, chosen, max_length, tick)
        bad = _reward_scores(model, tokenizer, rejected, max_length, tick)
        wins = sum(1 for g, b in zip(good, bad, strict=True) if g > b)
        margin = sum(g - b for g, b in zip(good, bad, strict=True)) / len(rows)
        return {"pairwise_accuracy": wins / len(rows), "reward_margin": margin}
    if kind in ("dpo", "grpo") and rows and "chosen" in rows[0]:
        good = _sequence_logprob(model, tokenizer, chosen, max_length, tick)
        bad = _sequence_logprob(model, tokenizer, rejected, max_length, tick)
        wins = sum(1 for g, b in zip(good, bad, strict=True) if g > b)
        # The margin leads: it moves with every step, while accuracy can sit still when the
        # rejected answers are shorter (a sum of fewer log-probabilities).
        margin = sum(g - b for g, b in zip(good, bad, strict=True)) / len(rows)
        return {"preference_margin": margin, "preference_accuracy": wins / len(rows)}
    loss = _mean_nll(model, tokenizer, _texts(rows, tokenizer), max_length, tick)
    return {"validation_loss": loss}


def sanity_check(model, tokenizer, rows, cfg, tuned: dict[str, float], tick=_no_tick) -> dict:
    """Frozen base versus tuned on the validation split (PEFT: the adapter switched off).
    `tuned` is the tuned model's `quality` on the same rows, computed once already."""
    with model.disable_adapter():
        base = quality(model, tokenizer, rows, cfg, tick)
    key = next(iter(tuned))
    lower_is_better = "loss" in key or "perplexity" in key
    lift = base[key] - tuned[key] if lower_is_better else tuned[key] - base[key]
    return {"metric": key, "base": base, "tuned": tuned, "lift": lift, "rows": len(rows)}


# --- the job -------------------------------------------------------------------------------


def _prepared_model(spec: dict, tokenizer, precision: str):
    cfg = spec["config"]
    model = load_model(spec, tokenizer, _dtype(precision) if precision != "fp32" else torch.float32)
    if cfg.get("gradient_checkpointing"):
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    return methods.apply_method(model, cfg, cfg["kind"])


def _run_other_rank(spec: dict[str, Any], rank: int) -> dict[str, Any]:
    """A rank above 0 trains its share of every batch and takes part in the collective
    saves, but writes nothing of the job's own: its events (metrics included) go to a file
    of its own for debugging, and only a start and an end line reach the job's log."""
    cfg = spec["config"]
    kind = cfg["kind"]
    out_dir = Path(spec["output_dir"])
    world = world_size(cfg)
    shared = EventWriter(spec.get("events_file"))
    events = EventWriter(out_dir / f"events.rank{rank}.jsonl")
    shared.log(f"Rank {rank} of {world} started (pid {os.getpid()}).")
    set_seed(int(cfg["seed"]))
    precision = _precision(cfg)
    tokenizer = load_tokenizer(spec["base_path"])
    train_rows = data_mod.load_rows(spec["train_file"], kind)
    eval_rows = data_mod.load_rows(spec["eval_file"], kind) if spec.get("eval_file") else None
    model = _prepared_model(spec, tokenizer, precision)

    from datasets import Dataset

    train_ds = Dataset.from_list(train_rows)
    eval_ds = Dataset.from_list(eval_rows) if eval_rows and kind != "grpo" else None
    cancel_cb = CancelCallback(events, spec.get("cancel_file"))
    callbacks = [MetricsCallback(events), cancel_cb]
    if eval_ds is not None and int(cfg.get("early_stopping_patience") or 0):
        callbacks.append(EarlyStoppingCallback(int(cfg["early_stopping_patience"])))
    trainer = build_trainer(spec, model, tokenizer, train_ds, eval_ds, callbacks, precision)
    trainer.train(resume_from_checkpoint=spec.get("resume_from_checkpoint") or None)
    if not (cancel_cb.cancelled or cancel_cb.orphaned):
        trainer.save_model(str(out_dir / "final"))  # a collective for FSDP and ZeRO-3
    tokens = int(getattr(trainer.state, "num_input_tokens_seen", 0) or 0)
    shared.log(
        f"Rank {rank} of {world} finished: {trainer.state.global_step} optimizer steps, "
        f"{tokens} tokens seen by all ranks."
    )
    events.emit("rank_done", rank=rank, global_step=trainer.state.global_step, tokens_seen=tokens)
    events.close()
    shared.close()
    return {"status": "rank_done", "rank": rank}


def run_job(spec: dict[str, Any], *, emit_result: bool = True) -> dict[str, Any]:
    """Train one job; the returned dict is also emitted as the final `result` event (unless
    `emit_result` is off: a distillation job measures its student before it ends). Each
    phase is announced as it starts and reports its progress (see `Phases`)."""
    rank = process_rank()
    if rank:
        return _run_other_rank(spec, rank)
    started = time.perf_counter()
    cfg = spec["config"]
    kind = cfg["kind"]
    out_dir = Path(spec["output_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    events = EventWriter(spec.get("events_file"))
    phases = Phases(events)
    world = world_size(cfg)
    events.emit("environment", environment={**environment(), "world_size": world})
    events.emit("state", state="preflight")
    if world > 1:
        events.log(
            f"World size {world}: rank 0 of {world} "
            f"({cfg.get('distributed_strategy', 'ddp')}) writes the job's metrics, checkpoints "
            "and model."
        )
    phases.start("loading_model", "Loading the model and the data")
    set_seed(int(cfg["seed"]))
    precision = _precision(cfg)
    tokenizer = load_tokenizer(spec["base_path"])
    train_rows = data_mod.load_rows(spec["train_file"], kind)
    eval_rows = data_mod.load_rows(spec["eval_file"], kind) if spec.get("eval_file") else None
    events.log(
        f"Loaded {len(train_rows)} training rows"
        + (f" and {len(eval_rows)} validation rows" if eval_rows else "")
        + "."
    )
    model = _prepared_model(spec, tokenizer, precision)
    figures = preflight(model, tokenizer, train_rows, cfg, kind, out_dir, events, phases, eval_rows)
    # The pre-flight's own figure covers everything since the runner started (loading too).
    figures["estimate_seconds"]["preflight"] = time.perf_counter() - started
    figures["estimated_seconds"] = sum(figures["estimate_seconds"].values())
    events.emit("preflight", figures=figures)
    parts = ", ".join(
        f"{name.replace('_', ' ')} {seconds:.0f} s"
        for name, seconds in figures["estimate_seconds"].items()
    )
    events.log(
        f"Pre-flight passed: {figures['trainable_params']:,} of {figures['total_params']:,} "
        f"parameters trainable, ~{figures['flops']:.3g} FLOPs, "
        f"~{figures['estimated_seconds']:.0f} s estimated in all ({parts})."
    )
    if CancelCallback(events, spec.get("cancel_file")).should_stop():
        events.emit("cancelled", checkpoint=None)
        return {"status": "cancelled"}

    from datasets import Dataset

    train_ds = Dataset.from_list(train_rows)
    eval_ds = Dataset.from_list(eval_rows) if eval_rows and kind != "grpo" else None
    metrics_cb = MetricsCallback(events)
    checkpoint_cb = CheckpointCallback(events)
    cancel_cb = CancelCallback(events, spec.get("cancel_file"))
    callbacks = [metrics_cb, checkpoint_cb, cancel_cb, PhaseCallback(phases)]
    callbacks += reporting_callbacks(
        spec.get("report_to") or [], events, job_url=spec.get("job_url") or ""
    )
    if (
        eval_ds is not None
        and int(cfg.get("early_stopping_patience") or 0)
        and cfg.get("eval_steps")
    ):
        callbacks.append(EarlyStoppingCallback(int(cfg["early_stopping_patience"])))
    phases.start("preparing_trainer", "Preparing the trainer (tokenising the dataset)")
    trainer = build_trainer(spec, model, tokenizer, train_ds, eval_ds, callbacks, precision)
    events.emit("state", state="running")
    try:
        output = trainer.train(resume_from_checkpoint=spec.get("resume_from_checkpoint") or None)
    except Exception as error:
        failure = checkpoint_save_failure(
            error, out_dir, trainer.state.global_step, checkpoint_cb.last
        )
        if failure is None:
            raise
        raise failure from error
    if cancel_cb.cancelled or cancel_cb.orphaned:
        events.emit("cancelled", checkpoint=checkpoint_cb.last)
        return {"status": "cancelled", "checkpoint": checkpoint_cb.last}

    phases.start("saving_model", "Saving and hashing the final model")
    final_dir = out_dir / "final"
    trainer.save_model(str(final_dir))  # every rank: FSDP and ZeRO-3 gather the weights
    tokenizer.save_pretrained(final_dir)
    trained = trainer.model
    is_peft = cfg["method"] in ("lora", "prompt_tuning")
    result: dict[str, Any] = {
        "status": "succeeded",
        "world_size": world,
        "path": str(final_dir),
        "kind": "adapter" if is_peft else "full",
        "files": hash_directory(final_dir),
        "train_metrics": {k: v for k, v in output.metrics.items() if isinstance(v, int | float)},
        "global_step": trainer.state.global_step,
        "first_step_time": metrics_cb.first_step_time,
    }
    check_rows = eval_rows or train_rows
    scored = kind != "grpo" or bool(check_rows and "chosen" in check_rows[0])
    if scored:
        split = "validation" if eval_rows else "training"
        with_base = is_peft and bool(eval_rows)
        phases.start(
            "sanity_check",
            "Sanity check: the tuned model" + (" against the frozen base" if with_base else ""),
            total=len(check_rows) * sanity_passes(cfg, bool(eval_rows)),
            unit="rows scored",
            note=f"Scoring the tuned model on {len(check_rows)} {split} rows"
            + (", then the frozen base on the same rows." if with_base else "."),
        )
        result["metrics"] = quality(trained, tokenizer, check_rows, cfg, phases.advance)
        result["metrics_split"] = "validation" if eval_rows else "train"
        if with_base:
            result["sanity"] = sanity_check(
                trained, tokenizer, eval_rows, cfg, result["metrics"], phases.advance
            )
            events.log(
                f"Sanity check on {len(eval_rows)} validation rows: "
                f"{result['sanity']['metric']} lift {result['sanity']['lift']:+.4f} over the "
                "frozen base."
            )
    if is_peft and kind == "reward":
        phases.start("merging", "Merging the adapter into plain weights (for GRPO)")
        # GRPO loads a reward model by path: give it plain weights.
        merged = out_dir / "merged"
        trained.merge_and_unload().save_pretrained(merged)
        tokenizer.save_pretrained(merged)
        result["merged_path"] = str(merged)
    result["seconds"] = time.perf_counter() - started
    write_json(out_dir / "result.json", result)
    if emit_result:
        events.emit("result", result=result)
    events.close()
    return result
