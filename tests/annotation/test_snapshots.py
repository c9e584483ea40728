import pytest
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction

from annotation.models import Snapshot, SnapshotMember
from annotation.services.snapshots import (
    manifest_recompute,
    snapshot_create,
    snapshot_create_from_pairs,
)
from core.models import AuditEvent
from tests.annotation.factories import DatasetFactory, classification_setup, gold_item

pytestmark = pytest.mark.django_db


@pytest.fixture
def labelled(project, engineer):
    classification_setup(project)
    dataset = DatasetFactory(project=project)
    items = [
        gold_item(dataset, {"text": f"text {i}"}, {"labels": ["pos" if i % 4 else "neg"]})
        for i in range(40)
    ]
    return dataset, items


def test_snapshot_freezes_gold_items_with_manifest_and_audit(project, engineer, labelled):
    snapshot = snapshot_create(actor=engineer, project=project, name="v", seed=7)

    assert snapshot.member_count == 40
    assert snapshot.version == 1
    assert snapshot.task_type == "classification"
    assert snapshot.manifest_sha256 == manifest_recompute(snapshot=snapshot)
    assert snapshot.stats["splits"] == {"train": 32, "validation": 4, "test": 4}
    # stratified: each label keeps its share in every split
    assert snapshot.stats["labels"]['["neg"]'] == {"test": 1, "train": 8, "validation": 1}
    event = AuditEvent.objects.get(action="snapshot.create")
    assert event.data["manifest_sha256"] == snapshot.manifest_sha256
    assert snapshot_create(actor=engineer, project=project, name="v").version == 2


def test_split_is_deterministic_from_the_seed(project, engineer, labelled):
    def splits(seed):
        s = snapshot_create(actor=engineer, project=project, name=f"s{seed}", seed=seed)
        return list(s.members.order_by("position").values_list("item_id", "split"))

    first = splits(3)
    again = list(
        snapshot_create(actor=engineer, project=project, name="again", seed=3)
        .members.order_by("position")
        .values_list("item_id", "split")
    )
    other = splits(4)
    assert first == again
    assert first != other


def test_manifest_changes_when_one_byte_of_one_item_changes(project, engineer, labelled):
    dataset, items = labelled
    before = snapshot_create(actor=engineer, project=project, name="m")
    item = items[5]
    item.payload = {"text": "text 6"}  # one byte: "5" -> "6"
    item.save(update_fields=["payload"])

    after = snapshot_create(actor=engineer, project=project, name="m")

    assert before.manifest_sha256 != after.manifest_sha256
    changed = SnapshotMember.objects.get(snapshot=after, item=item).content_hash
    assert changed != SnapshotMember.objects.get(snapshot=before, item=item).content_hash


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE annotation_snapshot SET name = 'x' WHERE id = %s",
        "DELETE FROM annotation_snapshot WHERE id = %s",
        "UPDATE annotation_snapshotmember SET split = 'test' WHERE snapshot_id = %s",
        "DELETE FROM annotation_snapshotmember WHERE snapshot_id = %s",
    ],
)
def test_database_refuses_changes_to_a_snapshot(project, engineer, labelled, sql):
    snapshot = snapshot_create(actor=engineer, project=project, name="frozen")

    with (
        pytest.raises(DatabaseError, match="immutable"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(sql, [snapshot.pk])

    assert Snapshot.objects.get(pk=snapshot.pk).name == "frozen"
    assert snapshot.members.count() == 40


def test_filters_by_dataset_and_metadata(project, engineer, labelled):
    other = DatasetFactory(project=project)
    gold_item(other, {"text": "fr"}, {"labels": ["pos"]}, metadata={"lang": "fr"})
    gold_item(other, {"text": "en"}, {"labels": ["neg"]}, metadata={"lang": "en"})

    only_other = snapshot_create(
        actor=engineer, project=project, name="o", filter={"datasets": [other.pk]}
    )
    french = snapshot_create(
        actor=engineer, project=project, name="f", filter={"metadata": {"lang": "fr"}}
    )

    assert only_other.member_count == 2
    assert french.member_count == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": ""}, "name"),
        ({"split_ratios": {"train": 0.5, "test": 0.5}}, "split_ratios"),
        ({"split_ratios": {"train": 0.5, "validation": 0.1, "test": 0.1}}, "split_ratios"),
        ({"filter": {"colour": "red"}}, "filter"),
        ({"filter": {"datasets": [999999]}}, "filter.datasets"),
        ({"filter": {"metadata": {"lang": "xx"}}}, "filter"),
        ({"filter": {"metadata": {"lang__contains": "x"}}}, "filter.metadata"),
        ({"seed": 2**40}, "seed"),
    ],
)
def test_bad_input_is_refused_naming_the_field(project, engineer, labelled, kwargs, field):
    args = {"actor": engineer, "project": project, "name": "n", **kwargs}
    with pytest.raises(ValidationError) as error:
        snapshot_create(**args)
    assert field in error.value.message_dict
    assert not Snapshot.objects.exists()


def test_snapshot_from_pairs_builds_a_preference_snapshot(project, engineer):
    rows = [
        {"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}", "source": "camp 1"}
        for i in range(10)
    ]
    snapshot = snapshot_create_from_pairs(actor=engineer, project=project, name="prefs", rows=rows)

    assert snapshot.task_type == "preference"
    assert snapshot.member_count == 10
    assert set(snapshot.members.values_list("method", flat=True)) == {"evaluation"}
    with pytest.raises(ValidationError, match="rows\\[2\\].chosen"):
        snapshot_create_from_pairs(
            actor=engineer,
            project=project,
            name="bad",
            rows=[rows[0], {"prompt": "q", "chosen": "", "rejected": "r"}],
        )
