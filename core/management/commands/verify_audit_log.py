import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from core import keys
from core.services.checkpoints import audit_log_verify
from core.signing import SigningKeyError, public_key_from_pem


class Command(BaseCommand):
    help = (
        "Walk the audit hash chain and hold it to every signed checkpoint (the file outside "
        "the database, the database's copies, and any given with --checkpoint); exit "
        "non-zero naming the first event or checkpoint that does not verify."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--public-key",
            type=Path,
            action="append",
            default=[],
            help="also trust checkpoints signed by this PEM public key (a retired key)",
        )
        parser.add_argument(
            "--checkpoint",
            type=Path,
            action="append",
            default=[],
            help="a checkpoint kept elsewhere (JSON, or JSON Lines), e.g. a dossier's "
            "audit/checkpoint.json",
        )

    def handle(self, *args, public_key: list[Path], checkpoint: list[Path], **options):
        trusted = [keys.audit_checkpoint_key().public_key()]
        try:
            trusted += [public_key_from_pem(p.read_bytes(), where=str(p)) for p in public_key]
        except (OSError, SigningKeyError) as error:
            raise CommandError(str(error)) from None
        report = audit_log_verify(trusted_keys=trusted, extra=_read_checkpoints(checkpoint))
        if not report.chain.ok:
            raise CommandError(f"audit log broken at {report.chain.first_break}")
        if report.problems:
            for problem in report.problems:
                self.stderr.write(f"  FAILED  {problem}")
            raise CommandError(
                f"audit log does not match a signed checkpoint: {report.problems[0]}"
            )
        if report.missing_outside:
            self.stderr.write(
                self.style.WARNING(
                    f"{report.missing_outside} checkpoints in the database are not in "
                    f"{report.file}: is PORTAL_AUDIT_CHECKPOINT_DIR the directory beat writes?"
                )
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"audit log verified: {report.chain.checked} events, head "
                f"{report.chain.head_hash}; {report.checkpoints} signed checkpoints match"
            )
        )


def _read_checkpoints(paths: list[Path]) -> list[tuple[str, object]]:
    entries: list[tuple[str, object]] = []
    for path in paths:
        try:
            text = path.read_text()
        except OSError as error:
            raise CommandError(f"{path}: cannot read: {error.strerror}") from None
        try:
            entries.append((str(path), json.loads(text)))
            continue
        except ValueError:
            pass
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    entries.append((f"{path} line {number}", json.loads(line)))
                except ValueError as error:
                    raise CommandError(f"{path} line {number}: not JSON ({error})") from None
    return entries
