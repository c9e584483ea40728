import threading
import uuid
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.utils import timezone

from annotation import services
from annotation.models import Annotation, GoldLabel, Item, Lease
from core.models import AuditEvent
from tests.annotation.factories import ItemFactory, classification_setup
from tests.portal.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def annotators(project):
    return [
        MembershipFactory(
            project=project, role="annotator", user=UserFactory(username=f"a{i}")
        ).user
        for i in range(4)
    ]


@pytest.fixture
def items(project):
    classification_setup(project, k=2)
    dataset = ItemFactory(project=project, dataset__project=project).dataset
    return [Item.objects.get(dataset=dataset)] + ItemFactory.create_batch(
        4, project=project, dataset=dataset
    )


def _submit(project, user, offer, label="pos", submission_id=None):
    return services.annotation_submit(
        project=project,
        lease_id=offer.lease.pk,
        annotator=user,
        value={"labels": [label]},
        submission_id=submission_id or uuid.uuid4(),
        seconds_spent=3.0,
    )


def test_next_gives_the_first_open_item_and_the_same_one_until_answered(project, items, annotators):
    first = services.item_lease_next(project=project, annotator=annotators[0])
    again = services.item_lease_next(project=project, annotator=annotators[0])

    assert first.item.pk == items[0].pk
    assert again.lease.pk == first.lease.pk
    assert Item.objects.get(pk=items[0].pk).assigned_count == 1


def test_never_more_than_k_leases_and_answers_per_item(project, items, annotators):
    offers = [services.item_lease_next(project=project, annotator=a) for a in annotators]

    assert [o.item.pk for o in offers] == [items[0].pk, items[0].pk, items[1].pk, items[1].pk]
    assert max(Item.objects.values_list("assigned_count", flat=True)) == 2


def test_never_an_item_the_annotator_already_labelled(project, items, annotators):
    user = annotators[0]
    seen = []
    for _ in range(len(items)):
        offer = services.item_lease_next(project=project, annotator=user)
        seen.append(offer.item.pk)
        _submit(project, user, offer)

    assert sorted(seen) == sorted(i.pk for i in items)
    assert services.item_lease_next(project=project, annotator=user) is None


