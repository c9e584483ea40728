"""Launch a training job from a YAML file, follow it, and exit non-zero unless it succeeds.

project: acme-support        # slug or id
user: eng                    # an engineer of that project
name: first-lora
kind: sft                    # sft | reward | dpo | grpo
method: lora                 # full | partial | lora | prompt_tuning
base_model: SmolLM2-135M-Instruct   # name or id; "default" registers the packaged one
preset: lora-quick           # optional
train_file: data/train.jsonl # or snapshot: <id>
eval_file: data/val.jsonl    # optional
hyperparameters: {max_steps: 50, learning_rate: 2.0e-4, num_processes: 2}
                             # num_processes: one per GPU (2 on a CPU: DDP over gloo);
                             # distributed_strategy: ddp | fsdp | zero2 | zero3
accept_leakage: false        # optional, for a snapshot whose leakage check found duplicates
parent_version: 3            # optional: continue from this model version
reward_version: 4            # GRPO: the reward-model version

A key this file does not know (`num_processes` at the top level, a typo) is refused with its
name, as the API refuses one: ignored, it would look as if it had taken effect.
"""

import time
from pathlib import Path

import yaml
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q
from django.http import Http404

from core.models import JOB_FINAL, JobStatus, Project, Role, User
from core.selectors import project_access_get
from training import presets, selectors, services
from training.services.execution import training_job_execute

POLL_S = 0.5
KEYS = (
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


class Command(BaseCommand):
    help = "Launch a training job from a YAML config, print its progress and wait for the end."

    def add_arguments(self, parser):
        parser.add_argument("config", help="path to the YAML job config")
        parser.add_argument(
            "--inline",
            action="store_true",
            help="run the job in this process instead of on a Celery gpu worker",
        )
        parser.add_argument("--timeout", type=float, default=0, help="give up after N seconds")

    def handle(self, *args, **options):
        path = Path(options["config"])
        try:
            config = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise CommandError(f"{path}: {error}") from None
        if not isinstance(config, dict):
            raise CommandError(f"{path}: expected a mapping of settings.")
        unknown = [key for key in config if key not in KEYS]
        if unknown:
            raise CommandError(
                "; ".join(f"{key}: {presets.unknown_key_message(key, KEYS)}" for key in unknown)
                + f" The keys are {', '.join(KEYS)}; training settings go under hyperparameters."
            )
        if not isinstance(config.get("hyperparameters") or {}, dict):
            raise CommandError("hyperparameters: expected a mapping of settings.")
        job = self._create(config, path.parent)
        self.stdout.write(f"job {job.pk} queued: {job.kind}/{job.method} on {job.base_model}")
        if options["inline"]:
            training_job_execute(job_id=job.pk)
        self._follow(job, options["timeout"])

    def _create(self, config: dict, here: Path):
        for key in ("project", "user", "base_model"):
            if key not in config:
                raise CommandError(f"the config needs `{key}`.")
        ref = str(config["project"])
        project = Project.objects.filter(
            Q(slug=ref) | Q(pk=int(ref)) if ref.isdigit() else Q(slug=ref)
        ).first()
        if project is None:
            raise CommandError(f"project: no project {ref!r}.")
        user = User.objects.filter(username=config["user"]).first()
        try:
            if user is None:
                raise Http404
            project_access_get(project_id=project.pk, user=user).require(Role.ENGINEER)
        except (Http404, PermissionDenied):
            raise CommandError(
                f"user: {config['user']!r} is not an engineer of {project}."
            ) from None
        try:
            base = self._base_model(project, user, config["base_model"])
            snapshot = None
            if config.get("snapshot"):
                from annotation.models import Snapshot

                snapshot = Snapshot.objects.filter(project=project, pk=config["snapshot"]).first()
                if snapshot is None:
                    raise CommandError(f"snapshot: no snapshot {config['snapshot']} in {project}.")
            versions = {
                key: selectors.model_version_get(project=project, version_id=config[key])
                for key in ("parent_version", "reward_version")
                if config.get(key)
            }
            return services.training_job_create(
                actor=user,
                project=project,
                name=str(config.get("name", "")),
                kind=config.get("kind", "sft"),
                method=config.get("method", "lora"),
                base_model=base,
                values=config.get("hyperparameters") or {},
                preset=config.get("preset"),
                snapshot=snapshot,
                accept_leakage=bool(config.get("accept_leakage", False)),
                train_file=self._path(here, config.get("train_file")),
                eval_file=self._path(here, config.get("eval_file")),
                **versions,
            )
        except ValidationError as error:
            detail = (
                "; ".join(f"{k}: {' '.join(v)}" for k, v in error.message_dict.items())
                if hasattr(error, "error_dict")
                else " ".join(error.messages)
            )
            raise CommandError(detail) from None
        except Http404 as missing:
            raise CommandError(str(missing)) from None

    def _base_model(self, project, user, ref):
        if ref == "default":
            # Converting the packaged model takes about a minute: say what is happening.
            return services.base_model_ensure_default(actor=user, on_phase=self._phase)
        models = selectors.base_model_list_for_project(project=project)
        found = models.filter(pk=ref).first() if str(ref).isdigit() else None
        found = found or models.filter(name=str(ref)).first()
        if found is None:
            raise CommandError(f"base_model: no base model {ref!r} for {project}.")
        return found

    def _phase(self, event: dict) -> None:
        if event.get("label"):
            self.stdout.write(f"base model: {event['label']}")

    @staticmethod
    def _path(here: Path, value):
        if not value:
            return None
        path = Path(value)
        return str(path if path.is_absolute() else (here / path).resolve())

    def _follow(self, job, timeout: float) -> None:
        started = time.monotonic()
        seen_metric = seen_log = 0
        status = None
        while True:
            job.refresh_from_db()
            for line in selectors.job_log_lines(job=job, after_id=seen_log):
                seen_log = line.pk
                self.stdout.write(f"[{line.level}] {line.message}")
            for metric in selectors.job_metrics(job=job, after_id=seen_metric):
                seen_metric = metric.pk
                shown = ", ".join(
                    f"{k}={v:.4g}"
                    for k, v in metric.values.items()
                    if k in ("loss", "eval_loss", "learning_rate", "tokens_per_second", "reward")
                )
                if shown:
                    self.stdout.write(f"step {metric.step}: {shown}")
            if job.status != status:
                if status in (None, JobStatus.QUEUED) and job.status != JobStatus.QUEUED:
                    launch = job.config.get("launch") or {}
                    self.stdout.write(
                        f"world size {launch.get('world_size', 1)} "
                        f"({launch.get('strategy', 'single')}"
                        + (f" over {launch['backend']}" if launch.get("backend") else "")
                        + ")"
                    )
                status = job.status
                self.stdout.write(f"status: {status}")
            if job.status in JOB_FINAL:
                break
            if timeout and time.monotonic() - started > timeout:
                raise CommandError(f"job {job.pk} still {job.status} after {timeout:.0f} s.")
            time.sleep(POLL_S)
        if job.status != JobStatus.SUCCEEDED:
            raise CommandError(f"job {job.pk} {job.status}: {job.error or 'no reason recorded'}")
        version = getattr(job, "model_version", None)
        self.stdout.write(self.style.SUCCESS(f"job {job.pk} succeeded: model version {version}"))
