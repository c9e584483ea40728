import pytest
from playwright.sync_api import expect

from core.models import Role
from evaluation import services
from evaluation.models import Battle, Campaign, Contestant, GateRun, Judgment
from tests.e2e.conftest import log_in
from tests.e2e.steps import member, rating_gate_create_and_run
from tests.evaluation.factories import build_campaign, writing_snapshot
from tests.portal.factories import password_for
from training.services import base_model_register

pytestmark = pytest.mark.django_db(transaction=True)


def test_reviewer_completes_ten_blind_judgments_with_the_keyboard(page, project):
    engineer = member(project, Role.ENGINEER, "eve")
    campaign, made = build_campaign(engineer, project, prompts=8, contestants=3, attention_every=0)
    reviewer = member(project, Role.REVIEWER, "rita")
    log_in(page, "rita", password_for("rita"))
    page.goto(f"/projects/{project.pk}/review/{campaign.pk}/")
    keys = ["a", "b", "t", "x"]

    for n in range(1, 11):
        expect(page.get_by_test_id("response-a")).to_contain_text("Response A")
        expect(page.get_by_test_id("response-b")).to_contain_text("Response B")
        page.keyboard.press("4")  # helpfulness of A
        page.keyboard.press("2")  # helpfulness of B
        page.keyboard.press(keys[n % 4])
        expect(page.locator(f"body[data-pair-loads='{n}']")).to_have_count(1)

    judged = Judgment.objects.filter(reviewer=reviewer, submitted_at__isnull=False).order_by("pk")
    assert judged.count() == 10
    expected = [
        {"a": "a", "b": "b", "t": "tie", "x": "both_bad"}[keys[n % 4]] for n in range(1, 11)
    ]
    assert [j.outcome for j in judged] == expected
    assert all(j.criteria == {"helpfulness": {"a": 4, "b": 2}} for j in judged)
    assert all(j.seconds_spent > 0 for j in judged)
    html = page.content()
    assert all(c.label not in html for c in made)
    expect(page.get_by_test_id("progress")).to_contain_text("Judged 10 of 24")
    page.keyboard.press("?")
    expect(page.get_by_test_id("shortcuts")).to_be_visible()
    page.get_by_role("button", name="Shortcuts (?)").click()
    expect(page.get_by_test_id("shortcuts")).to_be_hidden()


def test_reviewer_who_misses_a_check_is_told_and_sees_cut_answers_marked(page, project):
    engineer = member(project, Role.ENGINEER, "ezra")
    # Blocks of one judgment: the first pair is a check.
    campaign, _ = build_campaign(engineer, project, prompts=4, contestants=2, attention_every=1)
    Battle.objects.filter(campaign=campaign, kind="real").update(truncated_x=True)
    member(project, Role.REVIEWER, "remy")
    log_in(page, "remy", password_for("remy"))
    page.goto(f"/projects/{project.pk}/review/{campaign.pk}/")
    expect(page.get_by_test_id("response-a")).to_contain_text("Response A")
    expect(page.get_by_test_id("attention-notice")).to_have_count(0)
    check = Judgment.objects.get(token=page.locator("#pair-form input[name=token]").input_value())
    assert check.is_attention

    page.keyboard.press("b" if check.left_is_x else "a")  # the off-topic answer

    expect(page.locator("body[data-pair-loads='1']")).to_have_count(1)
    expect(page.get_by_test_id("attention-notice")).to_contain_text(
        "The last pair was an attention check"
    )
    real = Judgment.objects.get(token=page.locator("#pair-form input[name=token]").input_value())
    assert not real.is_attention
    cut, whole = ("a", "b") if real.left_is_x else ("b", "a")
    expect(page.get_by_test_id(f"truncated-{cut}")).to_have_text("(truncated)")
    expect(page.get_by_test_id(f"truncated-{whole}")).to_have_count(0)


def test_engineer_sees_the_ratings_chart(page, project):
    engineer = member(project, Role.ENGINEER, "erin")
    campaign, made = build_campaign(engineer, project, prompts=6, contestants=3)
    reviewer = member(project, Role.REVIEWER, "ron")
    while (j := services.judgment_next(campaign=campaign, reviewer=reviewer)) is not None:
        best = made[0].pk
        outcome = (
            "a" if j.contestant_left_id == best else "b" if j.contestant_right_id == best else "tie"
        )
        services.judgment_submit(
            campaign=campaign, reviewer=reviewer, token=j.token, outcome=outcome
        )
    log_in(page, "erin", password_for("erin"))

    page.goto(f"/projects/{project.pk}/evaluation/campaigns/{campaign.pk}/")

    table = page.get_by_test_id("ratings-table")
    expect(table).to_contain_text("Contender-Quokka-0")
    expect(table.locator("tbody tr").first).to_contain_text("Contender-Quokka-0")
    chart = page.locator(".echart[data-ready=yes]").first
    expect(chart.locator("canvas")).to_be_visible()
    rows = chart.evaluate(
        "el => window.portalCharts.instance(el).getOption().series[0].data.length"
    )
    assert rows == 3
    expect(page.get_by_test_id("position-bias")).to_contain_text("decisive judgments")


