from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management.base import BaseCommand

from core.signing import key_fingerprint, private_key_pem


class Command(BaseCommand):
    help = "Print a new Ed25519 private key (PEM) for PORTAL_DOSSIER_SIGNING_KEY."
    # It makes the key the system checks ask for: it must run before one is configured.
    requires_system_checks: list = []

    def handle(self, *args, **options):
        key = Ed25519PrivateKey.generate()
        self.stdout.write(private_key_pem(key).decode(), ending="")
        self.stderr.write(f"key id {key_fingerprint(key.public_key())}")
