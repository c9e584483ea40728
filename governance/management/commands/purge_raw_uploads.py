from django.core.management.base import BaseCommand

from governance.services.protection import uploads_purge


class Command(BaseCommand):
    help = (
        "Delete raw dataset uploads and training-file uploads older than "
        "PORTAL_RAW_UPLOAD_RETENTION_DAYS (or --days); items, snapshots, jobs and hashes stay."
    )

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=None)

    def handle(self, *args, days: int | None, **options):
        purged = uploads_purge(days=days)
        self.stdout.write(
            self.style.SUCCESS(
                f"deleted {len(purged['datasets'])} raw upload files and "
                f"{len(purged['training_files'])} training files"
            )
        )
