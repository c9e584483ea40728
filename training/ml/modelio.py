"""Loading, inspecting, converting and hashing models on disk."""

import hashlib
import json
import re
from pathlib import Path
from typing import Any

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")
_CHUNK = 1 << 20


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


def weights_sha256(directory: Path) -> str:
    """One hash over the weight files (name and content), so a tokenizer edit keeps it."""
    directory = Path(directory)
    digest = hashlib.sha256()
    files = sorted(
        p for p in directory.rglob("*") if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES)
    )
    if not files:
        raise FileNotFoundError(f"{directory} holds no weight files (*.safetensors or *.bin).")
    for path in files:
        digest.update(str(path.relative_to(directory)).encode())
        digest.update(bytes.fromhex(sha256_file(path)))
    return digest.hexdigest()


def convert_gguf(*, source_dir: Path, gguf_file: str, out_dir: Path) -> Path:
    """De-quantize a GGUF checkpoint once into a safetensors directory (fast later loads)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out_dir = Path(out_dir)
    if (out_dir / "config.json").exists() and any(out_dir.glob("*.safetensors")):
        return out_dir
    tokenizer = AutoTokenizer.from_pretrained(source_dir, gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(
        source_dir, gguf_file=gguf_file, dtype=torch.float32
    )
    # The GGUF quantizer refuses to serialise; the tensors are already de-quantized.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    partial = out_dir.with_name(out_dir.name + ".partial")
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


def inspect_model(path: str) -> dict[str, Any]:
    """What the registry records about a model, without loading its weights into memory."""
    from accelerate import init_empty_weights
    from torch import nn
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(path)
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config)
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
        "weights_sha256": weights_sha256(directory) if directory.exists() else "",
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
