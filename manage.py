#!/usr/bin/env python
import os
import secrets
import sys


def _reads_no_secret(argv: list[str]) -> bool:
    """Commands that make the first keys, or check a dossier against keys given on the
    command line: they must run where no SECRET_KEY is configured yet."""
    command = argv[1] if len(argv) > 1 else ""
    return command in ("dossier_keygen", "verify_dossier") or (
        command == "rotate_encryption_key" and "--generate" in argv
    )


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    if _reads_no_secret(sys.argv) and not os.environ.get("SECRET_KEY"):
        # Settings refuse to load without one; these commands sign nothing with it, so a
        # throwaway key for this process only stands in.
        os.environ["SECRET_KEY"] = secrets.token_urlsafe(64)
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
