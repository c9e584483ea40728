import hashlib
import io
import json
import uuid

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from annotation import services
from annotation.metrics import project_agreement
from annotation.models import (
    Annotation,
    AnnotationSettings,
    GoldLabel,
    LabelSchema,
    Lease,
    SnapshotMember,
)
from annotation.schemas import normalize_config
from annotation.services.exports import export_lines
from annotation.services.snapshots import label_sha256, manifest_recompute, snapshot_create
from core.fields import TOKEN_PREFIX
from tests.annotation.factories import DatasetFactory, ItemFactory, classification_setup
from tests.portal.factories import MembershipFactory, UserFactory
from tests.support.stored import (
    stored_annotation,
    stored_gold_label,
    stored_member,
    stored_rows_text,
)

pytestmark = pytest.mark.django_db

SECRET = "call Jane Roe on 555-0100"
TABLES = ("annotation_annotation", "annotation_goldlabel", "annotation_snapshotmember")


def _setup(project, task_type, config, *, k=2, lease_seconds=600):
    AnnotationSettings.objects.update_or_create(
        project=project,
        defaults={"labels_per_item": k, "majority_min": min(2, k), "lease_seconds": lease_seconds},
    )
    LabelSchema.objects.create(
        project=project,
        version=1,
        task_type=task_type,
        config=normalize_config(task_type, config),
        created_by=project.created_by,
    )
    return [
        MembershipFactory(
            project=project, role="annotator", user=UserFactory(username=f"w{i}")
        ).user
        for i in range(k)
    ]


def _answer(project, user, value):
    offer = services.item_lease_next(project=project, annotator=user)
    return services.annotation_submit(
        project=project,
        lease_id=offer.lease.pk,
        annotator=user,
        value=value,
        submission_id=uuid.uuid4(),
    )


def _written_gold(project, *, lease_seconds=600):
    """Two annotators write the same response; agreement makes it the gold label."""
    annotators = _setup(project, "writing", {"mode": "edit"}, lease_seconds=lease_seconds)
    ItemFactory(project=project, payload={"instruction": "who to call?", "response": "draft"})
    answers = [_answer(project, user, {"response": SECRET}) for user in annotators]
    return answers, GoldLabel.objects.get()


@pytest.mark.parametrize("lease_seconds", [600, 3], ids=["one-statement path", "locked path"])
def test_written_answers_gold_labels_and_members_hold_only_ciphertext(
    project, engineer, lease_seconds
):
    answers, gold = _written_gold(project, lease_seconds=lease_seconds)
    snapshot = snapshot_create(actor=engineer, project=project, name="sft", seed=1)
    member = SnapshotMember.objects.get(snapshot=snapshot)

    for stored in [*map(stored_annotation, [a.pk for a in answers]), stored_member(member.pk)]:
        choice, free_text = stored
        assert choice is None
        assert free_text.startswith(TOKEN_PREFIX)
    choice, free_text, reason = stored_gold_label(gold.pk)
    assert choice is None
    assert free_text.startswith(TOKEN_PREFIX)
    assert reason.startswith(TOKEN_PREFIX)
    for table in TABLES:
        assert "Jane Roe" not in stored_rows_text(table)
    assert [a.value for a in Annotation.objects.order_by("pk")] == [{"response": SECRET}] * 2
    assert GoldLabel.objects.get().value == {"response": SECRET}
    assert SnapshotMember.objects.get().label == {"response": SECRET}


def test_schema_choices_stay_plain_and_a_preference_reason_is_encrypted(project, engineer):
    annotators = _setup(project, "preference", {"mode": "best"}, k=1)
    ItemFactory(project=project, payload={"prompt": "p", "responses": ["a", "b"]})
    answer = _answer(project, annotators[0], {"best": 1, "reason": SECRET})

    choice, free_text = stored_annotation(answer.pk)
    assert json.loads(choice) == {"best": 1}
    assert free_text.startswith(TOKEN_PREFIX)
    assert GoldLabel.objects.get().value == {"best": 1, "reason": SECRET}
    assert "Jane Roe" not in stored_rows_text("annotation_goldlabel")


def test_classification_answers_need_no_decryption(project):
    classification_setup(project, k=1)
    ItemFactory(project=project)
    user = MembershipFactory(project=project, role="annotator").user
    answer = _answer(project, user, {"labels": ["neg"]})

    assert stored_annotation(answer.pk) == ('{"labels": ["neg"]}', None)
    assert Annotation.objects.get().value == {"labels": ["neg"]}


def test_a_skip_reason_is_encrypted_and_a_lease_not_skipped_has_none(project):
    classification_setup(project, k=1)
    ItemFactory.create_batch(2, project=project)
    user = MembershipFactory(project=project, role="annotator").user
    offer = services.item_lease_next(project=project, annotator=user)

    services.item_skip(project=project, lease_id=offer.lease.pk, annotator=user, reason=SECRET)
    current = services.item_lease_next(project=project, annotator=user)

    assert "Jane Roe" not in stored_rows_text("annotation_lease")
    assert Lease.objects.get(pk=offer.lease.pk).skip_reason == SECRET
    assert Lease.objects.get(pk=current.lease.pk).skip_reason is None


