import subprocess
import sys
from importlib.metadata import version

import pytest

from tests.support.servers import ROOT


@pytest.fixture(autouse=True)
def _own_checkpoint_dir(settings, tmp_path):
    """A checkpoint file outlives the database state of the test that signed it: each test
    gets its own, or a later test's chain would be held to an earlier test's checkpoint."""
    settings.PORTAL_AUDIT_CHECKPOINT_DIR = tmp_path / "audit_checkpoints"


@pytest.fixture(scope="session")
def clean_verifier(tmp_path_factory):
    """The standalone `dossier-verify` installed from packages/dossier-verify into a fresh
    virtual environment that holds nothing else (no Django, no portal): what an auditor
    at another company has. Its wheels are kept under var/test-wheels, so only the first
    run on a machine downloads cryptography."""
    wheels = ROOT / "var" / "test-wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    crypto = f"cryptography=={version('cryptography')}"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    offline = ["--no-index", "--find-links", str(wheels)]
    if _run([*pip, "download", *offline, "--dest", str(wheels), crypto]).returncode:
        _check(_run([*pip, "download", "--only-binary=:all:", "--dest", str(wheels), crypto]))
    built = tmp_path_factory.mktemp("verifier-wheel")
    _check(
        _run(
            [*pip, "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(built)]
            + [str(ROOT / "packages" / "dossier-verify")]
        )
    )
    venv = tmp_path_factory.mktemp("auditor") / "venv"
    _check(_run([sys.executable, "-m", "venv", "--without-pip", str(venv)]))
    python = venv / "bin" / "python"
    _check(
        _run(
            [*pip, "--python", str(python), "install", *offline, "--find-links", str(built)]
            + ["tuning-portal-dossier-verify"]
        )
    )
    return venv / "bin" / "dossier-verify"


def _run(command):
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)  # noqa: S603


def _check(result):
    assert result.returncode == 0, result.stdout + result.stderr
