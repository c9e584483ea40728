import json

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from annotation.models import Annotation, GoldLabel, Item, SnapshotMember
from annotation.services.snapshots import manifest_recompute, snapshot_create
from core.fields import TOKEN_PREFIX
from evaluation.models import Battle, Generation, Judgment
from evaluation.services import judgment_next, judgment_submit, prompt_set_create
from tests.annotation.factories import DatasetFactory
from tests.annotation.test_label_encryption import SECRET, _written_gold
from tests.evaluation.factories import build_campaign
from tests.support.stored import (
    stored_annotation,
    stored_column,
    stored_gold_label,
    stored_item,
    stored_member,
    stored_prompt,
    stored_rows_text,
)

pytestmark = pytest.mark.django_db(transaction=True)


def _migrate(target):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target])


def _migrate_app_to_latest(app):
    """`app` forward, and with it every app: going back may have unapplied other apps'
    migrations that depend on it, and later tests need the newest schema."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())


def test_the_encryption_migration_encrypts_rows_written_before_it(project):
    dataset = DatasetFactory(project=project)
    _migrate(("annotation", "0003_curation"))
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                """
                INSERT INTO annotation_item (project_id, dataset_id, row_number, external_id,
                    payload, content_hash, metadata, state, priority, random_key,
                    assigned_count, label_count, is_gold, gold_answer)
                VALUES (%s, %s, 1, '', %s::jsonb, 'h', '{}'::jsonb, 'open', 0, 0, 0, 0, true,
                    %s::jsonb)
                RETURNING id
                """,
                [project.pk, dataset.pk, json.dumps({"text": "before"}), '{"label": "pos"}'],
            )
            (item_id,) = cursor.fetchone()
    finally:
        _migrate_app_to_latest("annotation")

    raw_payload, raw_gold = stored_item(item_id)
    assert raw_payload.startswith(TOKEN_PREFIX)
    assert raw_gold.startswith(TOKEN_PREFIX)
    item = Item.objects.get(pk=item_id)
    assert item.payload == {"text": "before"}
    assert item.gold_answer == {"label": "pos"}


def test_the_prompt_migration_decrypts_going_back_and_encrypts_going_forward(project, engineer):
    prompt_set = prompt_set_create(
        actor=engineer,
        project=project,
        name="held out",
        rows=[{"prompt": "hello there", "reference": "general kenobi"}],
    )
    prompt = prompt_set.prompts.get()

    _migrate(("evaluation", "0001_initial"))
    try:
        assert stored_prompt(prompt.pk) == ("hello there", "general kenobi")
    finally:
        _migrate_app_to_latest("evaluation")

    raw_text, raw_reference = stored_prompt(prompt.pk)
    assert raw_text.startswith(TOKEN_PREFIX)
    assert raw_reference.startswith(TOKEN_PREFIX)
    prompt.refresh_from_db()
    assert (prompt.text, prompt.reference) == ("hello there", "general kenobi")


def _label_columns(table, pk, column):
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column}::text FROM {table} WHERE id = %s", [pk])  # noqa: S608 - test constants
        return json.loads(cursor.fetchone()[0])


def test_the_label_migration_joins_going_back_and_splits_and_encrypts_going_forward(
    project, engineer
):
    answers, gold = _written_gold(project)
    snapshot = snapshot_create(actor=engineer, project=project, name="sft", seed=1)
    member = SnapshotMember.objects.get(snapshot=snapshot)

    _migrate(("annotation", "0004_item_payload_encrypted"))
    try:
        assert _label_columns("annotation_annotation", answers[0].pk, "value") == {
            "response": SECRET
        }
        assert _label_columns("annotation_goldlabel", gold.pk, "value") == {"response": SECRET}
        assert _label_columns("annotation_snapshotmember", member.pk, "label") == {
            "response": SECRET
        }
    finally:
        _migrate_app_to_latest("annotation")

    assert stored_annotation(answers[0].pk)[1].startswith(TOKEN_PREFIX)
    assert stored_gold_label(gold.pk)[1].startswith(TOKEN_PREFIX)
    assert stored_member(member.pk)[1].startswith(TOKEN_PREFIX)
    assert "Jane Roe" not in stored_rows_text("annotation_snapshotmember")
    assert Annotation.objects.get(pk=answers[0].pk).value == {"response": SECRET}
    assert GoldLabel.objects.get(pk=gold.pk).value == {"response": SECRET}
    assert manifest_recompute(snapshot=snapshot) == snapshot.manifest_sha256


def test_the_outputs_migration_decrypts_going_back_and_encrypts_going_forward(
    project, engineer, reviewer
):
    campaign, _ = build_campaign(engineer, project, prompts=2, contestants=2)
    judgment = judgment_next(campaign=campaign, reviewer=reviewer)
    judgment_submit(
        campaign=campaign, reviewer=reviewer, token=judgment.token, outcome="b", rationale="terse"
    )
    outputs = sorted(Generation.objects.values_list("output", flat=True))

    _migrate(("evaluation", "0002_prompt_text_encrypted"))
    try:
        assert sorted(stored_column("evaluation_generation", "output")) == outputs
        assert "terse" in stored_column("evaluation_judgment", "rationale")
    finally:
        _migrate_app_to_latest("evaluation")

    for table, column in [
        ("evaluation_generation", "output"),
        ("evaluation_battle", "text_x"),
        ("evaluation_battle", "text_y"),
        ("evaluation_judgment", "rationale"),
    ]:
        assert all(v.startswith(TOKEN_PREFIX) for v in stored_column(table, column))
    assert sorted(Generation.objects.values_list("output", flat=True)) == outputs
    assert Judgment.objects.get(pk=judgment.pk).rationale == "terse"
    assert Battle.objects.filter(campaign=campaign).count() == 2
