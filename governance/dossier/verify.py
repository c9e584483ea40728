"""Checking a dossier is the standalone `dossier_verify` package's code (it needs only
`cryptography`), so that `manage.py verify_dossier`, the verify page and an auditor's
`dossier-verify` command cannot disagree. The portal's extra check, against its own
audit chain, is in governance.services.dossiers."""

from dossier_verify.verify import (
    AUDIT_CHECKPOINT,
    AUDIT_EXCERPT,
    VerifyReport,
    check_audit_checkpoint,
    check_audit_excerpt,
    verify_bundle,
)

__all__ = [
    "AUDIT_CHECKPOINT",
    "AUDIT_EXCERPT",
    "VerifyReport",
    "check_audit_checkpoint",
    "check_audit_excerpt",
    "verify_bundle",
]
