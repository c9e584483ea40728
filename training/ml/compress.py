"""Compression jobs on a registered version: merge an adapter into its base, quantize
after training, or distill a teacher into a student. Each ends as a training job does (a
`result` event naming the saved folder) plus `measurements` of the parent and the child:
size on disk, peak memory, tokens per second and latency, each measured in a fresh child
process (`python -m training.runner measure`) so one model's memory never counts in the
other's.

The spec is train.run_job's plus: parent_path / parent_kind / parent_base_path (the
version compressed, or the teacher), and for distill the prompts as `train_file`.
"""

import contextlib
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, set_seed

from training.ml import data as data_mod
from training.ml import train as train_mod
from training.ml.events import EventWriter, Phases
from training.ml.methods import MethodError
from training.ml.modelio import hash_directory, write_json

KINDS = ("merge", "quantize", "distill")
QUANTIZATIONS = ("int8_weight_only", "bnb_int8", "bnb_nf4")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")
# What the speed and latency are measured on: a fixed, short, generic set, so parent and
# child are timed on the same work whatever the project's data.
MEASURE_PROMPTS = (
    "Summarise the benefits of regular exercise in two sentences.",
    "Write a short, polite reply declining a meeting invitation.",
    "Explain what a hash function is to a new programmer.",
    "List three things to check before deploying a web service.",
)


def weights_size(path: str | Path) -> int:
    """Bytes of the weight files under `path` (tokenizer and config files are left out)."""
    folder = Path(path)
    return sum(
        p.stat().st_size for p in folder.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES
    )


def _load_full(base_path: str, parent_path: str | None, parent_kind: str | None, dtype=None):
    """A version as plain causal-LM weights: an adapter merged into its base."""
    if parent_path and parent_kind == "full":
        return AutoModelForCausalLM.from_pretrained(parent_path, dtype=dtype or torch.float32)
    model = AutoModelForCausalLM.from_pretrained(base_path, dtype=dtype or torch.float32)
    if parent_path:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, parent_path).merge_and_unload()
    return model


def _save(model, tokenizer, folder: Path) -> None:
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


@torch.no_grad()
def merge_logit_gap(base_path: str, adapter_path: str, merged_path: Path) -> float:
    """Largest absolute logit difference between base+adapter and the merged weights on a
    probe text: what the merge promises to keep (zero but for float rounding)."""
    from peft import PeftModel

    tokenizer = train_mod.load_tokenizer(base_path)
    enc = tokenizer(list(MEASURE_PROMPTS), return_tensors="pt", padding=True)
    adapted = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32), adapter_path
    ).eval()
    merged = AutoModelForCausalLM.from_pretrained(merged_path, dtype=torch.float32).eval()
    return float((adapted(**enc).logits - merged(**enc).logits).abs().max())


def merge(spec: dict[str, Any], final: Path, phases: Phases) -> dict[str, Any]:
    if spec.get("parent_kind") != "adapter":
        raise MethodError("parent_version: only an adapter version can be merged into its base.")
    phases.start("merging", "Merging the adapter into its base")
    tokenizer = train_mod.load_tokenizer(spec["parent_path"])
    model = _load_full(spec["base_path"], spec["parent_path"], "adapter")
    _save(model, tokenizer, final)
    gap = merge_logit_gap(spec["base_path"], spec["parent_path"], final)
    return {"metrics": {"merge_max_logit_diff": gap}}


def _quantization_config(name: str):
    if name == "int8_weight_only":
        from torchao.quantization import Int8WeightOnlyConfig
        from transformers import TorchAoConfig

        return TorchAoConfig(Int8WeightOnlyConfig())
    if not torch.cuda.is_available():
        raise MethodError(
            f"quantization: {name} (bitsandbytes) runs on a GPU only and this worker has none; "
            "choose int8_weight_only (torchao, CPU) or run the job on a GPU worker."
        )
    from transformers import BitsAndBytesConfig

    if name == "bnb_int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
    )


def quantize(spec: dict[str, Any], final: Path, phases: Phases) -> dict[str, Any]:
    name = spec["config"].get("quantization", "int8_weight_only")
    if name not in QUANTIZATIONS:
        raise MethodError(f"quantization: {name!r} is not one of {', '.join(QUANTIZATIONS)}.")
    quant = _quantization_config(name)
    phases.start("quantizing", f"Quantizing the weights ({name})")
    source = spec["parent_path"]
    scratch = Path(spec["output_dir"]) / "unquantized"
    if spec.get("parent_kind") == "adapter":
        # Quantizing loads from a folder of plain weights: merge the adapter there first.
        tokenizer = train_mod.load_tokenizer(source)
        _save(_load_full(spec["base_path"], source, "adapter"), tokenizer, scratch)
        source = str(scratch)
    tokenizer = train_mod.load_tokenizer(source)
    started = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(
        source, quantization_config=quant, dtype=torch.float32 if name.startswith("int8") else None
    )
    _save(model, tokenizer, final)
    seconds = time.perf_counter() - started  # load, quantize and save: the merge left out
    shutil.rmtree(scratch, ignore_errors=True)
    return {"metrics": {"quantization": name, "quantize_seconds": seconds}}


