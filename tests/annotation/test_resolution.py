import uuid

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from annotation import services
from annotation.models import GoldLabel, Item, Lease
from annotation.selectors import adjudication_view, disagreement_log
from core.models import AuditEvent
from core.services.audit import content_hash
from tests.annotation.factories import ItemFactory, classification_setup, label_next
from tests.portal.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def _member(project, role, name):
    return MembershipFactory(project=project, role=role, user=UserFactory(username=name)).user


@pytest.fixture
def disputed(project):
    classification_setup(project, k=2)
    ItemFactory(project=project, dataset__project=project, payload={"text": "it is fine"})
    first, second = _member(project, "annotator", "x1"), _member(project, "annotator", "x2")
    label_next(project, first, "pos")
    item = label_next(project, second, "neg")
    return item


def test_adjudicator_sees_labels_under_pseudonyms(project, disputed):
    view = adjudication_view(item=disputed)

    names = [label.pseudonym for label in view.labels]
    assert len(set(names)) == 2
    assert all(n.startswith("A-") and "x1" not in n for n in names)
    assert [label.value for label in view.labels] == [{"labels": ["pos"]}, {"labels": ["neg"]}]


def test_adjudication_sets_gold_with_reason_and_who(project, disputed, adjudicator):
    lease = services.adjudication_lease_next(project=project, adjudicator=adjudicator)

    gold = services.adjudication_resolve(
        project=project,
        item_id=lease.item_id,
        adjudicator=adjudicator,
        value={"labels": ["pos"]},
        reason="Guideline 2: mild praise is positive",
    )

    assert (gold.method, gold.decided_by, gold.value) == (
        GoldLabel.Method.ADJUDICATED,
        adjudicator,
        {"labels": ["pos"]},
    )
    assert Item.objects.get(pk=disputed.pk).state == Item.State.RESOLVED
    assert Lease.objects.get(pk=lease.pk).state == Lease.State.SUBMITTED
    assert AuditEvent.objects.get(action="annotation.gold.adjudicate").data[
        "reason_sha256"
    ] == content_hash("Guideline 2: mild praise is positive")


def test_adjudication_needs_a_reason(project, disputed, adjudicator):
    with pytest.raises(ValidationError, match="why"):
        services.adjudication_resolve(
            project=project,
            item_id=disputed.pk,
            adjudicator=adjudicator,
            value={"labels": ["pos"]},
            reason="",
        )

    assert Item.objects.get(pk=disputed.pk).state == Item.State.DISPUTED


def test_an_annotator_of_the_item_cannot_adjudicate_it(project, disputed):
    own = Lease.objects.filter(item=disputed).first().annotator
    MembershipFactory(project=project, role="adjudicator", user=own)

    assert services.adjudication_lease_next(project=project, adjudicator=own) is None
    with pytest.raises(PermissionDenied):
        services.adjudication_resolve(
            project=project,
            item_id=disputed.pk,
            adjudicator=own,
            value={"labels": ["neg"]},
            reason="mine",
        )


def test_two_adjudicators_get_different_items(project, disputed):
    second = ItemFactory(project=project, dataset=disputed.dataset)
    Item.objects.filter(pk=second.pk).update(state=Item.State.DISPUTED)
    one, two = _member(project, "adjudicator", "j1"), _member(project, "adjudicator", "j2")

    first = services.adjudication_lease_next(project=project, adjudicator=one)
    other = services.adjudication_lease_next(project=project, adjudicator=two)

    assert {first.item_id, other.item_id} == {disputed.pk, second.pk}


def test_resolving_a_settled_item_is_refused(project, disputed, adjudicator):
    services.adjudication_resolve(
        project=project,
        item_id=disputed.pk,
        adjudicator=adjudicator,
        value={"labels": ["pos"]},
        reason="r",
    )

    with pytest.raises(ValidationError, match="not waiting"):
        services.adjudication_resolve(
            project=project,
            item_id=disputed.pk,
            adjudicator=adjudicator,
            value={"labels": ["neg"]},
            reason="again",
        )


def test_disagreement_log_holds_labels_adjudication_and_reason(project, disputed, adjudicator):
    services.adjudication_resolve(
        project=project,
        item_id=disputed.pk,
        adjudicator=adjudicator,
        value={"labels": ["pos"]},
        reason="sarcasm rule",
    )

    (row,) = disagreement_log(project=project)

    assert row["item"] == disputed.pk
    assert row["gold"] == {"labels": ["pos"]}
    assert (row["method"], row["reason"]) == ("adjudicated", "sarcasm rule")
    assert len(row["labels"]) == 2
    assert disagreement_log(project=project, filters={"method": "majority"}) == []


def test_label_model_resolves_confident_disputes(project, adjudicator):
    classification_setup(project, k=3, rule="unanimous")
    dataset = ItemFactory(project=project, dataset__project=project).dataset
    ItemFactory.create_batch(29, project=project, dataset=dataset)
    good = [_member(project, "annotator", f"g{i}") for i in range(2)]
    noisy = _member(project, "annotator", "noisy")
    truth = {}
    for index, item in enumerate(Item.objects.order_by("id")):
        truth[item.pk] = "pos" if index % 2 else "neg"
    for user in [*good, noisy]:
        while (offer := services.item_lease_next(project=project, annotator=user)) is not None:
            label = truth[offer.item.pk]
            if user is noisy and offer.item.pk % 3 == 0:
                label = "neg" if label == "pos" else "pos"
            services.annotation_submit(
                project=project,
                lease_id=offer.lease.pk,
                annotator=user,
                value={"labels": [label]},
                submission_id=uuid.uuid4(),
            )
    disputed = Item.objects.filter(state=Item.State.DISPUTED).count()
    assert disputed > 0

    resolved = services.label_model_apply(
        project=project, applied_by=adjudicator, min_confidence=0.5
    )

    assert resolved == disputed
    for gold in GoldLabel.objects.filter(method=GoldLabel.Method.LABEL_MODEL):
        assert gold.value == {"labels": [truth[gold.item_id]]}
