"""Virtual environments for programs the tests run but the portal does not depend on (the
standalone dossier verifier, the API client generator). Each holds only what it needs, so
its pins never meet ours. Wheels are kept under var/test-wheels and finished environments
under var/test-tools: only a machine's first run downloads anything."""

import fcntl
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.servers import ROOT

WHEELS = ROOT / "var" / "test-wheels"
TOOLS = ROOT / "var" / "test-tools"
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
OFFLINE = ["--no-index", "--find-links", str(WHEELS)]


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: S603
        command, capture_output=True, text=True, timeout=300, check=False, **kwargs
    )


def check(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def wheels_cached(*requirements: str) -> list[str]:
    """Wheels for `requirements` and all they need under var/test-wheels, downloaded if
    missing; answers the pip options that install from there alone."""
    WHEELS.mkdir(parents=True, exist_ok=True)
    if run([*PIP, "download", *OFFLINE, "--dest", str(WHEELS), *requirements]).returncode:
        check(run([*PIP, "download", "--only-binary=:all:", "--dest", str(WHEELS), *requirements]))
    return OFFLINE


def tool_venv(requirements_file: Path) -> Path:
    """A virtual environment under var/test-tools holding exactly the pins in
    `requirements_file`, made once and reused while the pins and our Python stay the same.
    Safe under pytest-xdist: one process builds it while the others wait."""
    pins = [
        line.strip()
        for line in requirements_file.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    key = hashlib.sha256("\n".join([sys.version, *pins]).encode()).hexdigest()[:12]
    venv = TOOLS / f"{requirements_file.stem}-{key}"
    done = venv / ".complete"
    TOOLS.mkdir(parents=True, exist_ok=True)
    with (TOOLS / f"{requirements_file.stem}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(venv, ignore_errors=True)  # a run killed half way
            offline = wheels_cached(*pins)
            check(run([sys.executable, "-m", "venv", "--without-pip", str(venv)]))
            python = str(venv / "bin" / "python")
            check(run([*PIP, "--python", python, "install", *offline, *pins]))
            done.touch()
    return venv
