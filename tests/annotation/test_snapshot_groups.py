"""Snapshots split by group: items sharing a prompt (or a declared split group, as
judgments share a battle) land in one split, and every snapshot, however it is made,
starts its leakage check."""

from collections import defaultdict

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from annotation.models import LabelSchema, QualityCheck, Snapshot
from annotation.services import quality
from annotation.services.snapshots import snapshot_create, snapshot_create_from_pairs
from annotation.split_groups import GroupedSplitter, prompt_sha256, straddling_groups
from portal import demo_pipeline
from tests.annotation.factories import DatasetFactory, classification_setup, gold_item

pytestmark = pytest.mark.django_db

PROMPTS = [f"How do I reset the router in room {n}?" for n in range(12)]


def _preference_project(project):
    LabelSchema.objects.create(
        project=project,
        version=1,
        task_type="preference",
        config={"mode": "best"},
        created_by=project.created_by,
    )
    dataset = DatasetFactory(project=project)
    for n, prompt in enumerate(PROMPTS):
        # Four answers to each prompt, the prompt written slightly differently each time:
        # case and spacing do not make it another prompt.
        for copy, shown in enumerate(
            (prompt, prompt.upper(), f"  {prompt}\n", prompt.replace(" ", "  "))
        ):
            gold_item(
                dataset,
                {"prompt": shown, "responses": [f"answer {n}.{copy} a", f"answer {n}.{copy} b"]},
                {"best": copy % 2, "reason": ""},
            )
    return dataset


def _splits_by(snapshot, key):
    splits = defaultdict(set)
    for member in snapshot.members.select_related("item"):
        splits[key(member.item)].add(member.split)
    return splits


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_answers_to_one_prompt_land_in_one_split(project, engineer, seed):
    _preference_project(project)

    snapshot = snapshot_create(actor=engineer, project=project, name="prefs", seed=seed)

    by_prompt = _splits_by(snapshot, lambda item: prompt_sha256(item.payload["prompt"]))
    assert len(by_prompt) == len(PROMPTS)
    assert all(len(splits) == 1 for splits in by_prompt.values())
    assert snapshot.stats["grouping"]["groups"] == len(PROMPTS)
    assert snapshot.stats["grouping"]["by"] == "prompt"
    # 48 answers in 12 groups of 4: 5 (rounded) go to test, so one group of 4 does
    assert snapshot.stats["splits"] == {"train": 40, "validation": 4, "test": 4}


def test_grouped_split_is_deterministic_from_the_seed(project, engineer):
    _preference_project(project)

    def splits(name, seed):
        made = snapshot_create(actor=engineer, project=project, name=name, seed=seed)
        return list(made.members.order_by("position").values_list("item_id", "split"))

    assert splits("a", 5) == splits("b", 5)
    assert splits("a", 5) != splits("c", 6)


def test_items_declaring_one_split_group_stay_together(project, engineer):
    classification_setup(project)
    dataset = DatasetFactory(project=project)
    for n in range(40):
        gold_item(
            dataset,
            {"text": f"ticket {n}"},
            {"labels": ["pos" if n % 2 else "neg"]},
            metadata={"split_group": f"conversation-{n // 5}"},
        )

    snapshot = snapshot_create(actor=engineer, project=project, name="c", seed=3)

    by_group = _splits_by(snapshot, lambda item: item.metadata["split_group"])
    assert len(by_group) == 8
    assert all(len(splits) == 1 for splits in by_group.values())
    assert {"train", "test"} <= {s for splits in by_group.values() for s in splits}


def test_single_items_keep_the_per_item_rule():
    splitter = GroupedSplitter(seed=0, ratios={"train": 0.8, "validation": 0.1, "test": 0.1})
    for n in range(1, 21):
        splitter.add(n, [f"content:{n:064x}"], "a")
    splitter.assign()
    lookup = splitter.split_lookup()
    splits = [lookup(n) for n in range(1, 21)]
    assert (splits.count("test"), splits.count("validation"), splits.count("train")) == (2, 2, 16)


def test_leakage_reports_items_sharing_a_prompt_in_two_splits():
    members = [
        (1, ["prompt:aa", "group:battle-1"], "train"),
        (2, ["prompt:aa", "group:battle-2"], "test"),
        (3, ["prompt:bb", "group:battle-2"], "test"),  # joined to 1 and 2 through its battle
        (4, ["prompt:cc"], "train"),
        (5, ["prompt:cc"], "train"),
    ]

    assert straddling_groups(members) == [{"items": [1, 2, 3], "splits": ["test", "train"]}]


def _judgment_rows():
    return [
        {
            "prompt": PROMPTS[n % 6],
            "chosen": f"good {n}",
            "rejected": f"bad {n}",
            "source": "camp",
            "group": f"battle-{n % 9}",
        }
        for n in range(30)
    ]


def _gold_items(project, task_type):
    if task_type == "writing":
        LabelSchema.objects.create(
            project=project,
            version=1,
            task_type="writing",
            config={"mode": "write"},
            created_by=project.created_by,
        )
    else:
        classification_setup(project)
    dataset = DatasetFactory(project=project)
    for n in range(20):
        if task_type == "writing":
            gold_item(dataset, {"instruction": f"repeat word {n}"}, {"response": f"word {n}"})
        else:
            gold_item(dataset, {"text": f"t {n}"}, {"labels": ["pos"]})


def _make(path, project, engineer, tiny_model_dir, client):
    if path == "judgments":
        return snapshot_create_from_pairs(
            actor=engineer, project=project, name="j", rows=_judgment_rows()
        )
    _gold_items(project, "writing" if path == "demo" else "classification")
    if path == "service":
        snapshot_create(actor=engineer, project=project, name="s")
    elif path == "page":
        client.force_login(engineer)
        client.post(
            reverse("annotation:curation", args=[project.pk]),
            {"form": "snapshot", "name": "p", "train": "0.8", "validation": "0.1", "test": "0.1"},
        )
    elif path == "api":
        api = APIClient()
        api.force_authenticate(engineer)
        created = api.post(
            reverse("annotation-api:api-snapshots", args=[project.pk]),
            {"name": "a", "seed": 1},
            format="json",
        )
        assert created.json()["leakage"]["status"] == "queued"
    elif path == "demo":
        job = demo_pipeline._first_job(project, engineer, str(tiny_model_dir))
        assert job is not None  # the demo's job launched: the check had run
    return Snapshot.objects.get(project=project)


@pytest.mark.parametrize("path", ["service", "page", "api", "judgments", "demo"])
def test_every_way_of_making_a_snapshot_starts_its_leakage_check(
    path, project, engineer, client, django_capture_on_commit_callbacks, request
):
    tiny = request.getfixturevalue("tiny_model_dir") if path == "demo" else None
    with django_capture_on_commit_callbacks() as callbacks:
        snapshot = _make(path, project, engineer, tiny, client)

    check = QualityCheck.objects.get(snapshot=snapshot, kind="leakage")
    assert check.created_by == engineer
    assert callbacks  # the check's task is enqueued on commit
    if path == "demo":
        assert check.status == "succeeded"
    else:
        assert check.status == "queued"
        quality.quality_check_run(check_id=check.pk)
        check.refresh_from_db()
        assert check.status == "succeeded"
    assert check.result["leaks"] == 0
