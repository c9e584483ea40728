import uuid

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from annotation import services
from annotation.forms import answer_form_fields
from annotation.models import GoldLabel, Item, LabelSchema, Lease
from annotation.selectors.adjudication import word_diff
from core.models import AuditEvent
from tests.annotation.factories import ItemFactory, classification_setup, label_next
from tests.portal.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

WRITING = {
    "mode": "write",
    "prompt_field": "instruction",
    "response_field": "response",
    "steps_field": "steps",
}


def _member(project, role, name):
    return MembershipFactory(project=project, role=role, user=UserFactory(username=name)).user


def _write(project, user, text):
    offer = services.item_lease_next(project=project, annotator=user)
    services.annotation_submit(
        project=project,
        lease_id=offer.lease.pk,
        annotator=user,
        value={"response": text},
        submission_id=uuid.uuid4(),
    )
    return offer.item


@pytest.fixture
def written(project):
    """A writing item whose two answers differ in two words."""
    classification_setup(project, k=2)
    LabelSchema.objects.create(
        project=project,
        version=2,
        task_type="writing",
        config=WRITING,
        created_by=project.created_by,
    )
    ItemFactory(
        project=project, dataset__project=project, payload={"instruction": "Greet the customer"}
    )
    first, second = _member(project, "annotator", "w1"), _member(project, "annotator", "w2")
    _write(project, first, "Hello dear customer, welcome back.")
    return _write(project, second, "Hello valued customer, welcome home.")


@pytest.fixture
def disputed(project):
    classification_setup(project, k=2)
    for text in ("it is fine", "meh"):
        ItemFactory(project=project, dataset__project=project, payload={"text": text})
    first, second = _member(project, "annotator", "x1"), _member(project, "annotator", "x2")
    label_next(project, first, "pos")
    label_next(project, second, "neg")
    label_next(project, first, "pos")
    return label_next(project, second, "neg")


def _post(client, project, **data):
    return client.post(
        reverse("annotation:adjudicate", args=[project.pk]), data, HTTP_HX_REQUEST="true"
    )


def test_word_diff_marks_only_the_changed_words():
    parts = word_diff("Hello dear customer", "Hello valued customer")

    assert [(p.op, p.text) for p in parts] == [
        ("equal", "Hello "),
        ("delete", "dear"),
        ("insert", "valued"),
        ("equal", " customer"),
    ]


def test_page_puts_the_question_first_and_shows_the_diff_and_the_rule(
    client, project, written, adjudicator
):
    client.force_login(adjudicator)

    html = client.get(reverse("annotation:adjudicate", args=[project.pk])).content.decode()

    assert html.index("Greet the customer") < html.index('data-testid="labels"')
    assert "<del>dear</del><ins>valued</ins>" in html
    assert "<del>back.</del><ins>home.</ins>" in html
    assert "Unanimous rule (2 labels per item, all must agree): the 2 answers gave 2" in html
    assert "1 item left to adjudicate." in html
    assert "none has been taken yet" in html
    assert 'value="A" required> Take A' in html
    assert "Write my own" in html
    # Nothing is pre-filled with whichever answer happens to be listed first.
    assert '<textarea id="response" name="response" rows="6"></textarea>' in html


def test_rule_named_is_the_one_in_force_when_the_item_was_flagged(
    client, project, written, adjudicator
):
    project.annotation_settings.agreement_rule = "majority"
    project.annotation_settings.save()
    client.force_login(adjudicator)

    html = client.get(reverse("annotation:adjudicate", args=[project.pk])).content.decode()

    assert "Unanimous rule" in html
    assert AuditEvent.objects.get(action="annotation.item.disputed").data["rule"] == "unanimous"


def test_take_b_sets_b_as_gold_and_confirms_with_items_left(client, project, disputed, adjudicator):
    client.force_login(adjudicator)
    item_id = (
        client.get(reverse("annotation:adjudicate", args=[project.pk])).context["lease"].item_id
    )

    html = _post(
        client, project, item=item_id, take="B", labels="pos", reason="B read it right"
    ).content.decode()

    gold = GoldLabel.objects.get(item_id=item_id)
    assert gold.value == {"labels": ["neg"]}  # B's answer, not the stray field
    assert f"Gold label set for item {item_id}." in html
    assert "You took answer B as it stands." in html
    assert "1 item left to adjudicate." in html
    assert AuditEvent.objects.get(action="annotation.gold.adjudicate").data["took"] == 1