def _prompt_of(row: dict[str, Any]) -> list[dict[str, str]]:
    if isinstance(row.get("prompt"), str):
        return [{"role": "user", "content": row["prompt"]}]
    messages = row.get("messages") or row.get("prompt")
    if isinstance(messages, list) and messages:
        # A conversation's last assistant turn (if any) is what the teacher answers anew.
        if messages[-1].get("role") == "assistant":
            messages = messages[:-1]
        if messages:
            return messages
    raise data_mod.DataError(
        f"prompts line {row.get('_line')}: a distillation prompt needs `prompt` (text or "
        "turns) or `messages`."
    )


def teacher_answers(spec: dict[str, Any], phases: Phases) -> list[dict[str, Any]]:
    """Sequence-level distillation data: the teacher's greedy answer to every prompt, as
    SFT rows (the prompt's turns and the answer)."""
    from training.ml.generation import generate_completions

    cfg = spec["config"]
    prompts = [_prompt_of(row) for row in data_mod.read_jsonl(spec["train_file"])]
    phases.start(
        "teacher_answers",
        "The teacher answers the prompts",
        total=len(prompts),
        unit="prompts",
    )
    full = spec["parent_path"] if spec.get("parent_kind") == "full" else None
    adapter = spec["parent_path"] if spec.get("parent_kind") == "adapter" else None
    rows = []
    for start in range(0, len(prompts), 8):
        batch = prompts[start : start + 8]
        answers = generate_completions(
            base_path=spec["parent_base_path"],
            adapter_path=adapter,
            full_path=full,
            prompts=batch,
            max_new_tokens=int(cfg.get("distill_max_new_tokens") or 64),
            seed=int(cfg["seed"]),
        )
        for turns, (text, _) in zip(batch, answers, strict=True):
            rows.append({"messages": [*turns, {"role": "assistant", "content": text}]})
        phases.advance(len(batch))
    return rows


def distill(
    spec: dict[str, Any], out_dir: Path, events: EventWriter, phases: Phases
) -> dict[str, Any] | None:
    """Train the student (the job's base, full or LoRA) on the teacher's answers with SFT, or
    with TRL's GKD trainer (on-policy, against the teacher's token distributions) when
    `distill_method` is gkd. None when the training was cancelled."""
    rows = teacher_answers(spec, phases)
    answers_file = out_dir / "teacher_answers.jsonl"
    answers_file.write_text("".join(json.dumps(row) + "\n" for row in rows))
    events.log(f"The teacher answered {len(rows)} prompts; training the student on them.")
    student = {
        **spec,
        "config": {**spec["config"], "kind": "sft"},
        "train_file": str(answers_file),
        "eval_file": None,
        # The student starts from its own base; the teacher is not its starting point.
        "parent_path": None,
        "parent_kind": None,
    }
    if spec["config"].get("distill_method") == "gkd":
        student["teacher_path"] = spec["parent_path"]
        student["teacher_kind"] = spec.get("parent_kind")
        student["teacher_base_path"] = spec["parent_base_path"]
    result = train_mod.run_job(student, emit_result=False)
    if result.get("status") != "succeeded":
        return None
    result["distill"] = {
        "method": spec["config"].get("distill_method", "sequence"),
        "prompts": len(rows),
        "answers_sha256": hash_directory(out_dir).get("teacher_answers.jsonl", ""),
    }
    return result


def gkd_trainer(spec, model, tokenizer, train_ds, callbacks, args: dict[str, Any]):
    """TRL's GKD trainer (experimental in trl 1.x) with the teacher loaded as plain weights."""
    from trl.experimental.gkd import GKDConfig, GKDTrainer

    cfg = spec["config"]
    teacher = _load_full(spec["teacher_base_path"], spec["teacher_path"], spec["teacher_kind"])
    for name in ("eval_strategy", "eval_steps", "load_best_model_at_end"):
        args.pop(name, None)
    return GKDTrainer(
        model=model,
        teacher_model=teacher,
        args=GKDConfig(
            **args,
            max_length=int(cfg["max_length"]),
            max_new_tokens=int(cfg.get("distill_max_new_tokens") or 64),
            lmbda=float(cfg.get("gkd_lmbda", 0.5)),
            beta=float(cfg.get("gkd_beta", 0.5)),
            temperature=0.9,
        ),
        train_dataset=train_ds,
        processing_class=tokenizer,
        callbacks=callbacks,
    )


# --- measurements ------------------------------------------------------------------------


