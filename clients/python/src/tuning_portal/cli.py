"""`tuning-portal`: the common steps from a shell. Configured by --base-url/--api-key/
--project or TUNING_PORTAL_BASE_URL, TUNING_PORTAL_API_KEY and TUNING_PORTAL_PROJECT.

    tuning-portal upload rows.jsonl --license CC-BY-4.0 --consent-basis "terms of service" \\
        --source "Support tickets, 2025" --collection-date 2025-01-01
    tuning-portal status 12            # a training job; an upload's uuid works too
    tuning-portal export 4 --format sft --split train -o train.jsonl
    tuning-portal launch job.yaml      # the fields of `manage.py launch_job`; --no-follow
    tuning-portal follow 12
    tuning-portal download-dossier 7 -o dossier.zip

Exit status: 0 on success, 1 when the portal refused or a job did not succeed, 2 for a
usage error.
"""

import argparse
import datetime
import json
import sys
import uuid
from collections.abc import Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from tuning_portal._client import Client
from tuning_portal._exceptions import APIStatusError, TuningPortalError
from tuning_portal.types import APIObject, Job, JobEvent, JobStatusEvent

# The keys of the portal's `manage.py launch_job` YAML, in its order.
LAUNCH_KEYS = (
    "project",
    "user",
    "name",
    "kind",
    "method",
    "base_model",
    "preset",
    "train_file",
    "eval_file",
    "snapshot",
    "accept_leakage",
    "hyperparameters",
    "parent_version",
    "reward_version",
)
# Metrics worth a line on a terminal; the rest stay in --json output.
SHOWN_METRICS = ("loss", "eval_loss", "learning_rate", "reward", "tokens_per_second")


class UsageError(TuningPortalError):
    pass


def _out(args: argparse.Namespace, value: Any, text: str) -> None:
    if args.json:
        print(json.dumps(_jsonable(value), default=str))
    else:
        print(text)


def _jsonable(value: Any) -> Any:
    if isinstance(value, APIObject):
        return value.raw
    if is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(getattr(value, k)) for k in asdict(value)}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _client(args: argparse.Namespace) -> Client:
    return Client(base_url=args.base_url, api_key=args.api_key, project=args.project)


def cmd_projects(client: Client, args: argparse.Namespace) -> int:
    projects = client.projects.list()
    lines = [f"{p.id}\t{p.slug}\t{p.name}\t{','.join(p.roles)}" for p in projects]
    _out(args, projects, "\n".join(lines))
    return 0


def cmd_upload(client: Client, args: argparse.Namespace) -> int:
    upload = client.datasets.upload(
        file=args.file,
        name=args.name,
        source_description=args.source,
        license=args.license,
        consent_basis=args.consent_basis,
        collection_date=args.collection_date,
        synthetic=args.synthetic,
        mapping=args.mapping,
        wait=not args.no_wait,
        timeout=args.timeout,
    )
    text = f"upload {upload.id}: {upload.status}, {upload.rows} rows"
    if upload.dataset is not None:
        text += f", dataset {upload.dataset}"
    if upload.error:
        text += f"\n{upload.error}"
    _out(args, upload, text)
    return 1 if upload.status == "failed" else 0


def cmd_status(client: Client, args: argparse.Namespace) -> int:
    ref = args.id
    if ref.isdigit():
        job = client.jobs.retrieve(int(ref))
        _out(args, job, _job_line(job))
        return 0
    try:
        upload_id = str(uuid.UUID(ref))
    except ValueError:
        raise UsageError(f"{ref!r} is neither a job id nor an upload id.") from None
    upload = client.uploads.retrieve(upload_id)
    text = f"upload {upload.id}: {upload.status}, {upload.rows} rows"
    if upload.dataset is not None:
        text += f", dataset {upload.dataset}"
    _out(args, upload, text)
    return 0


def _job_line(job: Job) -> str:
    text = f"job {job.id} ({job.kind}/{job.method} on {job.model}): {job.status}"
    progress = job.progress or {}
    if progress.get("label") and not job.done:
        done, total, unit = progress.get("done"), progress.get("total"), progress.get("unit", "")
        text += f", {progress['label']}"
        if total:
            text += f" {done}/{total} {unit}".rstrip()
    if job.fine_tuned_model is not None:
        text += f", model version {job.fine_tuned_model}"
    if job.error:
        text += f"\n{job.error}"
    return text


