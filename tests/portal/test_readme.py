import re
from pathlib import Path

from django.core.management import get_commands

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_manage_command_the_readme_names_exists():
    named = set(re.findall(r"manage\.py ([a-z_]+)", README))

    assert {"rotate_encryption_key", "dossier_keygen"} <= named
    assert named <= set(get_commands()), named - set(get_commands())


def test_readme_says_browser_tests_need_make_chromium():
    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()

    assert "make chromium" in README
    assert re.search(r"^chromium:", makefile, re.MULTILINE)
