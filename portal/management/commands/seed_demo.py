from django.core.management.base import BaseCommand

from core.models import User
from portal.demo import demo_login_lines, demo_seed
from portal.demo_annotation import demo_seed_annotation
from portal.demo_pipeline import demo_pipeline_start
from portal.demo_serving import demo_gateway_line


class Command(BaseCommand):
    help = (
        "Create the demo users (one per role), the demo project and its data at every stage; "
        "safe to run again."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--base-model-dir",
            default="",
            help="Train the demo job on this local model instead of the packaged SmolLM2 "
            "(a folder under TRAINING_MODEL_ROOTS).",
        )

    def handle(self, *args, base_model_dir="", **options):
        project, _ = demo_seed()
        admin = User.objects.get(username="admin")
        dataset = demo_seed_annotation(project=project, admin=admin)
        self.stdout.write(f"Demo project: {project.name} (dataset: {dataset.row_count} items)")
        job = demo_pipeline_start(project=project, base_model_dir=base_model_dir)
        if job is None:
            self.stdout.write("No packaged base model: the demo has no training job.")
        else:
            self.stdout.write(
                f"Training job {job.name!r}: {job.get_status_display().lower()}. The demo "
                "worker trains it, then generates, judges, gates, signs off and builds the "
                "dossier; the project page shows how far it got."
            )
        for line in demo_login_lines():
            self.stdout.write(line)
        gateway = demo_gateway_line()
        if gateway:
            self.stdout.write(f"Demo deployment's gateway, once served: {gateway}")
