import pytest
from playwright.sync_api import expect

from annotation import services as annotation_services
from annotation.models import GoldLabel
from core.models import Role
from evaluation.models import Judgment
from tests.annotation.factories import ItemFactory, classification_setup, label_next
from tests.e2e.conftest import log_in
from tests.e2e.steps import member
from tests.evaluation.factories import build_campaign
from tests.portal.factories import password_for

pytestmark = pytest.mark.django_db(transaction=True)

LONG_ANSWER = "\n\n".join(f"Paragraph {n}: " + "the parcel is on its way. " * 20 for n in range(12))


@pytest.fixture
def wide_page(browser, asgi_server):
    context = browser.new_context(base_url=asgi_server, viewport={"width": 1400, "height": 900})
    yield context.new_page()
    context.close()


def _in_viewport(page, selector: str) -> bool:
    return page.evaluate(
        """(selector) => {
            const box = document.querySelector(selector).getBoundingClientRect();
            return box.top >= 0 && box.bottom <= window.innerHeight && window.scrollY === 0;
        }""",
        selector,
    )


def test_verdict_buttons_are_on_screen_without_scrolling_at_1400x900(wide_page, project):
    page = wide_page
    engineer = member(project, Role.ENGINEER, "eve")
    campaign, _ = build_campaign(engineer, project, prompts=2, contestants=2)
    campaign.criteria = [
        {"key": key, "label": key.capitalize(), "scale": 5}
        for key in ("helpful", "correct", "concise", "polite", "safe")
    ]
    campaign.save(update_fields=["criteria"])
    for battle in campaign.battles.all():
        battle.text_x, battle.text_y = LONG_ANSWER, LONG_ANSWER + " Yes."
        battle.save(update_fields=["text_x", "text_y"])
    member(project, Role.REVIEWER, "rita")
    log_in(page, "rita", password_for("rita"))
    page.goto(f"/projects/{project.pk}/review/{campaign.pk}/")
    expect(page.get_by_test_id("progress")).to_have_text("Judged 0 of 2")

    for testid in ("choose-a", "choose-b", "choose-tie", "choose-both-bad"):
        assert _in_viewport(page, f"[data-testid={testid}]"), testid

    page.get_by_test_id("choose-a").click()
    expect(page.get_by_test_id("verdict-saved")).to_have_text(
        "Saved your verdict on the last pair: A is better."
    )
    expect(page.get_by_test_id("progress")).to_have_text("Judged 1 of 2")
    assert Judgment.objects.filter(submitted_at__isnull=False, outcome="a").count() == 1


def test_guideline_examples_stay_inside_the_panel_and_submit_badge_reads(page, project):
    classification_setup(project, k=2)
    annotation_services.guideline_publish(
        project=project,
        published_by=project.created_by,
        markdown="Label the sentiment.",
        examples=[
            {
                "title": "A long one",
                "payload": {"text": "x" * 300, "meta": {"source": "y" * 200}},
                "answer": {"labels": ["neg"]},
            }
        ],
    )
    ItemFactory(project=project, dataset__project=project)
    member(project, Role.ANNOTATOR, "kim")
    log_in(page, "kim", password_for("kim"))
    page.goto(f"/projects/{project.pk}/annotate/")
    example = page.get_by_test_id("guideline-example")
    expect(example).to_contain_text("Answer: neg")

    panel = page.get_by_test_id("guideline")
    assert panel.evaluate("el => el.scrollWidth <= el.clientWidth")
    assert example.evaluate("el => el.scrollWidth <= el.clientWidth")
    badge = page.get_by_test_id("submit").locator("kbd")
    expect(badge).to_have_text("Enter")
    colours = badge.evaluate(
        """el => {
            const own = getComputedStyle(el), button = getComputedStyle(el.parentElement);
            return [own.color, own.backgroundColor, button.backgroundColor];
        }"""
    )
    text, face, button = colours
    # The key's letters must not vanish into its face (nor into the button behind it).
    assert text not in (face, button), colours


def test_adjudicator_takes_b_with_ctrl_enter_sees_the_count_and_undoes(page, project):
    classification_setup(project, k=2)
    for text in ("it is fine", "meh"):
        ItemFactory(project=project, dataset__project=project, payload={"text": text})
    first, second = member(project, Role.ANNOTATOR, "x1"), member(project, Role.ANNOTATOR, "x2")
    for _ in range(2):
        label_next(project, first, "pos")
        label_next(project, second, "neg")
    member(project, Role.ADJUDICATOR, "ada")
    log_in(page, "ada", password_for("ada"))
    page.get_by_role("link", name="Adjudicate").click()
    expect(page.get_by_test_id("items-left")).to_contain_text("2 items left")
    item_id = int(page.locator("#task-form input[name=item]").input_value())

    # Writing one's own answer opens the fields, filled from the answer it starts from.
    page.get_by_label("Write my own").check()
    page.get_by_role("button", name="B", exact=True).click()
    expect(page.get_by_label("neg")).to_be_checked()
    page.get_by_label("Take B").check()
    expect(page.get_by_label("neg")).to_be_hidden()
    page.get_by_label("Reason").fill("B follows the guideline")
    page.keyboard.press("Control+Enter")

    expect(page.get_by_test_id("decided")).to_contain_text(f"Gold label set for item {item_id}.")
    expect(page.get_by_test_id("items-left")).to_contain_text("1 item left")
    assert GoldLabel.objects.get(item_id=item_id).value == {"labels": ["neg"]}

    page.get_by_test_id("undo-decision").click()
    expect(page.get_by_test_id("undone")).to_contain_text(f"Undone: item {item_id}")
    expect(page.locator("#task-form input[name=item]")).to_have_value(str(item_id))
    assert not GoldLabel.objects.filter(item_id=item_id).exists()
