"""The portal's own keys: the Ed25519 keys that sign dossiers and audit checkpoints and
the Fernet keys that encrypt stored files. All come from the environment (see
portal/settings.py); DEBUG runs and tests without them get per-checkout keys under var/,
as the dev SECRET_KEY does."""

import functools
from pathlib import Path

from cryptography.fernet import Fernet, MultiFernet
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

from core.signing import (
    SigningKeyError,
    key_fingerprint,
    private_key_from_pem,
    private_key_pem,
)


def _dev_file(name: str, make: bytes) -> bytes:
    path = Path(settings.VAR_DIR) / "dev_keys" / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(make)
        path.chmod(0o600)
    return path.read_bytes()


def _configured_pem(name: str) -> tuple[bytes, str] | None:
    """The PEM in setting `name`, or in the file that `name`_FILE names; None if neither
    is set."""
    if getattr(settings, name):
        return getattr(settings, name).encode(), name
    if getattr(settings, f"{name}_FILE"):
        path = Path(getattr(settings, f"{name}_FILE"))
        try:
            return path.read_bytes(), f"{name}_FILE ({path})"
        except OSError as error:
            raise ImproperlyConfigured(f"{name}_FILE: cannot read {path}: {error}") from None
    return None


def _signing_pem() -> tuple[bytes, str]:
    configured = _configured_pem("PORTAL_DOSSIER_SIGNING_KEY")
    if configured is not None:
        return configured
    if settings.PORTAL_DEV_KEYS:
        pem = _dev_file("dossier_signing_key.pem", private_key_pem(Ed25519PrivateKey.generate()))
        return pem, "the development key under var/dev_keys"
    raise ImproperlyConfigured(
        "Set PORTAL_DOSSIER_SIGNING_KEY (an Ed25519 private key in PEM) or "
        "PORTAL_DOSSIER_SIGNING_KEY_FILE; make one with `manage.py dossier_keygen`."
    )


@functools.cache
def signing_key() -> Ed25519PrivateKey:
    pem, where = _signing_pem()
    try:
        return private_key_from_pem(pem, where=where)
    except SigningKeyError as error:
        raise ImproperlyConfigured(str(error)) from None


def signing_key_id() -> str:
    return key_fingerprint(signing_key().public_key())


def _checkpoint_pem() -> tuple[bytes, str] | None:
    configured = _configured_pem("PORTAL_AUDIT_CHECKPOINT_KEY")
    if configured is not None:
        return configured
    if settings.PORTAL_DEV_KEYS:
        pem = _dev_file("audit_checkpoint_key.pem", private_key_pem(Ed25519PrivateKey.generate()))
        return pem, "the development checkpoint key under var/dev_keys"
    return None


@functools.cache
def audit_checkpoint_key() -> Ed25519PrivateKey:
    """The key that signs audit checkpoints: its own when configured, else the dossier key
    (the checkpoint's payload type keeps the two kinds of signature apart)."""
    found = _checkpoint_pem()
    if found is None:
        return signing_key()
    pem, where = found
    try:
        return private_key_from_pem(pem, where=where)
    except SigningKeyError as error:
        raise ImproperlyConfigured(str(error)) from None


def _fernet_keys() -> list[str]:
    keys = list(settings.PORTAL_ENCRYPTION_KEYS)
    if keys:
        return keys
    if settings.PORTAL_DEV_KEYS:
        return [_dev_file("encryption_key", Fernet.generate_key()).decode().strip()]
    raise ImproperlyConfigured(
        "Set PORTAL_ENCRYPTION_KEYS (Fernet keys, newest first, comma separated); make one "
        "with `manage.py rotate_encryption_key --generate`."
    )


def _build_encryption_keys() -> MultiFernet:
    fernets = []
    for index, key in enumerate(_fernet_keys()):
        try:
            fernets.append(Fernet(key))
        except (ValueError, TypeError):
            raise ImproperlyConfigured(
                f"PORTAL_ENCRYPTION_KEYS: key {index + 1} is not a Fernet key "
                "(32 url-safe base64-encoded bytes)"
            ) from None
    return MultiFernet(fernets)


_KEY_SETTINGS = frozenset({"PORTAL_ENCRYPTION_KEYS", "PORTAL_DEV_KEYS", "VAR_DIR"})
_loaded: dict[str, MultiFernet] = {}


def encryption_keys() -> MultiFernet:
    """Every configured key; the first encrypts, any of them decrypts. Built once per
    process (item payloads decrypt through it a million times in a snapshot) and built
    again when a test changes the settings it comes from."""
    keys = _loaded.get("fernet")
    if keys is None:
        keys = _loaded["fernet"] = _build_encryption_keys()
    return keys


def primary_encryption_key() -> str:
    """The key that encrypts (the first configured one), for a worker process that
    encrypts without the settings: passed to it over a pipe, never on its command line."""
    return _fernet_keys()[0]


@receiver(setting_changed)
def _forget_keys(*, setting: str, **kwargs) -> None:
    if setting in _KEY_SETTINGS:
        _loaded.clear()


def clear_caches() -> None:
    """Forget the loaded keys (tests that change settings call this)."""
    signing_key.cache_clear()
    audit_checkpoint_key.cache_clear()
    _loaded.clear()
