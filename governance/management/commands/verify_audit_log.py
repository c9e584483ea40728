from django.core.management.base import BaseCommand, CommandError

from governance.services import audit_chain_verify


class Command(BaseCommand):
    help = "Walk the audit hash chain; exit non-zero naming the first event that does not verify."

    def handle(self, *args, **options):
        report = audit_chain_verify()
        if not report.ok:
            raise CommandError(f"audit log broken at {report.first_break}")
        self.stdout.write(
            self.style.SUCCESS(
                f"audit log verified: {report.checked} events, head {report.head_hash}"
            )
        )