@pytest.mark.celery
def test_engineer_generates_outputs_runs_a_campaign_and_gates_the_candidate(
    page,
    project,
    celery_worker,
    tiny_model_dir,  # noqa: F811
):
    tiny = base_model_register(
        actor=None, project=None, name="tiny-llama", source="local", path=str(tiny_model_dir)
    )
    engineer = member(project, Role.ENGINEER, "gina")
    snapshot = writing_snapshot(project, engineer, rows=60, name="support gold")
    log_in(page, "gina", password_for("gina"))
    page.goto(f"/projects/{project.pk}/evaluation/")

    # A prompt set from the snapshot's test split.
    form = page.get_by_test_id("prompt-set-from-snapshot-form")
    form.get_by_label("Name").fill("held-out")
    form.get_by_label("Snapshot").select_option(str(snapshot.pk))
    form.get_by_test_id("create-prompt-set-from-snapshot").click()
    expect(page.get_by_test_id("prompt-sets")).to_contain_text("held-out")

    # Two contestants: the tiny base model as is, and behind a prompt template.
    for label, template in (("tiny plain", ""), ("tiny briefly", "Answer briefly: {prompt}")):
        form = page.get_by_test_id("contestant-form")
        form.get_by_label("Label").fill(label)
        form.get_by_label("Base model").select_option(str(tiny.pk))
        form.get_by_label("Prompt template").fill(template)
        form.get_by_test_id("add-contestant").click()
        expect(page.get_by_test_id("contestants")).to_contain_text(label)

    # Generate; both jobs reach Succeeded in place.
    form = page.get_by_test_id("generation-form")
    form.get_by_label("Prompt set").select_option(label="held-out")
    form.get_by_label("tiny plain").check()
    form.get_by_label("tiny briefly").check()
    form.get_by_label("Max new tokens").fill("8")
    form.get_by_test_id("generate").click()
    jobs = page.get_by_test_id("generation-jobs").get_by_test_id("generation-job")
    expect(jobs).to_have_count(2)
    page.evaluate("window.__sameDocument = 'yes'")
    for n in range(2):
        expect(jobs.nth(n).get_by_test_id("generation-job-status")).to_have_text(
            "Succeeded", timeout=120_000
        )
    assert page.evaluate("window.__sameDocument") == "yes"  # updated in place, never reloaded

    # A campaign over both, judged (through the service) in favour of the templated one.
    form = page.get_by_test_id("campaign-form")
    form.get_by_label("Name").fill("tiny duel")
    form.get_by_label("Prompt set").select_option(label="held-out")
    form.get_by_label("tiny plain").check()
    form.get_by_label("tiny briefly").check()
    form.get_by_test_id("create-campaign").click()
    expect(page.get_by_test_id("campaigns")).to_contain_text("tiny duel")
    campaign = Campaign.objects.get(name="tiny duel")
    candidate = Contestant.objects.get(label="tiny briefly")
    reviewer = member(project, Role.REVIEWER, "rhea")
    while (j := services.judgment_next(campaign=campaign, reviewer=reviewer)) is not None:
        if j.is_attention:
            outcome = "a" if j.left_is_x else "b"  # x is the intact response
        else:
            outcome = "a" if j.contestant_left_id == candidate.pk else "b"
        services.judgment_submit(
            campaign=campaign, reviewer=reviewer, token=j.token, outcome=outcome
        )

    # A gate with the rating check, then a run of it.
    runs = rating_gate_create_and_run(
        page,
        name="release gate",
        campaign="tiny duel",
        candidate="tiny briefly",
        baseline="tiny plain",
    )
    run = GateRun.objects.get(gate__name="release gate")
    expect(runs.get_by_test_id("gate-run-outcome")).to_have_text(
        "passed" if run.passed else "failed"
    )
    expect(runs.get_by_test_id("gate-run-check")).to_contain_text(run.results[0]["reason"])
    assert run.candidate == candidate
