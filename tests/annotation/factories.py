import datetime
import hashlib
import json
import uuid

import factory

from annotation.models import AnnotationSettings, Dataset, GoldLabel, Item, LabelSchema
from tests.portal.factories import ProjectFactory, UserFactory


class DatasetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Dataset

    project = factory.SubFactory(ProjectFactory)
    name = factory.Sequence(lambda n: f"dataset {n}")
    file_name = "rows.jsonl"
    file_format = "jsonl"
    file_sha256 = factory.Sequence(lambda n: hashlib.sha256(str(n).encode()).hexdigest())
    file_bytes = 100
    source_description = "Support tickets, 2025"
    license = "CC-BY-4.0"
    consent_basis = "terms of service"
    collection_date = datetime.date(2025, 1, 1)
    created_by = factory.SubFactory(UserFactory)


class ItemFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Item

    dataset = factory.SubFactory(DatasetFactory)
    project = factory.SelfAttribute("dataset.project")
    row_number = factory.Sequence(lambda n: n + 1)
    payload = factory.Sequence(lambda n: {"text": f"item text {n}"})
    content_hash = factory.LazyAttribute(
        lambda o: hashlib.sha256(json.dumps(o.payload, sort_keys=True).encode()).hexdigest()
    )


def classification_setup(
    project,
    *,
    k=2,
    rule="unanimous",
    m=2,
    choices=("pos", "neg"),
    order="sequential",
    gold_rate=0.0,
    lease_seconds=600,
):
    AnnotationSettings.objects.update_or_create(
        project=project,
        defaults={
            "labels_per_item": k,
            "agreement_rule": rule,
            "majority_min": min(m, k),
            "order": order,
            "gold_rate": gold_rate,
            "lease_seconds": lease_seconds,
        },
    )
    return LabelSchema.objects.create(
        project=project,
        version=1,
        task_type="classification",
        config={"choices": list(choices), "multi": False, "text_field": "text"},
        created_by=project.created_by,
    )


def gold_item(dataset, payload, value, *, method="unanimous", metadata=None):
    """An item of `dataset` whose gold label is already set."""
    item = ItemFactory(
        dataset=dataset, payload=payload, metadata=metadata or {}, state=Item.State.RESOLVED
    )
    GoldLabel.objects.create(project=dataset.project, item=item, value=value, method=method)
    return item


def label_next(project, user, label):
    """`user` takes the next item of their queue and labels it `label`; returns the item."""
    from annotation import services

    offer = services.item_lease_next(project=project, annotator=user)
    services.annotation_submit(
        project=project,
        lease_id=offer.lease.pk,
        annotator=user,
        value={"labels": [label]},
        submission_id=uuid.uuid4(),
    )
    return offer.item
