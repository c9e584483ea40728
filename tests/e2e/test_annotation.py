import json
import re
import uuid

import pytest
from playwright.sync_api import expect

from annotation import services
from annotation.models import Annotation, Dataset, GoldLabel, Item, LabelSchema
from annotation.schemas import normalize_config
from core.models import Role
from tests.annotation.factories import ItemFactory, classification_setup
from tests.e2e.conftest import log_in
from tests.e2e.steps import member
from tests.portal.factories import password_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_annotator_labels_ten_items_with_the_keyboard_only(page, project):
    classification_setup(project, k=2, choices=("positive", "negative", "neutral"))
    services.guideline_publish(
        project=project,
        published_by=project.created_by,
        markdown="Label the **sentiment** of the message.",
    )
    dataset = ItemFactory(project=project, dataset__project=project).dataset
    ItemFactory.create_batch(11, project=project, dataset=dataset)
    annotator = member(project, Role.ANNOTATOR, "kim")
    log_in(page, "kim", password_for("kim"))
    page.goto(f"/projects/{project.pk}/annotate/")
    expect(page.get_by_test_id("guideline")).to_contain_text("sentiment")

    for n in range(1, 11):
        expect(page.get_by_test_id("payload")).to_be_visible()
        page.keyboard.press(str(1 + n % 3))
        page.keyboard.press("Enter")
        expect(page.locator(f"body[data-task-loads='{n}']")).to_have_count(1)

    answers = Annotation.objects.filter(annotator=annotator).order_by("pk")
    assert answers.count() == 10
    expected = [["positive", "negative", "neutral"][n % 3] for n in range(1, 11)]
    assert [a.value["labels"][0] for a in answers] == expected
    assert all(a.seconds_spent > 0 for a in answers)
    # U takes the last answer back and shows its item again.
    page.keyboard.press("u")
    expect(page.get_by_text("Undone: your earlier answer was withdrawn")).to_be_visible()
    assert Annotation.objects.filter(annotator=annotator, undone=False).count() == 9
    page.keyboard.press("?")
    expect(page.get_by_test_id("shortcuts")).to_be_visible()
    page.get_by_role("button", name="Shortcuts (?)").click()
    expect(page.get_by_test_id("shortcuts")).to_be_hidden()


def test_annotator_rates_criteria_with_number_keys(page, project):
    classification_setup(project, k=2)
    LabelSchema.objects.create(
        project=project,
        version=2,
        task_type="rating",
        config={
            "criteria": ["helpfulness", "safety"],
            "scale_min": 1,
            "scale_max": 5,
            "text_field": "text",
        },
        created_by=project.created_by,
    )
    ItemFactory.create_batch(2, project=project, dataset__project=project)
    annotator = member(project, Role.ANNOTATOR, "rae")
    log_in(page, "rae", password_for("rae"))
    page.goto(f"/projects/{project.pk}/annotate/")

    # Each number scores the first criterion still without a score; a third has none left.
    for key in ("4", "2", "5"):
        page.keyboard.press(key)
    page.keyboard.press("Enter")
    expect(page.locator("body[data-task-loads='1']")).to_have_count(1)

    answer = Annotation.objects.get(annotator=annotator)
    assert answer.value == {"ratings": {"helpfulness": 4, "safety": 2}}


def test_adjudicator_resolves_a_disagreement(page, project):
    classification_setup(project, k=2)
    item = ItemFactory(
        project=project, dataset__project=project, payload={"text": "Great, another outage."}
    )
    for name, label in (("ann1", "pos"), ("ann2", "neg")):
        user = member(project, Role.ANNOTATOR, name)
        offer = services.item_lease_next(project=project, annotator=user)
        services.annotation_submit(
            project=project,
            lease_id=offer.lease.pk,
            annotator=user,
            value={"labels": [label]},
            submission_id=uuid.uuid4(),
        )
    assert Item.objects.get(pk=item.pk).state == Item.State.DISPUTED
    member(project, Role.ADJUDICATOR, "judge")
    log_in(page, "judge", password_for("judge"))

    page.goto(f"/projects/{project.pk}/adjudicate/")
    labels = page.get_by_test_id("labels")
    expect(labels).to_contain_text("pos")
    expect(labels).to_contain_text("neg")
    expect(labels).not_to_contain_text("ann1")  # pseudonyms only
    page.get_by_label("Write my own").check()
    page.get_by_label("neg").check()
    page.get_by_label("Reason").fill("Sarcasm: the guideline counts it as negative.")
    page.get_by_test_id("resolve").click()

    expect(page.get_by_test_id("adjudication-empty")).to_be_visible()
    gold = GoldLabel.objects.get(item=item)
    assert gold.value == {"labels": ["neg"]}
    assert gold.reason.startswith("Sarcasm")


