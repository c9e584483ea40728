"""`tuning-portal`, the installed command, run as a user runs it: a child process
configured by environment variables."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.client.conftest import PROVENANCE, texts_file
from tests.portal.factories import api_key_for
from training.models import TrainingJob

pytestmark = pytest.mark.django_db(transaction=True)

COMMAND = str(Path(sys.executable).with_name("tuning-portal"))


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: S603 - the package's own command
        [COMMAND, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def portal_env(asgi_server, client_engineer, project) -> dict[str, str]:
    return {
        "TUNING_PORTAL_BASE_URL": asgi_server,
        "TUNING_PORTAL_API_KEY": api_key_for(client_engineer),
        "TUNING_PORTAL_PROJECT": str(project.pk),
    }


@pytest.mark.celery
def test_upload_then_status_from_the_command_line(celery_worker, portal_env, tmp_path):
    rows = texts_file(tmp_path, 3)
    uploaded = _run(
        portal_env,
        "--json",
        "upload",
        str(rows),
        "--source",
        PROVENANCE["source_description"],
        "--license",
        PROVENANCE["license"],
        "--consent-basis",
        PROVENANCE["consent_basis"],
        "--collection-date",
        PROVENANCE["collection_date"],
        "--timeout",
        "60",
    )
    assert uploaded.returncode == 0, uploaded.stderr
    upload = json.loads(uploaded.stdout)

    status = _run(portal_env, "status", upload["id"])

    assert upload["status"] == "succeeded"
    assert upload["rows"] == 3
    assert status.returncode == 0, status.stderr
    assert status.stdout.strip() == (
        f"upload {upload['id']}: succeeded, 3 rows, dataset {upload['dataset']}"
    )


def test_status_of_a_job_and_of_a_job_that_is_not_there(
    portal_env, client_engineer, project, tiny_base_model
):
    # Made as a row, not through the service: nothing queues it, so it stays queued.
    job = TrainingJob.objects.create(
        project=project,
        created_by=client_engineer,
        name="queued",
        kind="sft",
        method="lora",
        base_model=tiny_base_model,
    )

    found = _run(portal_env, "status", str(job.pk))
    missing = _run(portal_env, "status", "987654")

    assert found.returncode == 0, found.stderr
    assert found.stdout.startswith(f"job {job.pk} (sft/lora on tiny-llama): queued")
    assert missing.returncode == 1
    assert "404" in missing.stderr


def test_launch_refuses_a_spec_key_launch_job_does_not_know(portal_env, tmp_path):
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps({"base_model": "tiny-llama", "num_processes": 2}))

    launched = _run(portal_env, "launch", str(spec))

    assert launched.returncode == 2
    assert "num_processes" in launched.stderr
    assert not TrainingJob.objects.exists()


def test_launch_takes_exactly_the_keys_of_launch_job():
    # The client cannot import the portal (it installs on its own): its copy of the keys
    # is held to the command's here, so the two cannot drift apart.
    from training.management.commands.launch_job import KEYS
    from tuning_portal.cli import LAUNCH_KEYS

    assert LAUNCH_KEYS == KEYS
