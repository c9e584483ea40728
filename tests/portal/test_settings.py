"""Production settings: `check --deploy` is clean and a weak SECRET_KEY stops start-up."""

import os
import subprocess
import sys

import pytest

from tests.support.servers import ROOT

GOOD_KEY = "p4-" + "x9Qz" * 15


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
    )

    assert result.returncode == 0, result.stderr + result.stdout
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    ("key", "complaint"),
    [
        (None, "refuse to start without it"),
        ("", "refuse to start without it"),
        ("short-key", "use at least 50"),
        ("django-insecure-" + "a1b2c3" * 10, "published default"),
        ("changeme", "published default"),
        ("a" * 64, "distinct characters"),
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
