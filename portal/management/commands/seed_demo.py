from django.core.management.base import BaseCommand

from portal.demo import demo_seed


class Command(BaseCommand):
    help = "Create the demo users (one per role) and the demo project; safe to run again."

    def handle(self, *args, **options):
        project, logins = demo_seed()
        self.stdout.write(f"Demo project: {project.name}")
        for login in logins:
            self.stdout.write(f"  {login.role:<12} {login.username} / {login.password}")
