from cryptography.fernet import Fernet
from django.core.management.base import BaseCommand, CommandError

from governance.at_rest import DecryptionError
from governance.services.protection import encryption_rotate


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored upload under the first key of PORTAL_ENCRYPTION_KEYS. "
        "Rotation: put a new key first (keep the old ones after it), run this, then drop the "
        "old keys."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--generate", action="store_true", help="print a new Fernet key and exit"
        )

    def handle(self, *args, generate: bool, **options):
        if generate:
            self.stdout.write(Fernet.generate_key().decode())
            return
        try:
            done = encryption_rotate()
        except DecryptionError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(
            self.style.SUCCESS(
                f"re-encrypted {done['rotated']} files, encrypted {done['encrypted']} "
                "plaintext files"
            )
        )
