from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from core.at_rest import DecryptionError
from core.fields import EncryptedValueError
from core.services.protection import encrypted_columns
from governance.services.protection import encryption_rotate


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored upload (datasets, training files) and every value encrypted "
        "at rest (item payloads, prompts, model outputs, ...) under the first key of "
        "PORTAL_ENCRYPTION_KEYS, with a progress bar. "
        "Rotation: put a new key first (keep the old ones after it), run this, then drop "
        "the old keys."
    )

    # --generate makes the first key: it must run before any key is configured.
    requires_system_checks: list = []

    def add_arguments(self, parser):
        parser.add_argument(
            "--generate", action="store_true", help="print a new Fernet key and exit"
        )

    def handle(self, *args, generate: bool, **options):
        if generate:
            self.stdout.write(Fernet.generate_key().decode())
            return
        self._totals = {
            model._meta.label: model._default_manager.count() for model, _ in encrypted_columns()
        }
        try:
            done = encryption_rotate(on_progress=self._progress)
        except (DecryptionError, EncryptedValueError, ImproperlyConfigured) as error:
            raise CommandError(str(error)) from None
        self.stderr.write("")
        self.stdout.write(
            self.style.SUCCESS(
                f"re-encrypted {done['rotated']} files, encrypted {done['encrypted']} "
                f"plaintext files, re-encrypted {done['rows']} rows"
            )
        )

    def _progress(self, label: str, rows: int) -> None:
        total = max(self._totals.get(label, rows), rows, 1)
        filled = int(40 * rows / total)
        bar = f"[{'#' * filled}{'.' * (40 - filled)}]"
        self.stderr.write(f"\r{label} {bar} {rows}/{total} rows", ending="")
        self.stderr.flush()