def test_expired_lease_returns_the_item_to_the_pool(project, items, annotators):
    offer = services.item_lease_next(project=project, annotator=annotators[0])
    services.item_lease_next(project=project, annotator=annotators[1])
    Lease.objects.filter(pk=offer.lease.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    third = services.item_lease_next(project=project, annotator=annotators[2])

    assert third.item.pk == items[0].pk
    assert Lease.objects.get(pk=offer.lease.pk).state == Lease.State.EXPIRED
    assert Item.objects.get(pk=items[0].pk).assigned_count == 2


def test_late_answer_is_refused_once_the_slot_went_to_someone_else(project, items, annotators):
    offer = services.item_lease_next(project=project, annotator=annotators[0])
    services.item_lease_next(project=project, annotator=annotators[1])
    Lease.objects.filter(pk=offer.lease.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    services.item_lease_next(project=project, annotator=annotators[2])

    with pytest.raises(ValidationError, match="went to someone else"):
        _submit(project, annotators[0], offer)

    assert not Annotation.objects.exists()


def test_late_answer_is_taken_while_the_item_has_room(project, items, annotators):
    offer = services.item_lease_next(project=project, annotator=annotators[0])
    Lease.objects.filter(pk=offer.lease.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    annotation = _submit(project, annotators[0], offer)

    assert annotation.item_id == items[0].pk
    assert Item.objects.get(pk=items[0].pk).assigned_count == 1


def test_submitting_twice_with_one_submission_id_stores_one_answer(project, items, annotators):
    offer = services.item_lease_next(project=project, annotator=annotators[0])
    submission = uuid.uuid4()

    first = _submit(project, annotators[0], offer, submission_id=submission)
    second = _submit(project, annotators[0], offer, submission_id=submission)

    assert first.pk == second.pk
    assert Annotation.objects.count() == 1
    assert AuditEvent.objects.filter(action="annotation.submit").count() == 1


def test_someone_elses_lease_cannot_be_answered(project, items, annotators):
    offer = services.item_lease_next(project=project, annotator=annotators[0])

    with pytest.raises(PermissionDenied):
        _submit(project, annotators[1], offer)

    assert not Annotation.objects.exists()


def test_invalid_label_is_refused_naming_the_field(project, items, annotators):
    offer = services.item_lease_next(project=project, annotator=annotators[0])

    with pytest.raises(ValidationError) as error:
        _submit(project, annotators[0], offer, label="maybe")

    assert "labels" in error.value.message_dict
    assert Lease.objects.get(pk=offer.lease.pk).state == Lease.State.ACTIVE


def test_skip_needs_a_reason_and_frees_the_slot(project, items, annotators):
    offer = services.item_lease_next(project=project, annotator=annotators[0])
    with pytest.raises(ValidationError):
        services.item_skip(
            project=project, lease_id=offer.lease.pk, annotator=annotators[0], reason=" "
        )

    services.item_skip(
        project=project, lease_id=offer.lease.pk, annotator=annotators[0], reason="not English"
    )

    assert Item.objects.get(pk=items[0].pk).assigned_count == 0
    assert services.item_lease_next(project=project, annotator=annotators[0]).item.pk != items[0].pk


def test_agreeing_answers_make_a_unanimous_gold_label(project, items, annotators):
    for user in annotators[:2]:
        _submit(project, user, services.item_lease_next(project=project, annotator=user), "neg")

    gold = GoldLabel.objects.get(item=items[0])
    assert gold.method == GoldLabel.Method.UNANIMOUS
    assert gold.value == {"labels": ["neg"]}
    assert Item.objects.get(pk=items[0].pk).state == Item.State.RESOLVED


def test_disagreement_goes_to_adjudication(project, items, annotators):
    _submit(
        project,
        annotators[0],
        services.item_lease_next(project=project, annotator=annotators[0]),
        "pos",
    )
    _submit(
        project,
        annotators[1],
        services.item_lease_next(project=project, annotator=annotators[1]),
        "neg",
    )

    assert Item.objects.get(pk=items[0].pk).state == Item.State.DISPUTED
    assert not GoldLabel.objects.exists()


def test_majority_rule_resolves_two_of_three(project, annotators):
    classification_setup(project, k=3, rule="majority", m=2)
    item = ItemFactory(project=project, dataset__project=project)
    for user, label in zip(annotators[:3], ["pos", "neg", "pos"], strict=True):
        _submit(project, user, services.item_lease_next(project=project, annotator=user), label)

    gold = GoldLabel.objects.get(item=item)
    assert (gold.method, gold.value) == (GoldLabel.Method.MAJORITY, {"labels": ["pos"]})
    assert len(gold.annotation_ids) == 2


def test_undo_withdraws_the_answer_and_puts_the_item_back(project, items, annotators):
    user = annotators[0]
    first = services.item_lease_next(project=project, annotator=user)
    _submit(project, user, first)
    services.item_lease_next(project=project, annotator=user)  # moved on

    offer = services.annotation_undo(project=project, annotator=user)

    assert offer.item.pk == first.item.pk
    assert Annotation.objects.get().undone
    assert Item.objects.get(pk=items[0].pk).label_count == 0
    assert Item.objects.get(pk=items[1].pk).assigned_count == 0
    assert services.item_lease_next(project=project, annotator=user).item.pk == first.item.pk


def test_undo_refused_once_the_item_is_decided(project, items, annotators):
    for user in annotators[:2]:
        _submit(project, user, services.item_lease_next(project=project, annotator=user))

    with pytest.raises(ValidationError, match="already decided"):
        services.annotation_undo(project=project, annotator=annotators[0])


def test_random_order_is_reproducible_from_the_seed(project, annotators):
    classification_setup(project, k=1, order="random")
    dataset = ItemFactory(project=project, dataset__project=project).dataset
    ItemFactory.create_batch(8, project=project, dataset=dataset)
    Item.objects.update(random_key=0)
    for item in Item.objects.all():
        Item.objects.filter(pk=item.pk).update(random_key=(item.pk * 7919) % 101)
    expected = list(Item.objects.order_by("random_key", "id").values_list("pk", flat=True))[:3]

    got = [services.item_lease_next(project=project, annotator=a).item.pk for a in annotators[:3]]

    assert got == expected


def test_priority_order_serves_the_highest_score_first(project, annotators):
    classification_setup(project, k=1, order="priority")
    dataset = ItemFactory(project=project, dataset__project=project, priority=0.1).dataset
    urgent = ItemFactory(project=project, dataset=dataset, priority=0.9)

    assert services.item_lease_next(project=project, annotator=annotators[0]).item == urgent


def test_gold_items_are_mixed_in_and_do_not_count_towards_k(project, annotators):
    classification_setup(project, k=1, gold_rate=0.5)
    dataset = ItemFactory(project=project, dataset__project=project).dataset
    ItemFactory.create_batch(19, project=project, dataset=dataset)
    gold = ItemFactory.create_batch(
        3, project=project, dataset=dataset, is_gold=True, gold_answer={"labels": ["pos"]}
    )
    user = annotators[0]
    served = []
    while (offer := services.item_lease_next(project=project, annotator=user)) is not None:
        served.append(offer.item.is_gold)
        _submit(project, user, offer)

    assert served.count(False) == 20
    assert 1 <= served.count(True) <= 3  # each gold item at most once per annotator
    assert all(Item.objects.get(pk=g.pk).state == Item.State.OPEN for g in gold)
    assert all(Item.objects.get(pk=g.pk).assigned_count == 0 for g in gold)


@pytest.mark.django_db(transaction=True)
def test_two_annotators_racing_for_the_last_slot_get_one_each(project):
    classification_setup(project, k=1)
    ItemFactory(project=project, dataset__project=project)
    users = [
        MembershipFactory(
            project=project, role="annotator", user=UserFactory(username=f"racer{i}")
        ).user
        for i in range(2)
    ]
    barrier = threading.Barrier(2)
    results = {}

    def take(user):
        barrier.wait()
        try:
            offer = services.item_lease_next(project=project, annotator=user)
            results[user.username] = offer.item.pk if offer else None
        finally:
            connection.close()

    threads = [threading.Thread(target=take, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert list(results.values()).count(None) == 1
    assert Lease.objects.filter(state=Lease.State.ACTIVE).count() == 1
    assert Item.objects.get().assigned_count == 1
