"""Route a model to an OpenAI-compatible server the portal does not start: vLLM on a GPU
machine (see docker/compose.yaml) or any other URL.

    python manage.py register_engine --project acme-support --user eng \
        --model-version 7 --url http://vllm:8000/v1 --served-model acme-lora-7 --engine vllm

Deployments whose engine is `--engine` send that version's (or base model's) arm there.
"""

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

from core.models import Project, User
from serving.models import EngineKind
from serving.services.engines import engine_register_external
from training.models import BaseModel, ModelVersion


class Command(BaseCommand):
    help = "Register a vLLM or other OpenAI-compatible URL as the engine of a model."

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="slug or id")
        parser.add_argument("--user", required=True, help="an engineer or admin of the project")
        model = parser.add_mutually_exclusive_group(required=True)
        model.add_argument("--model-version", type=int, help="model version id")
        model.add_argument("--base-model", type=int, help="base model id")
        parser.add_argument("--url", required=True, help="the server's root, ending in /v1")
        parser.add_argument("--served-model", required=True, help="the name the server knows")
        parser.add_argument(
            "--engine", default=EngineKind.VLLM, choices=[EngineKind.VLLM, EngineKind.EXTERNAL]
        )

    def handle(self, *args, **options):
        key = options["project"]
        project = Project.objects.filter(
            Q(slug=key) | Q(pk=int(key) if key.isdigit() else None)
        ).first()
        actor = User.objects.filter(username=options["user"]).first()
        if project is None or actor is None:
            raise CommandError("No such project or user.")
        version = base = None
        if options["model_version"] is not None:
            version = ModelVersion.objects.filter(
                pk=options["model_version"], project=project
            ).first()
            if version is None:
                raise CommandError("No such model version in that project.")
        else:
            base = BaseModel.objects.filter(pk=options["base_model"]).first()
            if base is None:
                raise CommandError("No such base model.")
        try:
            instance = engine_register_external(
                actor=actor,
                project=project,
                model_version=version,
                base_model=base,
                base_url=options["url"],
                served_model=options["served_model"],
                engine=options["engine"],
            )
        except (PermissionDenied, ValidationError) as error:
            raise CommandError(str(error)) from None
        served = f"{instance.base_url} serves {instance.served_model}"
        self.stdout.write(f"Engine {instance.pk}: {served}")
