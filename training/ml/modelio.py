"""Loading, inspecting, converting and hashing models on disk."""

import contextlib
import hashlib
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")
_CHUNK = 1 << 20


class Progress(Protocol):
    """What reports a long step's progress (training.ml.events.Phases)."""

    def start(
        self, name: str, label: str, *, total: int | None = None, unit: str = "", note: str = ""
    ) -> None: ...

    def advance(self, by: int = 1, *, to: int | None = None, force: bool = False) -> None: ...


class _Silent:
    def start(self, *args: Any, **kwargs: Any) -> None:
        return None

    def advance(self, *args: Any, **kwargs: Any) -> None:
        return None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def hash_directory(directory: Path) -> dict[str, str]:
    """sha256 of every file under `directory`, keyed by its relative path."""
    directory = Path(directory)
    return {
        str(path.relative_to(directory)): sha256_file(path)
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def weights_sha256(directory: Path, progress: Progress | None = None) -> str:
    """One hash over the weight files (name and content), so a tokenizer edit keeps it."""
    progress = progress or _Silent()
    directory = Path(directory)
    digest = hashlib.sha256()
    files = sorted(
        p for p in directory.rglob("*") if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES)
    )
    if not files:
        raise FileNotFoundError(f"{directory} holds no weight files (*.safetensors or *.bin).")
    size = sum(path.stat().st_size for path in files)
    progress.start("hashing", "Hashing the weights", total=max(1, size >> 20), unit="MiB")
    for path in files:
        file_digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                file_digest.update(chunk)
                progress.advance()
        digest.update(str(path.relative_to(directory)).encode())
        digest.update(file_digest.digest())
    return digest.hexdigest()


@contextlib.contextmanager
def _gguf_tensor_progress(progress: Progress) -> Iterator[None]:
    """transformers de-quantises a GGUF file tensor by tensor behind a console progress bar;
    report the same count through `progress` instead, for the page that waits on it."""
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    console_bar = getattr(gguf_utils, "tqdm", None)

    def counted(items: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        items = list(items)
        progress.start(
            "dequantising",
            "De-quantising the GGUF tensors to fp32",
            total=len(items),
            unit="tensors",
        )
        for item in items:
            yield item
            progress.advance()

    if console_bar is None:  # a transformers that reads GGUF otherwise: no count, no harm
        yield
        return
    gguf_utils.tqdm = counted
    try:
        yield
    finally:
        gguf_utils.tqdm = console_bar


def conversion_folder(out_dir: Path) -> Path:
    """Where a conversion writes before it is complete; renamed to `out_dir` at the end,
    so a conversion cut short never looks like a model."""
    return Path(out_dir).with_name(Path(out_dir).name + ".partial")


def convert_gguf(
    *, source_dir: Path, gguf_file: str, out_dir: Path, progress: Progress | None = None
) -> Path:
    """De-quantize a GGUF checkpoint once into a safetensors directory (fast later loads).
    The packaged SmolLM2 is a Q4_1 file: its fp32 weights are the de-quantised 4-bit ones,
    not the published bf16 weights, so their hash differs from those."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    progress = progress or _Silent()
    out_dir = Path(out_dir)
    if (out_dir / "config.json").exists() and any(out_dir.glob("*.safetensors")):
        return out_dir
    progress.start("reading_gguf", "Reading the tokenizer from the GGUF file")
    tokenizer = AutoTokenizer.from_pretrained(source_dir, gguf_file=gguf_file)
    with _gguf_tensor_progress(progress):
        model = AutoModelForCausalLM.from_pretrained(
            source_dir, gguf_file=gguf_file, dtype=torch.float32
        )
    progress.start("saving", "Saving the fp32 weights as safetensors")
    # The GGUF quantizer refuses to serialise; the tensors are already de-quantized.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    partial = conversion_folder(out_dir)
    shutil.rmtree(partial, ignore_errors=True)  # what a conversion cut short left
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.rename(out_dir)
    return out_dir


def _license_of(directory: Path) -> str:
    readme = directory / "README.md"
    if readme.exists():
        match = re.search(r"^license:\s*(\S+)", readme.read_text(errors="replace"), re.M)
        if match:
            return match.group(1)
    return ""


def inspect_model(path: str, progress: Progress | None = None) -> dict[str, Any]:
    """What the registry records about a model, without loading its weights into memory."""
    from accelerate import init_empty_weights
    from torch import nn
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    progress = progress or _Silent()
    progress.start("inspecting", "Reading the model's config and tokenizer")
    config = AutoConfig.from_pretrained(path)
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config)
    # Built empty, the model has not tied its output head to the embeddings yet: counted
    # untied, a tied model's embeddings would count twice (SmolLM2: 162.8 M for 134.5 M).
    model.tie_weights()
    linear = sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, mod in model.named_modules()
            if isinstance(mod, nn.Linear)
        }
    )
    tokenizer = AutoTokenizer.from_pretrained(path)
    directory = Path(path)
    return {
        "architecture": (config.architectures or [type(model).__name__])[0],
        "model_type": config.model_type,
        "parameter_count": sum(p.numel() for p in model.parameters()),
        "tokenizer": type(tokenizer).__name__,
        "chat_template": tokenizer.chat_template or "",
        "license": _license_of(directory) if directory.exists() else "",
        "weights_sha256": weights_sha256(directory, progress) if directory.exists() else "",
        "info": {
            "linear_modules": linear,
            "num_layers": getattr(config, "num_hidden_layers", None),
            "hidden_size": getattr(config, "hidden_size", None),
            "vocab_size": getattr(config, "vocab_size", None),
            "max_positions": getattr(config, "max_position_embeddings", None),
            "tie_word_embeddings": bool(getattr(config, "tie_word_embeddings", False)),
            "dtype": str(getattr(config, "dtype", None) or getattr(config, "torch_dtype", "")),
        },
    }


def write_json(path: Path, data: Any) -> None:
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True, default=str))


def merge_adapters(*, base_path: str, adapters: list[str], out_dir: Path) -> Path:
    """Fold LoRA adapters into their base, in order (a version trained on top of another
    adapter carries its parent's too), and save plain safetensors weights and the last
    adapter's tokenizer to `out_dir`: what an engine without adapter support loads.
    Done once: an existing complete folder is returned as it is."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out_dir = Path(out_dir)
    if (out_dir / "config.json").exists() and any(out_dir.glob("*.safetensors")):
        return out_dir
    # The weights' own dtype: merging keeps a bf16 base bf16 rather than doubling it.
    model = AutoModelForCausalLM.from_pretrained(base_path, dtype="auto")
    for adapter in adapters:
        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    with_tokenizer = [p for p in [*reversed(adapters), base_path] if _has_tokenizer(Path(p))]
    tokenizer = AutoTokenizer.from_pretrained(with_tokenizer[0] if with_tokenizer else base_path)
    partial = conversion_folder(out_dir)
    shutil.rmtree(partial, ignore_errors=True)  # what a merge cut short left
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.rename(out_dir)
    return out_dir


def _has_tokenizer(directory: Path) -> bool:
    return (directory / "tokenizer_config.json").exists()
