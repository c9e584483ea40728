import json
import re

import pytest
from playwright.sync_api import Page, expect

from annotation.models import Annotation, Dataset, GoldLabel, Item, QualityCheck, Snapshot
from core.models import JobStatus, Role
from evaluation.models import Campaign, Contestant, GateRun, GenerationJob, Judgment
from governance.models import Dossier, SignOff
from tests.e2e.conftest import log_in
from tests.e2e.steps import dossier_build_download_verify, rating_gate_create_and_run
from tests.portal.factories import MembershipFactory, UserFactory, password_for
from training.models import ModelVersion, TrainingJob
from training.services import base_model_register

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.celery]

# Ten support answers to review. The annotators edit the drafts; r05's typo is fixed by both
# in the same way, and on r03 and r07 the second annotator rewrites the answer.
ROWS = [
    ("r01", "How do I reset my password?", "Click 'Forgot password' on the sign-in page."),
    ("r02", "Can I change my delivery address?", "Yes, until the parcel has shipped."),
    ("r03", "Why was my card declined?", "Your bank refused the payment."),
    ("r04", "Where is my invoice?", "Invoices are under Account, then Billing."),
    ("r05", "When will my refund arrive?", "Your refund is on it's way within 5 days."),
    ("r06", "Do you ship to Norway?", "We ship to every country in the EEA, Norway included."),
    ("r07", "How can I cancel my subscription?", "Write to us."),
    ("r08", "Is there a student discount?", "Students get 20% off with a valid student card."),
    ("r09", "What are your opening hours?", "Support answers chats from 8:00 to 20:00 CET."),
    ("r10", "Can I pay by bank transfer?", "Bank transfer works for orders above 50 EUR."),
]
FIXED = {"r05": "Your refund is on its way within 5 days."}
REWRITTEN = {
    "r03": "The bank declined the payment; try another card or call your bank.",
    "r07": "Go to Account, then Subscription, and press Cancel; it ends this month.",
}
GUIDELINE = "Fix **factual errors** and typos in the draft; keep the answer short and friendly."
BASE_LABEL = "baseline-stock"


def _as(page: Page, username: str) -> None:
    """The next person at the keyboard: the previous one's session is gone."""
    page.context.clear_cookies()
    log_in(page, username, password_for(username))
    expect(page.get_by_role("heading", name=f"Welcome, {username}")).to_be_visible()


def _annotate_all(page: Page, project, answers: dict[str, str]) -> list[str]:
    """Label the queue until it runs empty; returns the instructions seen, in order."""
    page.goto(f"/projects/{project.pk}/annotate/")
    by_instruction = {instruction: key for key, instruction, _ in ROWS}
    seen = []
    for n in range(1, len(ROWS) + 1):
        task = page.get_by_test_id("task")
        expect(task.get_by_text("Improve the response")).to_be_visible()
        expect(page.get_by_test_id("guideline")).to_contain_text("factual errors")
        instruction = page.get_by_test_id("payload").inner_text().strip()
        seen.append(instruction)
        key = by_instruction[instruction]
        response = page.get_by_label("Improve the response")
        draft = next(r for k, _, r in ROWS if k == key)
        expect(response).to_have_value(draft)
        if key in answers:
            response.fill(answers[key])
        response.focus()
        page.keyboard.press("Control+Enter")
        expect(page.locator(f"body[data-task-loads='{n}']")).to_have_count(1)
    expect(page.get_by_test_id("queue-empty")).to_contain_text("Nothing to label right now")
    return seen


