from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError
from dossier_verify.cli import (
    CANNOT_CHECK,
    NOT_VERIFIED,
    add_trust_arguments,
    trust_from_arguments,
    verify_path,
)
from dossier_verify.keyset import KeySetError

from governance.services.dossiers import dossier_verify


class Command(BaseCommand):
    help = (
        "Verify a deployment dossier: signature, every file's sha256, the audit excerpt and "
        "the zip container, with the same code as the standalone `dossier-verify`. Without "
        "key options it trusts this portal's published keys and also compares the audit "
        "excerpt with this portal's chain. Exit status: 0 verified, 1 not verified (naming "
        "the first thing that does not match), 2 the check could not run."
    )
    # With the keys named on the command line it needs nothing configured: no SECRET_KEY,
    # no database, no signing key (manage.py lets it start without a SECRET_KEY).
    requires_system_checks: list = []

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path, help="the dossier .zip")
        add_trust_arguments(parser)
        parser.add_argument(
            "--offline",
            action="store_true",
            help="do not compare the audit excerpt with this portal's audit chain",
        )

    def handle(
        self,
        *args,
        file: Path,
        public_key: list[Path],
        keys: Path | None,
        keys_url: str | None,
        offline: bool,
        **options,
    ):
        try:
            trust = trust_from_arguments(public_key, keys, keys_url)
            if trust is not None:
                report = verify_path(file, trust)
            else:
                with file.open("rb") as data:
                    report = dossier_verify(data=data, check_chain=not offline)
        except KeySetError as error:
            raise CommandError(str(error), returncode=CANNOT_CHECK) from None
        except OSError as error:
            raise CommandError(
                f"{file}: cannot read: {error.strerror}", returncode=CANNOT_CHECK
            ) from None
        except (ImproperlyConfigured, DatabaseError) as error:
            raise CommandError(
                f"cannot read this portal's keys ({error}); name the keys to trust instead: "
                "--keys-url, --keys or --public-key",
                returncode=CANNOT_CHECK,
            ) from None
        for step in report.passed:
            self.stdout.write(f"  ok  {step}")
        if not report.ok:
            raise CommandError(f"{file}: NOT verified: {report.problem}", returncode=NOT_VERIFIED)
        self.stdout.write(self.style.SUCCESS(f"{file}: {report}"))
