"""A file in hh-rlhf's shape goes the whole way: import with the preference-pair mapping,
annotation, snapshot, and a DPO job on a real worker, whose trainer gets each dialogue as
its turns (TRL's conversational format), not one user message holding a transcript."""

import hashlib
import json
import uuid

import pytest

from annotation import services as annotation_services
from annotation.models import AnnotationSettings, GoldLabel, Item
from annotation.services import quality
from annotation.services.exports import export_lines
from annotation.services.snapshots import snapshot_create
from core.models import JobStatus
from tests.annotation.test_conversation_import import HH_ROWS, import_hh, preference_schema
from tests.training.conftest import QUICK, wait_finished
from training import services


def _label_every_item_chosen_first(project, annotator) -> None:
    """One annotator per item (k=1) picks the transcript's chosen reply, as hh-rlhf did."""
    AnnotationSettings.objects.update_or_create(
        project=project, defaults={"labels_per_item": 1, "majority_min": 1}
    )
    while offer := annotation_services.item_lease_next(project=project, annotator=annotator):
        annotation_services.annotation_submit(
            project=project,
            lease_id=offer.lease.pk,
            annotator=annotator,
            value={"best": 0, "reason": ""},
            submission_id=uuid.uuid4(),
        )


@pytest.mark.django_db(transaction=True)
@pytest.mark.celery
def test_hh_shaped_dialogues_reach_the_dpo_trainer_as_message_lists(
    celery_worker, engineer, annotator, project, tiny_base_model
):
    preference_schema(project)
    upload = import_hh(project, engineer)
    assert upload.status == "succeeded", upload.error
    _label_every_item_chosen_first(project, annotator)
    assert GoldLabel.objects.filter(project=project).count() == HH_ROWS
    snapshot = snapshot_create(actor=engineer, project=project, name="hh", seed=3)
    quality.quality_check_start(
        actor=engineer, project=project, kind="leakage", snapshot=snapshot, run_now=True
    )

    job = services.training_job_create(
        actor=engineer,
        project=project,
        name="dpo on dialogues",
        kind="dpo",
        method="lora",
        base_model=tiny_base_model,
        values={**QUICK, "max_steps": 2, "max_length": 256},
        snapshot=snapshot,
    )
    job = wait_finished(job, timeout=240)

    assert job.status == JobStatus.SUCCEEDED, job.error
    # The runner read the train file the worker exported; the same export, byte for byte,
    # is what the job recorded, so these are the rows the trainer got.
    lines = list(export_lines(snapshot=snapshot, fmt="preference", split="train"))
    assert hashlib.sha256(b"".join(lines)).hexdigest() == job.data["train"]["sha256"]
    assert len(lines) == job.data["train"]["rows"] > 0
    rows = [json.loads(line) for line in lines]
    for row in rows:
        prompt = row["prompt"]
        assert [turn["role"] for turn in prompt][-1] == "user"
        assert all(set(turn) == {"role", "content"} for turn in prompt)
        assert not any("Human:" in turn["content"] for turn in prompt)
        assert [turn["role"] for turn in row["chosen"]] == ["assistant"]
        assert [turn["role"] for turn in row["rejected"]] == ["assistant"]
    by_item = {row["metadata"]["item_id"]: row for row in rows}
    multi_turn = [row for row in rows if len(row["prompt"]) > 1]
    assert multi_turn, "the split holds dialogues of several turns"
    for row in multi_turn:
        item = Item.objects.get(pk=row["metadata"]["item_id"])
        assert by_item[item.pk]["prompt"] == item.payload["prompt"]
        assert [t["role"] for t in row["prompt"]] == ["user", "assistant"] * (
            len(row["prompt"]) // 2
        ) + ["user"]
        assert row["chosen"][0]["content"] == item.payload["responses"][0]
