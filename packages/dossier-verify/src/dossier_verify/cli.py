"""`dossier-verify FILE.zip`: check a dossier without the portal.

Exit status 0: verified; 1: the dossier does not verify; 2: the check could not run
(arguments, an unreadable file or key list)."""

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from dossier_verify.keyset import (
    AUDIT_CHECKPOINT,
    DOSSIER,
    KeySetError,
    TrustedKey,
    for_purpose,
    key_from_pem_file,
    keyset_from_file,
    keyset_from_url,
)
from dossier_verify.verify import VerifyReport, verify_bundle

VERIFIED, NOT_VERIFIED, CANNOT_CHECK = 0, 1, 2


class Trust:
    """The keys to hold a dossier to. `dossier` None trusts the key inside the bundle; the
    same for `checkpoint` and the audit checkpoint's key."""

    def __init__(
        self, dossier: list[TrustedKey] | None, checkpoint: list[TrustedKey] | None
    ) -> None:
        self.dossier = dossier
        self.checkpoint = checkpoint


def add_trust_arguments(parser: argparse.ArgumentParser) -> None:
    """The key options, shared with the portal's `manage.py verify_dossier`."""
    parser.add_argument(
        "--public-key",
        type=Path,
        action="append",
        default=[],
        metavar="PEM",
        help="trust this Ed25519 public key (PEM) for the dossier's signature; repeatable",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--keys",
        type=Path,
        metavar="FILE.json",
        help="trust the keys of a saved key list (a portal's /.well-known/dossier-keys.json)",
    )
    source.add_argument(
        "--keys-url",
        metavar="URL",
        help="fetch the key list from this URL "
        "(https://PORTAL/.well-known/dossier-keys.json) and trust its keys",
    )


def trust_from_arguments(
    public_key: Sequence[Path], keys: Path | None, keys_url: str | None
) -> Trust | None:
    """The keys the options name, or None when they name none. Raises KeySetError."""
    given = [key_from_pem_file(path) for path in public_key]
    if keys is not None:
        listed = keyset_from_file(keys)
    elif keys_url is not None:
        listed = keyset_from_url(keys_url)
    else:
        return Trust(given, None) if given else None
    # A key list names the checkpoint keys too; a bare PEM says nothing about them.
    return Trust(given + for_purpose(listed, DOSSIER), for_purpose(listed, AUDIT_CHECKPOINT))


def verify_path(path: Path, trust: Trust) -> VerifyReport:
    """Raises OSError when the file cannot be opened."""
    with path.open("rb") as data:
        return verify_bundle(
            data, trusted_keys=trust.dossier, trusted_checkpoint_keys=trust.checkpoint
        )


def write_steps(report: VerifyReport, out: TextIO) -> None:
    for step in report.passed:
        out.write(f"  ok  {step}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dossier-verify",
        description="Verify a Tuning Portal deployment dossier offline: the manifest's "
        "signature, every file's sha256, the audit excerpt's hash chain, the signed audit "
        "checkpoint and the zip container. Exit status: 0 verified, 1 not verified, "
        "2 the check could not run.",
    )
    parser.add_argument("file", type=Path, help="the dossier .zip")
    add_trust_arguments(parser)
    parser.add_argument(
        "--trust-bundle-key",
        action="store_true",
        help="with no key given, trust the public key inside the bundle: this shows the "
        "dossier is intact, not who signed it",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        trust = trust_from_arguments(args.public_key, args.keys, args.keys_url)
    except KeySetError as error:
        sys.stderr.write(f"dossier-verify: {error}\n")
        return CANNOT_CHECK
    if trust is None:
        if not args.trust_bundle_key:
            parser.print_usage(sys.stderr)
            sys.stderr.write(
                "dossier-verify: name the keys to trust: --keys-url, --keys or --public-key "
                "(or --trust-bundle-key to check integrity only)\n"
            )
            return CANNOT_CHECK
        trust = Trust(None, None)
    try:
        report = verify_path(args.file, trust)
    except OSError as error:
        sys.stderr.write(f"dossier-verify: {args.file}: cannot read: {error.strerror}\n")
        return CANNOT_CHECK
    write_steps(report, sys.stdout)
    if not report.ok:
        sys.stderr.write(f"{args.file}: NOT verified: {report.problem}\n")
        return NOT_VERIFIED
    sys.stdout.write(f"{args.file}: {report}\n")
    return VERIFIED
