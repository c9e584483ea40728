"""Offline verification of Tuning Portal deployment dossiers (needs only `cryptography`)."""

from dossier_verify.keyset import KeySetError, TrustedKey
from dossier_verify.verify import VerifyReport, verify_bundle

__all__ = ["KeySetError", "TrustedKey", "VerifyReport", "verify_bundle"]
__version__ = "0.1.0"