def cmd_export(client: Client, args: argparse.Namespace) -> int:
    written = client.exports.download(
        args.snapshot, args.output, format=args.format, split=args.split
    )
    _out(args, written, f"{written.rows} rows to {written.path} (sha256 {written.sha256})")
    return 0


def _read_spec(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as error:
        raise UsageError(f"{path}: {error}") from None
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml  # optional: pip install "tuning-portal-client[yaml]"
        except ImportError:
            raise UsageError(
                f"{path}: reading YAML needs PyYAML (pip install 'tuning-portal-client[yaml]'); "
                "or write the spec as JSON."
            ) from None
        spec = yaml.safe_load(text) or {}
    else:
        try:
            spec = json.loads(text)
        except ValueError as error:
            raise UsageError(f"{path}: {error}") from None
    if not isinstance(spec, dict):
        raise UsageError(f"{path}: expected a mapping of settings.")
    unknown = [key for key in spec if key not in LAUNCH_KEYS]
    if unknown:
        raise UsageError(
            f"{path}: unknown key(s) {', '.join(map(str, unknown))}. The keys are "
            f"{', '.join(LAUNCH_KEYS)}; training settings go under hyperparameters."
        )
    if not isinstance(spec.get("hyperparameters") or {}, dict):
        raise UsageError(f"{path}: hyperparameters: expected a mapping of settings.")
    return spec


def _project_id(client: Client, ref: Any) -> int:
    if isinstance(ref, int) or str(ref).isdigit():
        return int(ref)
    for project in client.projects.list():
        if project.slug == str(ref):
            return project.id
    raise UsageError(f"project: no project {ref!r} among yours.")


def _base_model_id(client: Client, project: int, ref: Any) -> int:
    if ref == "default":
        raise UsageError(
            "base_model: 'default' is registered on the server (`manage.py launch_job` or "
            "the base models page); name it or give its id here."
        )
    models = client.base_models.list(project=project)
    for model in models:
        if str(model.id) == str(ref) or model.name == str(ref):
            return model.id
    names = ", ".join(f"{m.name} ({m.id})" for m in models) or "none"
    raise UsageError(f"base_model: no base model {ref!r} in this project; there are: {names}.")


def cmd_launch(client: Client, args: argparse.Namespace) -> int:
    spec = _read_spec(args.spec)
    if "user" in spec:
        print("note: `user` is ignored; the API key's owner launches the job.", file=sys.stderr)
    if "project" in spec:
        project = _project_id(client, spec["project"])
    elif client.project is not None:
        project = client.project
    else:
        raise UsageError("the spec names no project; add `project:` or pass --project.")
    if "base_model" not in spec:
        raise UsageError("the spec needs `base_model`.")
    here = args.spec.parent
    files: dict[str, str] = {}
    for key, field in (("train_file", "training_file"), ("eval_file", "validation_file")):
        if spec.get(key):
            local = Path(spec[key])
            local = local if local.is_absolute() else here / local
            files[field] = client.files.create(file=local, project=project).id
    job = client.jobs.create(
        project=project,
        model=_base_model_id(client, project, spec["base_model"]),
        name=str(spec.get("name", "")),
        kind=spec.get("kind", "sft"),
        method=spec.get("method", "lora"),
        preset=spec.get("preset"),
        hyperparameters=spec.get("hyperparameters") or {},
        snapshot=spec.get("snapshot"),
        accept_leakage=bool(spec.get("accept_leakage", False)),
        parent_version=spec.get("parent_version"),
        reward_version=spec.get("reward_version"),
        **files,
    )
    _out(args, job, f"job {job.id} queued: {job.kind}/{job.method} on {job.model}")
    if args.no_follow:
        return 0
    args.job = job.id
    args.project_override = project
    return cmd_follow(client, args)


def cmd_follow(client: Client, args: argparse.Namespace) -> int:
    project = getattr(args, "project_override", None)
    last: Job | None = None
    for event in client.jobs.stream(args.job, project=project, poll_interval=args.interval):
        if args.json:
            print(json.dumps(_jsonable(event.job if isinstance(event, JobStatusEvent) else event)))
        elif isinstance(event, JobStatusEvent):
            print(f"status: {event.status}")
        elif line := _event_line(event):
            print(line)
        sys.stdout.flush()
        if isinstance(event, JobStatusEvent):
            last = event.job
    if last is None or last.status != "succeeded":
        reason = last.error if last is not None and last.error else "no reason recorded"
        print(f"job {args.job} {last.status if last else 'unknown'}: {reason}", file=sys.stderr)
        return 1
    if not args.json:
        print(f"job {last.id} succeeded: model version {last.fine_tuned_model}")
    return 0


def _event_line(event: JobEvent) -> str:
    if event.type == "metrics":
        shown = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, int | float) else f"{k}={v}"
            for k, v in event.data.items()
            if k in SHOWN_METRICS
        )
        return f"step {event.data.get('step')}: {shown}" if shown else ""
    return f"[{event.level}] {event.message}"


