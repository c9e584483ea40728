import pytest
from playwright.sync_api import expect

from core.models import Role
from tests.e2e.conftest import log_in
from tests.portal.factories import MembershipFactory, UserFactory, password_for
from tests.training.conftest import QUICK, data_files, tiny_base_model  # noqa: F401 - fixtures
from training import services
from training.models import SweepTrial

pytestmark = pytest.mark.django_db(transaction=True)

SPACE = {
    "learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    "lora_r": {"type": "categorical", "choices": [4, 8]},
}


def test_engineer_reads_a_sweeps_trials_chart_and_importances(
    page,
    project,
    tiny_base_model,  # noqa: F811
    data_files,  # noqa: F811
):
    engineer = UserFactory(username="sami")
    MembershipFactory(project=project, role=Role.ENGINEER, user=engineer)
    base = services.training_job_create(
        actor=engineer,
        project=project,
        name="base",
        kind="sft",
        method="lora",
        base_model=tiny_base_model,
        values={**QUICK, "eval_steps": 3},
        train_file=str(data_files["sft_train"]),
        eval_file=str(data_files["sft_val"]),
    )
    sweep = services.sweep_create(
        actor=engineer,
        project=project,
        name="lr search",
        base_job=base,
        search_space=SPACE,
        n_trials=3,
        concurrency=3,
    )
    # What three finished trials leave (no worker runs here): their objective values.
    for trial, value in zip(sweep.trials.order_by("number"), [1.5, 0.9, 2.4], strict=True):
        trial.state = SweepTrial.State.COMPLETE if value < 2 else SweepTrial.State.PRUNED
        trial.value = value
        trial.intermediate = {"3": value}
        trial.save()
    blocked = []
    page.on("console", lambda m: blocked.append(m.text) if "Content Security" in m.text else None)
    log_in(page, "sami", password_for("sami"))

    page.goto(f"/projects/{project.pk}/training/sweeps/")
    page.get_by_role("link", name="lr search").click()

    rows = page.get_by_test_id("sweep-trials").locator("tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(2)).to_have_attribute("data-state", "pruned")
    chart = page.get_by_test_id("sweep-chart").locator(".echart[data-ready=yes]")
    expect(chart.locator("canvas")).to_be_visible()
    axes = chart.evaluate(
        "el => window.portalCharts.instance(el).getOption().parallelAxis.map(a => a.name)"
    )
    assert axes == ["learning_rate", "lora_r", "eval_loss"]
    expect(page.get_by_test_id("sweep-importances")).to_contain_text("learning_rate")
    assert blocked == []
