import re

import pytest
from playwright.sync_api import expect

from core.models import Role
from tests.e2e.conftest import log_in
from tests.portal.factories import MembershipFactory, UserFactory, password_for
from tests.training.conftest import QUICK, data_files, tiny_base_model  # noqa: F401 - fixtures
from training import services
from training.models import TrainingMetric

pytestmark = pytest.mark.django_db(transaction=True)


def _job(engineer, project, base, files, name, learning_rate, losses):
    job = services.training_job_create(
        actor=engineer,
        project=project,
        name=name,
        kind="sft",
        method="lora",
        base_model=base,
        values={**QUICK, "learning_rate": learning_rate},
        train_file=str(files["sft_train"]),
    )
    for step, loss in enumerate(losses, start=1):
        TrainingMetric.objects.create(job=job, step=step, values={"loss": loss})
    return job


def test_engineer_compares_two_jobs_and_reads_a_value_by_hovering_the_chart(
    page,
    project,
    tiny_base_model,  # noqa: F811
    data_files,  # noqa: F811
):
    engineer = UserFactory(username="cora")
    MembershipFactory(project=project, role=Role.ENGINEER, user=engineer)
    slow = _job(engineer, project, tiny_base_model, data_files, "slow", 1e-4, [2.0, 1.875, 1.75])
    fast = _job(engineer, project, tiny_base_model, data_files, "fast", 5e-3, [2.1, 1.25, 0.5])
    blocked = []
    page.on("console", lambda m: blocked.append(m.text) if "Content Security" in m.text else None)
    log_in(page, "cora", password_for("cora"))

    page.goto(f"/projects/{project.pk}/training/")
    compare = page.get_by_test_id("compare-jobs")
    expect(compare).to_be_disabled()
    page.get_by_test_id(f"compare-job-{slow.pk}").check()
    page.get_by_test_id(f"compare-job-{fast.pk}").check()
    compare.click()

    expect(page).to_have_url(re.compile(r"/training/compare/\?jobs="))
    settings = page.get_by_test_id("compare-settings")
    expect(settings.locator("tr[data-setting=learning_rate]")).to_be_visible()
    expect(settings.locator("tr[data-setting=max_steps]")).to_be_hidden()
    page.get_by_test_id("show-all-settings").check()
    expect(settings.locator("tr[data-setting=max_steps]")).to_be_visible()

    chart = page.get_by_test_id("compare-loss-chart").locator(".echart[data-ready=yes]")
    expect(chart.locator("canvas")).to_be_visible()
    chart.scroll_into_view_if_needed()
    # The pointer goes where a user reads step 2: its column, halfway down the chart, where
    # the hidden "No data" label lies (it used to take the hover and empty the tooltip).
    x = chart.evaluate("el => window.portalCharts.instance(el).convertToPixel({xAxisIndex: 0}, 2)")
    box = chart.bounding_box()
    page.mouse.move(box["x"] + 10, box["y"] + box["height"] / 2)
    page.mouse.move(box["x"] + x, box["y"] + box["height"] / 2, steps=8)
    # ECharts' own tooltip box, as drawn for the mouse: step 2 and both jobs' loss there.
    tip = chart.locator(".echart-tooltip")
    expect(tip).to_be_visible()
    expect(tip).to_contain_text("step 2")
    expect(tip.locator(".echart-tip-row", has_text="slow #")).to_contain_text("1.875")
    expect(tip.locator(".echart-tip-row", has_text="fast #")).to_contain_text("1.25")
    assert blocked == []  # ECharts runs under the CSP without inline script or style