@pytest.mark.timeout(600)
def test_a_dataset_travels_from_upload_to_a_verified_dossier(
    page, project, celery_worker, tiny_model_dir, tmp_path
):
    tiny = base_model_register(
        actor=None, project=None, name="tiny", source="local", path=str(tiny_model_dir)
    )
    people = {}
    for role, username in (
        (Role.ENGINEER, "eng"),
        (Role.ANNOTATOR, "ann1"),
        (Role.ANNOTATOR, "ann2"),
        (Role.ADJUDICATOR, "adj"),
        (Role.REVIEWER, "rev"),
        (Role.COMPLIANCE, "comp"),
    ):
        people[username] = UserFactory(username=username)
        MembershipFactory(project=project, role=role, user=people[username])

    # 1. The engineer uploads the data with its provenance and sets up the task.
    path = tmp_path / "support-answers.jsonl"
    path.write_text(
        "".join(
            json.dumps({"id": key, "instruction": q, "response": a, "lang": "en"}) + "\n"
            for key, q, a in ROWS
        )
    )
    _as(page, "eng")
    page.goto(f"/projects/{project.pk}/datasets/")
    page.get_by_label("File").set_input_files(str(path))
    page.get_by_label("Source description").fill("Help-desk drafts written by staff, May 2025")
    page.get_by_label("License").fill("CC-BY-4.0")
    page.get_by_label("Consent basis").fill("Employment contract §7")
    page.get_by_label("Required fields").fill("instruction, response")
    page.get_by_label("Metadata fields").fill("lang")
    page.get_by_role("button", name="Upload").click()
    expect(page.get_by_test_id("upload-done")).to_contain_text("Imported 10 rows", timeout=60_000)
    page.get_by_role("link", name="the dataset").click()
    expect(page.get_by_test_id("provenance")).to_contain_text("Help-desk drafts")

    page.goto(f"/projects/{project.pk}/annotation/setup/")
    page.get_by_label("Task type").select_option("writing")
    page.get_by_label("Mode").select_option("edit")
    page.get_by_role("button", name="Publish schema").click()
    expect(page.get_by_test_id("schema")).to_contain_text(
        "Label schema v1: Instruction and response writing"
    )
    page.get_by_label("Markdown").fill(GUIDELINE)
    page.get_by_role("button", name="Publish guideline").click()
    expect(page.get_by_test_id("guideline")).to_contain_text("factual errors")
    page.get_by_label("Labels per item").fill("2")
    page.get_by_label("Agreement rule").select_option("unanimous")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("Settings saved.")
    expect(page.get_by_label("Labels per item")).to_have_value("2")

    # 2. Two annotators edit the drafts; they part ways on two answers.
    _as(page, "ann1")
    first = _annotate_all(page, project, FIXED)
    _as(page, "ann2")
    second = _annotate_all(page, project, {**FIXED, **REWRITTEN})
    assert sorted(first) == sorted(second) == sorted(q for _, q, _ in ROWS)
    disputed = {Item.objects.get(project=project, external_id=key).pk for key in REWRITTEN}
    assert (
        set(
            Item.objects.filter(project=project, state=Item.State.DISPUTED).values_list(
                "pk", flat=True
            )
        )
        == disputed
    )

    # 3. The adjudicator sees pseudonymous answers and keeps the rewrites, with a reason.
    _as(page, "adj")
    page.goto(f"/projects/{project.pk}/adjudicate/")
    for _ in REWRITTEN:
        labels = page.get_by_test_id("labels")
        instruction = page.get_by_test_id("payload").inner_text().strip()
        key = next(k for k, q, _ in ROWS if q == instruction)
        draft = next(r for k, _, r in ROWS if k == key)
        expect(labels).to_contain_text(draft)
        expect(labels).to_contain_text(REWRITTEN[key])
        expect(labels).not_to_contain_text("ann1")
        expect(labels).not_to_contain_text("ann2")
        expect(labels.locator("tbody tr")).to_have_count(2)
        page.get_by_label("Write my own").check()
        page.get_by_label("Final response").fill(REWRITTEN[key])
        page.get_by_label("Reason").fill("The draft answer does not tell the customer what to do.")
        item = page.locator("#task-form input[name=item]").input_value()
        page.get_by_test_id("resolve").click()
        # The panel swaps in place: the next dispute, or the empty queue.
        next_one = f"#task-form input[name=item]:not([value='{item}'])"
        expect(page.locator(f"[data-testid=adjudication-empty], {next_one}")).to_have_count(1)
    expect(page.get_by_test_id("adjudication-empty")).to_contain_text("No disagreements waiting")

    # 4. The engineer snapshots the gold labels, reads the leakage check and trains on them.
    _as(page, "eng")
    page.goto(f"/projects/{project.pk}/curation/")
    form = page.get_by_test_id("snapshot-form")
    form.get_by_label("Name").fill("support-gold")
    form.get_by_label("Train", exact=True).fill("0.7")
    form.get_by_label("Validation", exact=True).fill("0.1")
    form.get_by_label("Test", exact=True).fill("0.2")
    form.get_by_role("button", name="Create snapshot").click()
    expect(page.get_by_role("heading", name="Snapshot support-gold v1")).to_be_visible()
    facts = page.get_by_test_id("snapshot-facts")
    expect(facts).to_contain_text("adjudicated: 2")
    expect(facts).to_contain_text("unanimous: 8")
    page.get_by_test_id("snapshot-checks").get_by_role(
        "link", name="Leakage between splits"
    ).click()
    report = page.locator("[data-testid=check-report][data-status=succeeded]")
    expect(report).to_have_count(1, timeout=60_000)
    leaks = report.get_by_test_id("leakage-found").count() > 0
    if not leaks:
        expect(report.get_by_test_id("leakage-clean")).to_have_text("No leakage between splits.")
    snapshot = Snapshot.objects.get(project=project, name="support-gold")
    page.goto(f"/projects/{project.pk}/snapshots/{snapshot.pk}/")
    status = page.get_by_test_id("leakage-status")
    expect(status).to_contain_text("duplicates across splits" if leaks else "none between splits")

    page.goto(f"/projects/{project.pk}/training/new/")
    page.locator("#id_name").fill("helpdesk-lora")
    page.locator("#id_preset").select_option("lora-quick")
    page.locator("#id_base_model").select_option(label="tiny")
    page.locator("#id_snapshot").select_option(label="support-gold v1 (10 items)")
    if leaks:
        page.get_by_label("Accept the snapshot's leakage").check()
    page.locator("#id_max_steps").fill("6")
    page.locator("#id_per_device_train_batch_size").fill("2")
    page.locator("#id_max_length").fill("64")
    page.locator("#id_learning_rate").fill("0.01")
    page.locator("#id_lora_target_modules").fill("q_proj, v_proj")
    page.get_by_test_id("launch").click()
    expect(page).to_have_url(re.compile(r"/training/jobs/\d+/$"))
    page.evaluate("window.__sameDocument = 'yes'")
    expect(page.get_by_test_id("job-status")).to_have_text("Succeeded", timeout=180_000)
    assert page.evaluate("window.__sameDocument") == "yes"  # updated in place, never reloaded
    expect(page.get_by_test_id("latest-step")).to_have_text("6")
    expect(
        page.get_by_test_id("loss-chart").locator(".echart[data-empty=no] canvas")
    ).to_be_visible()
    version = ModelVersion.objects.get(job__name="helpdesk-lora")
    expect(page.get_by_test_id("version-link")).to_have_text(version.name)

    # 5. Outputs of the base model and the new version on the snapshot's test split.
    page.goto(f"/projects/{project.pk}/evaluation/")
    form = page.get_by_test_id("prompt-set-from-snapshot-form")
    form.get_by_label("Name").fill("support held-out")
    form.get_by_label("Snapshot").select_option(str(snapshot.pk))
    form.get_by_test_id("create-prompt-set-from-snapshot").click()
    prompt_set_row = page.get_by_test_id("prompt-sets").locator("tr", has_text="support held-out")
    expect(prompt_set_row.locator("td").nth(1)).to_have_text("2")
    # The version competes under its registry name: its label is left empty.
    tuned_label = version.name
    for label, field, choice in (
        (BASE_LABEL, "Base model", str(tiny.pk)),
        ("", "Model version", str(version.pk)),
    ):
        form = page.get_by_test_id("contestant-form")
        form.get_by_label("Label").fill(label)
        form.get_by_label(field).select_option(choice)
        form.get_by_test_id("add-contestant").click()
        expect(page.get_by_test_id("contestants")).to_contain_text(label or tuned_label)

    form = page.get_by_test_id("generation-form")
    form.get_by_label("Prompt set").select_option(label="support held-out")
    form.get_by_label(BASE_LABEL).check()
    form.get_by_label(tuned_label).check()
    form.get_by_label("Max new tokens").fill("16")
    form.get_by_test_id("generate").click()
    jobs = page.get_by_test_id("generation-jobs").get_by_test_id("generation-job")
    expect(jobs).to_have_count(2)
    for i in range(2):
        expect(jobs.nth(i).get_by_test_id("generation-job-status")).to_have_text(
            "Succeeded", timeout=120_000
        )
        expect(jobs.nth(i).get_by_test_id("generation-job-progress")).to_have_text("2 / 2")

    form = page.get_by_test_id("campaign-form")
    form.get_by_label("Name").fill("helpdesk duel")
    form.get_by_label("Prompt set").select_option(label="support held-out")
    form.get_by_label(BASE_LABEL).check()
    form.get_by_label(tuned_label).check()
    form.get_by_test_id("create-campaign").click()
    expect(page.get_by_test_id("campaigns")).to_contain_text("helpdesk duel")
    campaign = Campaign.objects.get(project=project, name="helpdesk duel")
    assert campaign.stats["battles"] >= 1, campaign.stats  # the two models answer differently

    # 6. The reviewer judges blind, by keyboard: the intact answer of an attention check,
    # and otherwise the new version's (which the test, not the page, knows).
    tuned = Contestant.objects.get(project=project, label=tuned_label)
    # Neither contestant's label nor either model's name may reach the reviewer.
    secrets = re.compile(
        "|".join(re.escape(s) for s in (BASE_LABEL, version.name, "helpdesk-lora")) + r"|\btiny\b"
    )
    _as(page, "rev")
    page.goto(f"/projects/{project.pk}/review/")
    expect(page.get_by_test_id("review-campaigns")).to_contain_text("Which response is better?")
    assert not secrets.search(page.content())
    page.get_by_role("link", name="Start").click()
    expect(page.get_by_test_id("pair")).to_be_visible()
    n = real = 0
    while page.get_by_test_id("review-done").count() == 0:
        expect(page.get_by_test_id("response-a")).to_contain_text("Response A")
        expect(page.get_by_test_id("response-b")).to_contain_text("Response B")
        assert not secrets.search(page.content())
        token = page.locator("#pair-form input[name=token]").input_value()
        shown = Judgment.objects.get(token=token)
        if shown.is_attention:
            key = "a" if shown.left_is_x else "b"
        else:
            key = "a" if shown.contestant_left_id == tuned.pk else "b"
            real += 1
        page.keyboard.press(key)
        n += 1
        expect(page.locator(f"body[data-pair-loads='{n}']")).to_have_count(1)
        assert n < 20
    expect(page.get_by_test_id("review-done")).to_contain_text("Nothing left for you here")
    # Attention checks are not counted as judged.
    expect(page.get_by_test_id("progress")).to_have_text(f"Judged {real} of {real}")
    assert not secrets.search(page.content())

    # 7. The engineer gates the new version on the campaign's ratings.
    _as(page, "eng")
    page.goto(f"/projects/{project.pk}/evaluation/")
    runs = rating_gate_create_and_run(
        page,
        name="helpdesk release gate",
        campaign="helpdesk duel",
        candidate=tuned_label,
        baseline=BASE_LABEL,
    )
    gate_run = GateRun.objects.get(gate__name="helpdesk release gate")
    outcome = "passed" if gate_run.passed else "failed"
    expect(runs.get_by_test_id("gate-run-outcome")).to_have_text(outcome)
    expect(runs.get_by_test_id("gate-run-check")).to_contain_text(gate_run.results[0]["reason"])

    # 8. Compliance finds the version, signs off, and verifies the dossier it downloads.
    _as(page, "comp")
    page.get_by_role("link", name="Compliance").click()
    page.get_by_test_id("version-search").fill("helpdesk-lora")
    page.get_by_role("button", name="Search").click()
    row = page.get_by_test_id("versions").locator("tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text(f"{outcome} (helpdesk release gate)")
    row.get_by_role("link", name=version.name).click()
    expect(page.get_by_test_id("stage")).to_have_text("Candidate")
    form = page.get_by_test_id("signoff-form")
    form.get_by_label("Sign as").select_option(label="Compliance officer")
    form.get_by_label("Comment").fill("Provenance, licence and adjudication reasons checked.")
    form.get_by_role("button", name="Record sign-off").click()
    signed = page.get_by_test_id("signoffs").locator("tbody tr")
    expect(signed).to_have_count(1)
    expect(signed).to_contain_text("Compliance officer")
    expect(signed).to_contain_text("Approve")
    expect(signed.locator("td").nth(3)).to_have_text("comp")
    result = dossier_build_download_verify(page, tmp_path / "helpdesk-dossier.zip", timeout=120_000)
    expect(result).to_contain_text(f"Model version {version.name} (candidate)")

    # What the journey left behind.
    dataset = Dataset.objects.get(project=project)
    assert (dataset.row_count, dataset.license) == (10, "CC-BY-4.0")
    assert Annotation.objects.filter(item__project=project, undone=False).count() == 20
    gold = {g.item.external_id: g for g in GoldLabel.objects.filter(item__project=project)}
    assert len(gold) == 10
    for key, text in REWRITTEN.items():
        assert gold[key].method == GoldLabel.Method.ADJUDICATED
        assert gold[key].value == {"response": text}
        assert gold[key].decided_by == people["adj"]
        assert gold[key].reason.startswith("The draft answer")
    assert gold["r05"].method == GoldLabel.Method.UNANIMOUS
    assert gold["r05"].value == {"response": FIXED["r05"]}
    assert QualityCheck.objects.get(snapshot=snapshot, kind="leakage").status == "succeeded"
    job = TrainingJob.objects.get(name="helpdesk-lora")
    assert (job.status, job.snapshot, job.method) == (JobStatus.SUCCEEDED, snapshot, "lora")
    assert job.config["max_steps"] == 6
    assert version.job == job
    assert set(
        GenerationJob.objects.filter(contestant__project=project).values_list("status", flat=True)
    ) == {"succeeded"}
    judged = Judgment.objects.filter(campaign=campaign, submitted_at__isnull=False)
    assert judged.count() == n
    assert set(judged.values_list("reviewer__username", flat=True)) == {"rev"}
    assert gate_run.candidate == tuned
    assert gate_run.model_version_id == version.pk
    signoff = SignOff.objects.get(model_version=version)
    assert (signoff.user, signoff.role, signoff.decision) == (
        people["comp"],
        "compliance",
        "approve",
    )
    assert Dossier.objects.get(model_version=version).status == "succeeded"
