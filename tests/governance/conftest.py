import sys
from importlib.metadata import version

import pytest

from tests.support.servers import ROOT
from tests.support.venvs import PIP, check, run, wheels_cached


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
    offline = wheels_cached(f"cryptography=={version('cryptography')}")
    built = tmp_path_factory.mktemp("verifier-wheel")
    check(
        run(
            [*PIP, "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(built)]
            + [str(ROOT / "packages" / "dossier-verify")]
        )
    )
    venv = tmp_path_factory.mktemp("auditor") / "venv"
    check(run([sys.executable, "-m", "venv", "--without-pip", str(venv)]))
    python = venv / "bin" / "python"
    check(
        run(
            [*PIP, "--python", str(python), "install", *offline, "--find-links", str(built)]
            + ["tuning-portal-dossier-verify"]
        )
    )
    return venv / "bin" / "dossier-verify"
