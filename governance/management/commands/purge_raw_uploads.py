from django.core.management.base import BaseCommand

from governance.services.protection import raw_uploads_purge


class Command(BaseCommand):
    help = (
        "Delete raw dataset uploads older than PORTAL_RAW_UPLOAD_RETENTION_DAYS (or --days); "
        "items, snapshots and hashes stay."
    )

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=None)

    def handle(self, *args, days: int | None, **options):
        purged = raw_uploads_purge(days=days)
        self.stdout.write(self.style.SUCCESS(f"deleted {len(purged)} raw upload files"))
