import re

import pytest
from django.core.exceptions import ValidationError

from annotation.models import LabelSchema, SnapshotMember
from annotation.services.snapshots import snapshot_create
from core.models import AuditEvent
from evaluation import services
from evaluation.models import GenerationJob, PromptSet
from tests.annotation.factories import DatasetFactory, gold_item
from tests.evaluation.factories import base_model, prompt_rows, writing_snapshot

pytestmark = pytest.mark.django_db


def test_prompts_from_a_snapshot_are_its_test_split_with_gold_references(project, engineer):
    snapshot = writing_snapshot(project, engineer, rows=40)
    test_members = (
        SnapshotMember.objects.filter(snapshot=snapshot, split="test")
        .select_related("item")
        .order_by("position")
    )
    expected = [(m.item.payload["instruction"], m.label["response"]) for m in test_members]
    assert 0 < len(expected) < 40

    prompt_set = services.prompt_set_create_from_snapshot(
        actor=engineer, snapshot=snapshot, name="held-out"
    )

    assert prompt_set.source == PromptSet.Source.SNAPSHOT
    assert prompt_set.snapshot_id == snapshot.pk
    assert prompt_set.prompt_count == len(expected)
    prompts = prompt_set.prompts.order_by("position")
    assert [(p.text, p.reference) for p in prompts] == expected
    assert all(p.metadata["item_id"] for p in prompts)
    assert AuditEvent.objects.filter(action="evaluation.prompt_set.create").count() == 1


def test_a_snapshot_without_a_test_split_is_refused_under_snapshot(project, engineer):
    snapshot = writing_snapshot(
        project, engineer, rows=6, split_ratios={"train": 1.0, "validation": 0.0, "test": 0.0}
    )

    with pytest.raises(ValidationError) as refused:
        services.prompt_set_create_from_snapshot(actor=engineer, snapshot=snapshot, name="empty")

    assert "has no items in its test split" in refused.value.message_dict["snapshot"][0]
    assert not PromptSet.objects.exists()


def test_a_test_item_without_its_prompt_field_is_named(project, engineer):
    LabelSchema.objects.create(
        project=project,
        version=1,
        task_type="writing",
        config={"mode": "write", "prompt_field": "instruction", "response_field": "response"},
        created_by=engineer,
    )
    dataset = DatasetFactory(project=project)
    items = [gold_item(dataset, {"question": f"q{i}"}, {"response": "r"}) for i in range(4)]
    snapshot = snapshot_create(
        actor=engineer,
        project=project,
        name="odd",
        split_ratios={"train": 0.5, "validation": 0.0, "test": 0.5},
    )

    with pytest.raises(ValidationError) as refused:
        services.prompt_set_create_from_snapshot(actor=engineer, snapshot=snapshot, name="odd")

    message = refused.value.message_dict["snapshot"][0]
    assert re.fullmatch(r"item (\d+): payload has no 'instruction' field", message)
    assert int(message.split()[1].rstrip(":")) in {i.pk for i in items}
    assert not PromptSet.objects.exists()


def test_generation_jobs_start_one_job_per_contestant_after_commit(
    project, engineer, django_capture_on_commit_callbacks
):
    prompt_set = services.prompt_set_create(
        actor=engineer, project=project, name="p", rows=prompt_rows(3)
    )
    base = base_model(project, "tiny")
    contestants = [
        services.contestant_create(actor=engineer, project=project, label=label, base_model=base)
        for label in ("plain", "other")
    ]

    with django_capture_on_commit_callbacks() as callbacks:
        jobs = services.generation_jobs_start(
            actor=engineer, contestants=contestants, prompt_set=prompt_set, max_new_tokens=16
        )

    assert [j.contestant for j in jobs] == contestants
    assert all(j.total == 3 and j.decoding["max_new_tokens"] == 16 for j in jobs)
    assert len(callbacks) == 2


def test_one_contestant_without_a_model_refuses_the_whole_batch(
    project, engineer, django_capture_on_commit_callbacks
):
    prompt_set = services.prompt_set_create(
        actor=engineer, project=project, name="p", rows=prompt_rows(3)
    )
    runnable = services.contestant_create(
        actor=engineer, project=project, label="runs", base_model=base_model(project, "tiny")
    )
    imported = services.contestant_create(actor=engineer, project=project, label="imported")

    with django_capture_on_commit_callbacks() as callbacks, pytest.raises(ValidationError) as no:
        services.generation_jobs_start(
            actor=engineer, contestants=[runnable, imported], prompt_set=prompt_set
        )

    assert "imported: This contestant has no model" in no.value.message_dict["contestants"][0]
    assert not GenerationJob.objects.exists()
    assert callbacks == []


def test_a_gate_check_naming_another_projects_prompt_set_is_refused(
    project, other_project, engineer
):
    foreign = services.prompt_set_create(
        actor=engineer, project=other_project, name="theirs", rows=prompt_rows(2)
    )

    with pytest.raises(ValidationError, match="no prompt set"):
        services.gate_create(
            actor=engineer,
            project=project,
            name="g",
            checks=[{"kind": "no_fairness_flag", "prompt_set": foreign.pk}],
        )
