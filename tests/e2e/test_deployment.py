import re

import pytest
from playwright.sync_api import expect

from core.models import Role
from serving.models import DeploymentKey
from serving.services.deployments import deployment_place
from tests.e2e.conftest import log_in
from tests.portal.factories import MembershipFactory, UserFactory, password_for
from tests.serving.factories import deployment, version
from tests.serving.telemetry_rows import record

pytestmark = pytest.mark.django_db(transaction=True)

SERIES_NAMES = "el => window.portalCharts.instance(el).getOption().series.map(s => s.name)"
# The canary's requests drawn on the requests-per-second chart, summed over its buckets.
CANARY_SUM = """el => {
  const s = window.portalCharts.instance(el).getOption().series.find(s => s.name === 'canary');
  return s ? s.data.reduce((t, p) => t + p[1], 0) : 0;
}"""


def test_engineer_watches_live_canary_and_stable_charts_creates_a_key_and_pauses(page, project):
    engineer = UserFactory(username="erin")
    MembershipFactory(project=project, role=Role.ENGINEER, user=engineer)
    dep = deployment(project, engineer, name="support-bot")
    dep = deployment_place(
        actor=engineer, deployment=dep, arm="canary", version=version(project, stage="canary")
    )
    for ago in (40, 70, 100):
        record(dep, arm="stable", ago_s=ago, latency_ms=120)
    record(dep, arm="canary", ago_s=40, latency_ms=300)
    blocked = []
    page.on("console", lambda m: blocked.append(m.text) if "Content Security" in m.text else None)
    log_in(page, "erin", password_for("erin"))

    page.goto(f"/projects/{project.pk}/")
    page.get_by_test_id("deployments-link").click()
    page.get_by_role("link", name="support-bot").click()
    expect(page).to_have_url(re.compile(rf"/deployments/{dep.pk}/$"))

    rps = page.get_by_test_id("chart-rps").locator(".echart[data-ready=yes]")
    expect(rps.locator("canvas")).to_be_visible()
    assert rps.evaluate(SERIES_NAMES) == ["stable", "canary"]
    latency = page.get_by_test_id("chart-latency").locator(".echart[data-ready=yes]")
    expect(latency).to_have_attribute("data-empty", "no")
    assert latency.evaluate(SERIES_NAMES) == [
        "stable p50",
        "stable p95",
        "canary p50",
        "canary p95",
    ]
    before = rps.evaluate(CANARY_SUM)
    assert before > 0

    # A request arrives while the page is open: the next poll draws it, no reload.
    page.evaluate("window.__sameDocument = 'yes'")
    record(dep, arm="canary", ago_s=1, latency_ms=250)
    page.wait_for_function(
        f"before => ({CANARY_SUM})(document.querySelector('[data-testid=chart-rps] .echart'))"
        " > before + 1e-9",
        arg=before,
        timeout=20_000,
    )
    assert page.evaluate("window.__sameDocument") == "yes"
    expect(page.get_by_test_id("deployment-charts")).to_have_attribute(
        "data-updates", re.compile(r"^[1-9]\d*$")
    )

    keys = page.get_by_test_id("key-form")
    keys.get_by_label("Name").fill("ci client")
    keys.get_by_test_id("create-key").click()
    lines = page.get_by_test_id("new-key-lines")
    expect(lines).to_contain_text("export OPENAI_BASE_URL=http://")
    expect(lines).to_contain_text("/v1")
    secret = re.search(r"OPENAI_API_KEY=(sk-tp-\S+)", lines.inner_text()).group(1)
    key = DeploymentKey.objects.get(deployment=dep)
    assert secret.startswith(key.prefix)

    page.goto(f"/projects/{project.pk}/deployments/{dep.pk}/")
    expect(page.get_by_test_id("key-row")).to_have_attribute("data-prefix", key.prefix)
    expect(page.get_by_test_id("new-key")).to_have_count(0)
    assert secret not in page.content()  # shown once

    expect(page.get_by_test_id("rollout-state")).to_have_text("Progressing")
    page.get_by_test_id("rollout-pause").click()
    expect(page.get_by_test_id("rollout-state")).to_have_text("Paused")
    expect(page.get_by_test_id("decision").first).to_have_attribute("data-kind", "pause")
    assert blocked == []