def _status_bytes(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    return None


def _peak_reset() -> int:
    """Start counting the peak resident memory afresh (Linux: writing 5 to clear_refs
    resets VmHWM), so the imports' transient peak is not taken for the model's; returns
    the memory resident now."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    return _status_bytes("VmRSS") or _peak_rss_bytes()


def _peak_rss_bytes() -> int:
    peak = _status_bytes("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@torch.no_grad()
def measure(
    *,
    base_path: str,
    path: str,
    kind: str,
    max_new_tokens: int = 32,
    prompts: tuple[str, ...] = MEASURE_PROMPTS,
) -> dict[str, Any]:
    """Size, peak memory, speed and latency of one version, generating on the CPU one prompt
    at a time (as a request is served). Run in a fresh process: peak memory is the process's
    high-water mark less what it held before loading."""
    torch.manual_seed(0)
    with contextlib.suppress(ImportError):
        # A quantized model imports torchao as it loads: import it before the count
        # starts, so the libraries' memory is not taken for the model's.
        import torchao  # noqa: F401
    before = _peak_reset()
    tokenizer = train_mod.load_tokenizer(path if kind != "base" else base_path)
    if kind == "adapter":
        model = _load_full(base_path, path, "adapter")
        size = weights_size(base_path) + weights_size(path)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype="auto")
        size = weights_size(path)
    model.eval()
    tokens, latencies = 0, []
    kwargs = {"max_new_tokens": max_new_tokens, "min_new_tokens": max_new_tokens}
    enc = tokenizer(prompts[0], return_tensors="pt")
    model.generate(**enc, max_new_tokens=2, pad_token_id=tokenizer.pad_token_id)  # warm-up
    for prompt in prompts:
        enc = tokenizer(prompt, return_tensors="pt")
        started = time.perf_counter()
        out = model.generate(**enc, **kwargs, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        latencies.append(time.perf_counter() - started)
        tokens += out.shape[1] - enc["input_ids"].shape[1]
    seconds = sum(latencies)
    return {
        "size_bytes": size,
        "peak_memory_bytes": max(0, _peak_rss_bytes() - before),
        "process_peak_bytes": _peak_rss_bytes(),
        "tokens_per_second": tokens / seconds if seconds else 0.0,
        "latency_seconds": seconds / len(latencies),
        "generated_tokens": tokens,
        "requests": len(latencies),
        "device": "cpu",
        "threads": torch.get_num_threads(),
    }


def measure_in_child(*, base_path: str, path: str, kind: str, max_new_tokens: int) -> dict:
    """`measure` in a fresh runner process (see the module's docstring)."""
    argv = [
        sys.executable,
        "-m",
        "training.runner",
        "measure",
        base_path,
        path,
        kind,
        str(max_new_tokens),
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
    if proc.returncode != 0:
        raise RuntimeError(f"measuring {path} failed: {proc.stderr.strip()[-800:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_compress_job(spec: dict[str, Any]) -> dict[str, Any]:
    """One compression job; the returned dict is also emitted as the `result` event."""
    started = time.perf_counter()
    cfg = spec["config"]
    kind = cfg["kind"]
    if kind not in KINDS:
        raise ValueError(f"kind: {kind!r} is not a compression kind.")
    out_dir = Path(spec["output_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / "final"
    events = EventWriter(spec.get("events_file"))
    phases = Phases(events)
    events.emit("environment", environment=train_mod.environment())
    set_seed(int(cfg.get("seed") or 0))
    if kind == "distill":
        trained = distill(spec, out_dir, events, phases)
        if trained is None:
            events.emit("cancelled", checkpoint=None)
            return {"status": "cancelled"}
        result = trained
        events = EventWriter(spec.get("events_file"))  # run_job closed its writer
        phases = Phases(events)
    else:
        events.emit("state", state="running")
        done = merge(spec, final, phases) if kind == "merge" else quantize(spec, final, phases)
        result = {
            "status": "succeeded",
            "path": str(final),
            "kind": "full",
            "files": hash_directory(final),
            **done,
        }
    phases.start("measuring", "Measuring the parent and the child (size, memory, speed)")
    max_new = int(cfg.get("measure_max_new_tokens") or 32)
    parent_kind = spec.get("parent_kind") or "full"
    parent_base = spec.get("parent_base_path") or spec["base_path"]
    result["measurements"] = {
        "parent": measure_in_child(
            base_path=parent_base,
            path=spec["parent_path"],
            kind=parent_kind,
            max_new_tokens=max_new,
        ),
        "child": measure_in_child(
            base_path=spec["base_path"],
            path=result["path"],
            kind=result["kind"],
            max_new_tokens=max_new,
        ),
    }
    result["seconds"] = time.perf_counter() - started
    write_json(out_dir / "result.json", result)
    events.emit("result", result=result)
    events.close()
    return result
