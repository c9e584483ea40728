"""Production settings: `check --deploy` is clean and a weak SECRET_KEY stops start-up."""

import os
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from core.signing import private_key_pem
from tests.support.servers import ROOT

GOOD_KEY = "p4-" + "x9Qz" * 15
ENV_EXAMPLE_KEY = next(
    line.split("=", 1)[1].strip()
    for line in (ROOT / "docker" / "env.example").read_text().splitlines()
    if line.startswith("SECRET_KEY=")
)
FERNET_KEY = Fernet.generate_key().decode()
PRODUCTION_KEYS = {
    "PORTAL_ENCRYPTION_KEYS": FERNET_KEY,
    "PORTAL_DOSSIER_SIGNING_KEY": private_key_pem(Ed25519PrivateKey.generate()).decode(),
}


def _manage(*args, **env):
    clean = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "SECRET_KEY",
            "DEBUG",
            "DJANGO_SETTINGS_MODULE",
            "DATABASE_URL",
            "DJANGO_ALLOW_ASYNC_UNSAFE",
        }
    }
    clean.update(DJANGO_SETTINGS_MODULE="portal.settings", **env)
    return subprocess.run(  # noqa: S603
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_deploy_check_passes_with_production_settings():
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        SECRET_KEY=GOOD_KEY,
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/portal",
        ALLOWED_HOSTS="portal.example.org",
        **PRODUCTION_KEYS,
    )

    assert result.returncode == 0, result.stderr + result.stdout
    assert "no issues" in result.stdout


def test_production_without_its_keys_stops_at_the_system_checks():
    result = _manage(
        "check",
        SECRET_KEY=GOOD_KEY,
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/portal",
        ALLOWED_HOSTS="portal.example.org",
    )

    assert result.returncode != 0
    assert "governance.E001" in result.stderr
    assert "Set PORTAL_ENCRYPTION_KEYS" in result.stderr
    assert "governance.E002" in result.stderr
    assert "PORTAL_DOSSIER_SIGNING_KEY" in result.stderr


def test_a_malformed_encryption_key_is_named_at_start_up():
    result = _manage(
        "check",
        SECRET_KEY=GOOD_KEY,
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/portal",
        **{**PRODUCTION_KEYS, "PORTAL_ENCRYPTION_KEYS": f"{FERNET_KEY},not-a-key"},
    )

    assert result.returncode != 0
    assert "governance.E001" in result.stderr
    assert "key 2 is not a Fernet key" in result.stderr


def test_the_key_commands_run_before_any_key_is_configured():
    env = {"SECRET_KEY": GOOD_KEY, "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/portal"}

    fernet = _manage("rotate_encryption_key", "--generate", **env)
    signing = _manage("dossier_keygen", **env)

    assert fernet.returncode == 0, fernet.stderr
    assert len(fernet.stdout.strip()) == 44
    assert signing.returncode == 0, signing.stderr
    assert "PRIVATE KEY" in signing.stdout


@pytest.mark.parametrize(
    ("key", "complaint"),
    [
        (None, "refuse to start without it"),
        ("", "refuse to start without it"),
        ("short-key", "use at least 50"),
        ("django-insecure-" + "a1b2c3" * 10, "published default"),
        ("changeme", "published default"),
        ("a" * 64, "distinct characters"),
        # The fixed key the test settings used to carry, and variants of its pattern.
        ("tests-only-" + "k3y-" * 12, "published default"),
        ("tests-only-" + "x9Qz" * 15, "published default"),
        # docker/env.example's placeholder, also when lengthened to pass the length rule.
        (ENV_EXAMPLE_KEY, "published default"),
        (ENV_EXAMPLE_KEY + "-" + "x9Qz" * 10, "published default"),
    ],
)
def test_production_refuses_weak_secret_key(key, complaint):
    env = {} if key is None else {"SECRET_KEY": key}

    result = _manage("check", **env)

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert complaint in result.stderr


def test_embedded_defaults_start_without_any_settings(tmp_path):
    result = _manage("check", DEBUG="1", PORTAL_VAR_DIR=str(tmp_path))

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "dev_secret_key").stat().st_mode & 0o077 == 0
