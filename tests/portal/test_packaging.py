import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_building_the_package_prints_no_deprecation_warnings(tmp_path):
    # `make demo` installs the project with pip, which shows the build backend's warnings.
    build = (
        "import sys; from setuptools import build_meta; "
        "build_meta.prepare_metadata_for_build_editable(sys.argv[1])"
    )

    done = subprocess.run(  # noqa: S603 - fixed argv
        [sys.executable, "-W", "default", "-c", build, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )

    assert "Deprecat" not in done.stderr, done.stderr
