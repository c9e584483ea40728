import re

import pytest
from playwright.sync_api import expect

from core.models import JobStatus, Role
from tests.e2e.conftest import log_in
from tests.portal.factories import MembershipFactory, UserFactory, password_for
from tests.training.conftest import data_files  # noqa: F401 - fixture

# The fixtures above are imported by name; pytest finds them in this module.
from training import services
from training.models import TrainingJob

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.celery]


def test_engineer_launches_a_job_and_watches_the_loss_chart_grow_without_reloading(
    page,
    project,
    celery_worker,
    tiny_model_dir,  # noqa: F811
    data_files,  # noqa: F811
):
    services.base_model_register(
        actor=None, project=None, name="tiny-llama", source="local", path=str(tiny_model_dir)
    )
    MembershipFactory(project=project, role=Role.ENGINEER, user=UserFactory(username="eve"))
    log_in(page, "eve", password_for("eve"))
    page.goto(f"/projects/{project.pk}/training/new/")

    page.locator("#id_name").fill("browser job")
    page.locator("#id_preset").select_option("lora-quick")
    page.locator("#id_train_file").set_input_files(str(data_files["sft_train"]))
    page.locator("#id_max_steps").fill("400")
    page.locator("#id_max_length").fill("64")
    page.locator("#id_learning_rate").fill("0.005")
    page.locator("#id_lora_target_modules").fill("q_proj, v_proj")
    page.get_by_test_id("launch").click()

    expect(page).to_have_url(re.compile(r"/training/jobs/\d+/$"))
    page.evaluate("window.__sameDocument = 'yes'")
    step = page.get_by_test_id("latest-step")
    expect(step).not_to_have_text("0", timeout=60_000)
    first = int(step.inner_text())
    chart = page.get_by_test_id("loss-chart").locator(".echart[data-ready=yes]")
    expect(chart.locator("canvas")).to_be_visible()
    page.wait_for_function(
        "first => Number(document.querySelector('[data-testid=latest-step]').textContent) > first",
        arg=first,
        timeout=30_000,
    )
    assert page.evaluate("window.__sameDocument") == "yes"  # updated in place, never reloaded
    # The chart took new data through setOption: same element, fed from ?part=chart.
    expect(chart).to_have_attribute("data-updates", re.compile(r"^[1-9]\d*$"))
    expect(chart).to_have_attribute("data-empty", "no")
    expect(page.get_by_test_id("job-log")).to_contain_text("Pre-flight passed")

    page.get_by_test_id("cancel-job").click()
    expect(page.get_by_test_id("job-status")).to_have_text("Cancelled", timeout=30_000)
    job = TrainingJob.objects.get(name="browser job")
    assert job.status == JobStatus.CANCELLED
    assert job.config["lora_target_modules"] == ["q_proj", "v_proj"]


def test_engineer_tries_one_prompt_on_two_models_in_the_playground(
    page, project, celery_worker, tiny_model_dir
):
    services.base_model_register(
        actor=None, project=project, name="tiny-left", source="local", path=str(tiny_model_dir)
    )
    engineer = UserFactory(username="pat")
    MembershipFactory(project=project, role=Role.ENGINEER, user=engineer)
    reviewer = UserFactory(username="rory")
    MembershipFactory(project=project, role=Role.REVIEWER, user=reviewer)
    log_in(page, "pat", password_for("pat"))
    page.goto(f"/projects/{project.pk}/training/playground/")

    page.get_by_label("Prompt").fill("repeat cat")
    page.get_by_label("Max new tokens").fill("many")
    page.get_by_role("button", name="Generate both").click()
    expect(page.get_by_test_id("playground-error")).to_contain_text("Max new tokens")

    page.get_by_label("Max new tokens").fill("8")
    page.get_by_role("button", name="Generate both").click()
    expect(page.get_by_test_id("playground-output")).to_have_count(2, timeout=90_000)

    page.context.clear_cookies()
    log_in(page, "rory", password_for("rory"))
    response = page.goto(f"/projects/{project.pk}/training/playground/")
    assert response.status == 403
