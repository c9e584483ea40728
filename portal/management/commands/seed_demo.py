from django.core.management.base import BaseCommand

from portal.demo import demo_seed
from portal.demo_annotation import EXTRA_ANNOTATORS, demo_seed_annotation
from portal.models import User


class Command(BaseCommand):
    help = (
        "Create the demo users (one per role), the demo project and its data at every stage; "
        "safe to run again."
    )

    def handle(self, *args, **options):
        project, logins = demo_seed()
        admin = User.objects.get(username="admin")
        dataset = demo_seed_annotation(project=project, admin=admin)
        self.stdout.write(f"Demo project: {project.name} (dataset: {dataset.row_count} items)")
        for login in logins:
            self.stdout.write(f"  {login.role:<12} {login.username} / {login.password}")
        for name in EXTRA_ANNOTATORS:
            self.stdout.write(f"  {'annotator':<12} {name} / {name}-demo")