def test_engineer_uploads_a_file_and_watches_the_progress(page, project, celery_worker, tmp_path):
    member(project, Role.ENGINEER, "eng")
    rows = "".join(
        json.dumps({"id": f"r{i}", "text": f"row {i}", "meta": {"lang": "en"}}) + "\n"
        for i in range(3000)
    )
    path = tmp_path / "tickets.jsonl"
    path.write_text(rows)
    log_in(page, "eng", password_for("eng"))
    page.goto(f"/projects/{project.pk}/datasets/")

    page.get_by_label("File").set_input_files(str(path))
    page.get_by_label("Source description").fill("Support tickets, June 2025")
    page.get_by_label("License").fill("CC-BY-4.0")
    page.get_by_label("Consent basis").fill("Terms of service §4")
    page.get_by_role("button", name="Upload").click()

    expect(page).to_have_url(re.compile(r"/uploads/[0-9a-f-]+/$"))
    expect(page.get_by_test_id("import-bar")).to_be_visible()
    expect(page.get_by_test_id("upload-done")).to_contain_text("Imported 3000 rows")
    dataset = Dataset.objects.get()
    assert (dataset.row_count, dataset.license) == (3000, "CC-BY-4.0")
    page.get_by_role("link", name="the dataset").click()
    expect(page.get_by_test_id("provenance")).to_contain_text("Support tickets, June 2025")


def test_engineer_sees_a_refused_file_with_its_line(page, project, celery_worker, tmp_path):
    member(project, Role.ENGINEER, "eng2")
    path = tmp_path / "broken.jsonl"
    path.write_text('{"text": "fine"}\n{"text": broken}\n')
    log_in(page, "eng2", password_for("eng2"))
    page.goto(f"/projects/{project.pk}/datasets/")

    page.get_by_label("File").set_input_files(str(path))
    page.get_by_label("Source description").fill("hand-made")
    page.get_by_label("License").fill("MIT")
    page.get_by_label("Consent basis").fill("none needed")
    page.get_by_role("button", name="Upload").click()

    expect(page.get_by_test_id("upload-error")).to_contain_text("broken.jsonl, line 2")
    assert not Item.objects.exists()


def test_annotator_reads_a_dialogue_turn_by_turn_and_picks_a_reply(page, project):
    LabelSchema.objects.create(
        project=project,
        version=1,
        task_type="preference",
        config=normalize_config("preference", {"mode": "best"}),
        created_by=project.created_by,
    )
    dialogue = [
        {"role": "user", "content": "My neighbour's dog barks all night."},
        {"role": "assistant", "content": "Have you talked to your neighbour?"},
        {"role": "user", "content": "Yes. What now?"},
    ]
    ItemFactory(
        project=project,
        dataset__project=project,
        payload={"prompt": dialogue, "responses": ["Try a mediation service.", ""]},
    )
    annotator = member(project, Role.ANNOTATOR, "pia")
    log_in(page, "pia", password_for("pia"))
    page.goto(f"/projects/{project.pk}/annotate/")

    turns = page.get_by_test_id("conversation").locator("li")
    expect(turns).to_have_count(3)
    for n, turn in enumerate(dialogue):
        expect(turns.nth(n)).to_have_attribute("data-role", turn["role"])
        expect(turns.nth(n)).to_contain_text(turn["content"])
    expect(turns.nth(1)).to_contain_text("Assistant")
    expect(page.get_by_test_id("empty-response")).to_have_text("(empty response)")
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    expect(page.locator("body[data-task-loads='1']")).to_have_count(1)

    assert Annotation.objects.get(annotator=annotator).value == {"best": 0, "reason": ""}
