from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from core.signing import SigningKeyError, public_key_from_pem
from governance.dossier.verify import verify_bundle
from governance.services.dossiers import dossier_verify


class Command(BaseCommand):
    help = (
        "Verify a deployment dossier: signature, every file's sha256, the audit excerpt and "
        "the zip container. Exits non-zero naming the first thing that does not match."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path, help="the dossier .zip")
        parser.add_argument(
            "--public-key",
            type=Path,
            help="trust this PEM public key instead of the portal's own dossier key",
        )
        parser.add_argument(
            "--offline",
            action="store_true",
            help="do not compare the audit excerpt with this portal's audit chain",
        )

    def handle(self, *args, file: Path, public_key: Path | None, offline: bool, **options):
        try:
            data = file.open("rb")
        except OSError as error:
            raise CommandError(f"{file}: cannot read: {error.strerror}") from None
        with data:
            if public_key is not None:
                try:
                    trusted = public_key_from_pem(public_key.read_bytes(), where=str(public_key))
                except (OSError, SigningKeyError) as error:
                    raise CommandError(str(error)) from None
                report = verify_bundle(data, trusted_keys=[trusted])
            else:
                report = dossier_verify(data=data, check_chain=not offline)
        for step in report.passed:
            self.stdout.write(f"  ok  {step}")
        if not report.ok:
            raise CommandError(f"{file}: NOT verified: {report.problem}")
        self.stdout.write(self.style.SUCCESS(f"{file}: {report}"))
