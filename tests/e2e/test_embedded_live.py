"""`make demo`'s embedded mode (SQLite, the filesystem broker, no Redis): the web server and
the worker are separate processes, as `serve_demo` starts them, and the job page still shows
the worker's progress as it happens."""

import contextlib
import json
import os
import signal
import sys

import pytest
from playwright.sync_api import expect

from tests.support import servers
from tests.support.servers import ChildProcess, free_port
from tests.training.conftest import data_files  # noqa: F401 - fixture

SETUP = """
import json
from core import services
from core.models import Role
from training import services as training
admin = services.user_create(username="boss", password="boss-pass-1", is_staff=True,
                             created_by=None, validate=False)
eve = services.user_create(username="eve", password="eve-pass-1", created_by=admin,
                           validate=False)
project = services.project_create(name="Embedded", created_by=admin)
services.membership_add(project=project, user=eve, role=Role.ENGINEER, added_by=admin)
base = training.base_model_register(actor=admin, project=None, name="tiny-llama",
                                    source="local", path={model!r})
with open({train!r}, "rb") as handle:
    stored = training.training_file_store(project=project, upload=handle, name="train.jsonl")
job = training.training_job_create(
    actor=eve, project=project, name="embedded job", kind="sft", method="lora",
    base_model=base, train_file=stored["path"],
    values={{"max_steps": 20000, "max_length": 64, "learning_rate": 0.005, "logging_steps": 1,
            "save_steps": 1000, "lora_target_modules": ["q_proj", "v_proj"]}})
print(json.dumps({{"project": project.pk, "job": job.pk}}))
"""


@pytest.fixture
def embedded_env(tmp_path):
    return servers.embedded_env(tmp_path / "var")


# Migrating a fresh SQLite database and starting two servers take a while on two cores.
@pytest.mark.timeout(600)
def test_the_job_page_follows_the_worker_live_on_the_embedded_defaults(
    browser,
    embedded_env,
    tiny_model_dir,
    data_files,  # noqa: F811
    server_log_dir,
):
    servers.manage(embedded_env, "migrate", "--noinput")
    setup = SETUP.format(model=str(tiny_model_dir), train=str(data_files["sft_train"]))
    ids = json.loads(servers.manage(embedded_env, "shell", "-c", setup).strip().splitlines()[-1])
    port = free_port()
    # The two processes `serve_demo` starts for the web and for training, apart.
    web = ChildProcess(
        "embedded-daphne",
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port)]
        + ["portal.asgi:application"],
        embedded_env,
        server_log_dir,
    )
    worker = ChildProcess(
        "embedded-worker",
        [sys.executable, "-m", "celery", "-A", "portal", "worker", "-Q", "default,gpu"]
        + ["--concurrency", "1", "--without-gossip", "--without-mingle", "-l", "info"],
        embedded_env,
        server_log_dir,
        new_session=True,
    )
    context = browser.new_context(base_url=f"http://127.0.0.1:{port}")
    page = context.new_page()
    try:
        servers.wait_until_up(web, f"http://127.0.0.1:{port}/healthz/")
        page.goto("/accounts/login/")
        page.get_by_label("Username").fill("eve")
        page.get_by_label("Password").fill("eve-pass-1")
        page.get_by_role("button", name="Log in").click()
        page.goto(f"/projects/{ids['project']}/training/jobs/{ids['job']}/")
        page.evaluate("window.__sameDocument = 'yes'")

        step = page.get_by_test_id("latest-step")
        expect(step).not_to_have_text("0", timeout=150_000)
        first = int(step.inner_text())
        page.wait_for_function(
            "first => Number(document.querySelector('[data-testid=latest-step]').textContent)"
            " > first",
            arg=first,
            timeout=60_000,
        )
        expect(page.get_by_test_id("job-status")).to_have_text("Running")
        expect(page.get_by_test_id("job-phase")).to_contain_text("Training")
        expect(page.get_by_test_id("job-log")).to_contain_text("Pre-flight passed")
        assert page.evaluate("window.__sameDocument") == "yes"  # updated in place

        page.get_by_test_id("cancel-job").click()
        expect(page.get_by_test_id("job-status")).to_have_text("Cancelled", timeout=60_000)
    finally:
        context.close()
        # The whole worker (its pool too): the runner, in a session of its own, stops at its
        # next step once its parent is gone.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.proc.pid, signal.SIGKILL)
        worker.stop()
        web.stop()
