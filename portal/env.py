"""Typed readers for settings that come from the environment.

Each helper fails loudly with ImproperlyConfigured instead of guessing, so a
mistyped deployment variable stops the process at start-up, not at 3 a.m.
"""

import ipaddress
import os

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

# Keys that have been published somewhere (tutorials, our own docs, Django's
# startproject template prefix). A deployment using one is as good as keyless.
KNOWN_PUBLIC_KEYS = {"changeme", "secret", "change-me", "your-secret-key", "insecure"}
# Published prefixes and fragments: Django's startproject key, the fixed test key this
# repository used to carry, the placeholder in docker/env.example ("replace-me-...").
KNOWN_PUBLIC_PREFIXES = ("django-insecure", "tests-only-")
KNOWN_PUBLIC_FRAGMENTS = ("replace-me", "changeme", "change-me")
SECRET_KEY_MIN_LENGTH = 50


def env_str(name: str, default: str | None = None) -> str:
    value = os.environ.get(name)
    if value is None:
        if default is None:
            raise ImproperlyConfigured(f"Set the {name} environment variable.")
        return default
    return value


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no).")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer.") from None


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number.") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={raw!r} is below {minimum:g}.")
    return value


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_str(name, default)
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={value!r} is not one of {', '.join(choices)}.")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [part.strip() for part in raw.split(",") if part.strip()]


# The portal mirrors to MLflow itself (MLFLOW_TRACKING_URI); the trainer's own MLflow
# callback would log every job twice. "all" would pick trackers by what happens to be installed.
REPORT_TO_REFUSED = {"mlflow", "all", "none"}


def env_report_to(name: str, default: list[str]) -> list[str]:
    """Comma-separated transformers `report_to` integrations (wandb, tensorboard...)."""
    names = env_list(name, default)
    refused = sorted(set(names) & REPORT_TO_REFUSED)
    if refused:
        raise ImproperlyConfigured(
            f"{name}: {', '.join(refused)} cannot be listed (MLflow is mirrored through "
            "MLFLOW_TRACKING_URI; name each tracker, or leave it empty for none)."
        )
    return names


def env_networks(name: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Comma-separated IP addresses or CIDR networks (`10.0.0.5, 10.1.0.0/16`); unset or
    empty: none. A malformed entry stops start-up rather than silently trusting nothing."""
    networks = []
    for part in env_list(name, []):
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"{name}: {part!r} is not an IP address or CIDR network."
            ) from None
    return networks


def validate_secret_key(value: str, *, name: str = "SECRET_KEY") -> str:
    """Raise unless `value` is long, not a published default and not Django's insecure key."""
    if not value:
        raise ImproperlyConfigured(f"Set {name}: production settings refuse to start without it.")
    lowered = value.lower()
    if (
        lowered in KNOWN_PUBLIC_KEYS
        or lowered.startswith(KNOWN_PUBLIC_PREFIXES)
        or any(fragment in lowered for fragment in KNOWN_PUBLIC_FRAGMENTS)
    ):
        raise ImproperlyConfigured(f"{name} is a published default; generate a new one.")
    if len(value) < SECRET_KEY_MIN_LENGTH:
        raise ImproperlyConfigured(
            f"{name} is {len(value)} characters; use at least {SECRET_KEY_MIN_LENGTH} "
            "(python -c 'import secrets; print(secrets.token_urlsafe(64))')."
        )
    if len(set(value)) < 5:
        raise ImproperlyConfigured(f"{name} has fewer than 5 distinct characters.")
    return value


def env_secret(name: str) -> str:
    """A required secret: present, long and not a known public value."""
    return validate_secret_key(os.environ.get(name, ""), name=name)