def test_an_adjudicators_response_and_reason_are_encrypted(project, adjudicator):
    annotators = _setup(project, "writing", {"mode": "write"})
    ItemFactory(project=project, payload={"instruction": "who to call?"})
    _answer(project, annotators[0], {"response": "one"})
    _answer(project, annotators[1], {"response": "two"})
    lease = services.adjudication_lease_next(project=project, adjudicator=adjudicator)

    gold = services.adjudication_resolve(
        project=project,
        item_id=lease.item_id,
        adjudicator=adjudicator,
        value={"response": SECRET},
        reason="Jane Roe asked for this",
    )

    assert "Jane Roe" not in stored_rows_text("annotation_goldlabel")
    gold = GoldLabel.objects.get(pk=gold.pk)
    assert (gold.value, gold.reason) == ({"response": SECRET}, "Jane Roe asked for this")


def test_manifest_and_exports_are_those_of_the_plaintext_labels(project, engineer):
    _written_gold(project)
    snapshot = snapshot_create(actor=engineer, project=project, name="sft", seed=1)
    member = SnapshotMember.objects.get(snapshot=snapshot)

    line = f"{member.content_hash} {label_sha256({'response': SECRET})} {member.split}\n"
    assert snapshot.manifest_sha256 == hashlib.sha256(line.encode()).hexdigest()
    assert manifest_recompute(snapshot=snapshot) == snapshot.manifest_sha256
    (row,) = [json.loads(line) for line in export_lines(snapshot=snapshot, fmt="sft")]
    assert row["messages"][-1] == {"role": "assistant", "content": SECRET}


def test_rotation_re_encrypts_answers_gold_labels_and_members(project, engineer, settings):
    old = Fernet.generate_key().decode()
    settings.PORTAL_ENCRYPTION_KEYS = [old]
    answers, gold = _written_gold(project)
    snapshot = snapshot_create(actor=engineer, project=project, name="sft", seed=1)
    member = SnapshotMember.objects.get(snapshot=snapshot)
    before = [
        stored_annotation(answers[0].pk),
        stored_gold_label(gold.pk),
        stored_member(member.pk),
    ]
    new = Fernet.generate_key().decode()

    settings.PORTAL_ENCRYPTION_KEYS = [new, old]
    err = io.StringIO()
    call_command("rotate_encryption_key", stdout=io.StringIO(), stderr=err)
    settings.PORTAL_ENCRYPTION_KEYS = [new]

    for label in ("annotation.Annotation", "annotation.GoldLabel", "annotation.SnapshotMember"):
        assert label in err.getvalue()
    after = [stored_annotation(answers[0].pk), stored_gold_label(gold.pk), stored_member(member.pk)]
    for old_row, new_row in zip(before, after, strict=True):
        assert new_row[1] != old_row[1]
        assert json.loads(Fernet(new).decrypt(new_row[1].encode())) == {"response": SECRET}
    assert Annotation.objects.get(pk=answers[0].pk).value == {"response": SECRET}
    assert GoldLabel.objects.get(pk=gold.pk).value == {"response": SECRET}
    assert SnapshotMember.objects.get(pk=member.pk).label == {"response": SECRET}
    assert manifest_recompute(snapshot=snapshot) == snapshot.manifest_sha256


@pytest.mark.parametrize(
    "statement",
    [
        'UPDATE annotation_snapshotmember SET choice = \'{"labels": ["neg"]}\' WHERE id = %s',
        'UPDATE annotation_snapshotmember SET free_text = \'{"response": "x"}\' WHERE id = %s',
        "UPDATE annotation_snapshotmember SET free_text = NULL WHERE id = %s",
        "DELETE FROM annotation_snapshotmember WHERE id = %s",
    ],
)
def test_members_still_refuse_every_change_but_a_re_encryption(project, engineer, statement):
    _written_gold(project)
    snapshot = snapshot_create(actor=engineer, project=project, name="sft", seed=1)
    member = SnapshotMember.objects.get(snapshot=snapshot)

    with (
        pytest.raises(DatabaseError, match="immutable"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement, [member.pk])

    assert SnapshotMember.objects.get(pk=member.pk).label == {"response": SECRET}


def test_agreement_reads_plain_choices(project):
    classification_setup(project, k=2)
    dataset = DatasetFactory(project=project)
    ItemFactory.create_batch(3, project=project, dataset=dataset)
    users = [MembershipFactory(project=project, role="annotator").user for _ in range(2)]
    for user in users:
        for label in ("pos", "pos", "neg"):
            _answer(project, user, {"labels": [label]})

    summary = project_agreement(project=project)

    assert summary["labels"] == 6
    assert summary["questions"]["answer"]["alpha"] == pytest.approx(1.0)
    assert sorted(summary["categories"]) == ["neg", "pos"]