def test_own_answer_is_diffed_against_the_draft_it_started_from(
    client, project, written, adjudicator
):
    client.force_login(adjudicator)

    html = _post(
        client,
        project,
        item=written.pk,
        take="own",
        draft="B",
        response="Hello valued customer, welcome back!",
        reason="merged",
    ).content.decode()

    assert GoldLabel.objects.get(item=written).value == {
        "response": "Hello valued customer, welcome back!"
    }
    assert "Your label against answer B, which you started from:" in html
    assert "<del>home.</del><ins>back!</ins>" in html
    assert "0 items left to adjudicate." in html


def test_taking_an_answer_the_item_lacks_changes_nothing(client, project, disputed, adjudicator):
    client.force_login(adjudicator)
    item_id = (
        client.get(reverse("annotation:adjudicate", args=[project.pk])).context["lease"].item_id
    )

    for take in ("C", "ZZ"):
        html = _post(client, project, item=item_id, take=take, reason="x").content.decode()
        assert 'data-testid="adjudication-error"' in html

    assert not GoldLabel.objects.exists()


def test_undo_takes_the_last_decision_back_audited(client, project, disputed, adjudicator):
    client.force_login(adjudicator)
    item_id = (
        client.get(reverse("annotation:adjudicate", args=[project.pk])).context["lease"].item_id
    )
    _post(client, project, item=item_id, take="A", reason="A is right")

    html = client.post(
        reverse("annotation:adjudicate_undo", args=[project.pk]), HTTP_HX_REQUEST="true"
    ).content.decode()

    assert not GoldLabel.objects.filter(item_id=item_id).exists()
    assert Item.objects.get(pk=item_id).state == Item.State.DISPUTED
    assert f"Undone: item {item_id}" in html
    lease = Lease.objects.get(annotator=adjudicator, state=Lease.State.ACTIVE)
    assert lease.item_id == item_id  # back with them, before the other item
    event = AuditEvent.objects.get(action="annotation.gold.adjudicate.undo")
    assert (event.actor, event.data["item"]) == (adjudicator, item_id)


def test_undo_is_refused_once_a_snapshot_holds_the_label(project, disputed, adjudicator, engineer):
    lease = services.adjudication_lease_next(project=project, adjudicator=adjudicator)
    services.adjudication_resolve(
        project=project,
        item_id=lease.item_id,
        adjudicator=adjudicator,
        value=None,
        reason="r",
        take=0,
    )
    services.snapshot_create(actor=engineer, project=project, name="gold")

    with pytest.raises(ValidationError, match="snapshot gold v1 already holds"):
        services.adjudication_undo(project=project, adjudicator=adjudicator)

    assert GoldLabel.objects.filter(item_id=lease.item_id).exists()
    assert not AuditEvent.objects.filter(action="annotation.gold.adjudicate.undo").exists()


def test_undo_with_nothing_decided_is_refused(project, adjudicator):
    with pytest.raises(ValidationError, match="no gold label here"):
        services.adjudication_undo(project=project, adjudicator=adjudicator)


def test_page_names_the_last_snapshot(client, project, disputed, adjudicator, engineer):
    lease = services.adjudication_lease_next(project=project, adjudicator=adjudicator)
    services.adjudication_resolve(
        project=project,
        item_id=lease.item_id,
        adjudicator=adjudicator,
        value=None,
        reason="r",
        take=0,
    )
    services.snapshot_create(actor=engineer, project=project, name="gold")
    client.force_login(adjudicator)

    html = client.get(reverse("annotation:adjudicate", args=[project.pk])).content.decode()

    assert "Gold labels go into the project's next snapshot;" in html
    assert "the last one, gold v1, was taken" in html


@pytest.mark.parametrize(
    ("task_type", "value", "fields"),
    [
        ("classification", {"labels": ["a", "b"]}, {"labels": ["a", "b"]}),
        ("writing", {"steps": ["x", "y"]}, {"steps": ["x", "y"]}),
        (
            "preference",
            {"ranking": [1, 0], "reason": ""},
            {"reason": [""], "rank-1": ["1"], "rank-0": ["2"]},
        ),
        ("rating", {"ratings": {"safety": 4}}, {"rating-safety": ["4"]}),
    ],
)
def test_form_fields_are_the_inverse_of_the_posted_answer(task_type, value, fields):
    assert answer_form_fields(task_type, value) == fields