def cmd_cancel(client: Client, args: argparse.Namespace) -> int:
    job = client.jobs.cancel(args.job)
    _out(args, job, _job_line(job))
    return 0


def cmd_download_dossier(client: Client, args: argparse.Namespace) -> int:
    output = args.output or Path(f"dossier-v{args.version}.zip")
    written = client.dossiers.download(args.version, output, timeout=args.timeout)
    _out(args, written, f"{written.path}: {written.bytes} bytes, sha256 {written.sha256}")
    return 0


def _date(value: str) -> str:
    try:
        return datetime.date.fromisoformat(value).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date (YYYY-MM-DD)") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tuning-portal", description="The Tuning Portal from a shell."
    )
    parser.add_argument("--base-url", help="the portal's URL (TUNING_PORTAL_BASE_URL)")
    parser.add_argument("--api-key", help="an API key (TUNING_PORTAL_API_KEY)")
    parser.add_argument("--project", type=int, help="project id (TUNING_PORTAL_PROJECT)")
    parser.add_argument("--json", action="store_true", help="print JSON, one object a line")
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("projects", help="list your projects").set_defaults(run=cmd_projects)

    upload = commands.add_parser("upload", help="upload a dataset file with its provenance")
    upload.add_argument("file", type=Path)
    upload.add_argument("--name", default="")
    upload.add_argument("--source", required=True, help="where the data comes from")
    upload.add_argument("--license", required=True)
    upload.add_argument("--consent-basis", required=True)
    upload.add_argument("--collection-date", required=True, type=_date)
    upload.add_argument("--synthetic", action="store_true", help="rows were model-generated")
    upload.add_argument("--mapping", default="", help="a public data shape to map rows from")
    upload.add_argument("--no-wait", action="store_true", help="return once queued")
    upload.add_argument("--timeout", type=float, default=600.0)
    upload.set_defaults(run=cmd_upload)

    status = commands.add_parser("status", help="a training job's or an upload's status")
    status.add_argument("id", help="a job id, or an upload's uuid")
    status.set_defaults(run=cmd_status)

    export = commands.add_parser("export", help="download a snapshot's export (JSON Lines)")
    export.add_argument("snapshot", type=int)
    export.add_argument("--format", default="sft")
    export.add_argument("--split", choices=("train", "validation", "test"))
    export.add_argument("-o", "--output", type=Path, required=True)
    export.set_defaults(run=cmd_export)

    launch = commands.add_parser("launch", help="launch a job from a YAML or JSON spec")
    launch.add_argument("spec", type=Path)
    launch.add_argument("--no-follow", action="store_true", help="return once queued")
    launch.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    launch.set_defaults(run=cmd_launch)

    follow = commands.add_parser("follow", help="print a job's logs and metrics until it ends")
    follow.add_argument("job", type=int)
    follow.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    follow.set_defaults(run=cmd_follow)

    cancel = commands.add_parser("cancel", help="cancel a training job")
    cancel.add_argument("job", type=int)
    cancel.set_defaults(run=cmd_cancel)

    dossier = commands.add_parser("download-dossier", help="a model version's signed dossier")
    dossier.add_argument("version", type=int)
    dossier.add_argument("-o", "--output", type=Path)
    dossier.add_argument("--timeout", type=float, default=300.0)
    dossier.set_defaults(run=cmd_download_dossier)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with _client(args) as client:
            code: int = args.run(client, args)
            return code
    except UsageError as error:
        print(f"tuning-portal: {error}", file=sys.stderr)
        return 2
    except APIStatusError as error:
        print(f"tuning-portal: {error.message}", file=sys.stderr)
        return 1
    except (TuningPortalError, TimeoutError) as error:
        print(f"tuning-portal: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
