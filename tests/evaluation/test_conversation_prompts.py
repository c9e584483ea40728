"""Conversational prompts in evaluation: prompt sets keep a dialogue's turns, generation
continues it through the chat template, and the reviewer reads it turn by turn."""

import json

import lxml.html
import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from rest_framework.test import APIClient

from annotation.models import LabelSchema
from annotation.services.exports import export_lines
from annotation.services.snapshots import snapshot_create
from evaluation import services
from evaluation.models import Prompt
from tests.annotation.factories import DatasetFactory, gold_item
from tests.evaluation.factories import contestant_with_outputs
from tests.support.stored import stored_prompt
from training.ml.generation import _render
from training.ml.tiny import _tokenizer

pytestmark = pytest.mark.django_db

DIALOGUE = [
    {"role": "user", "content": "My order 17 is late."},
    {"role": "assistant", "content": "Sorry to hear that. When did you order?"},
    {"role": "user", "content": "Last Monday."},
]


def _dialogue_set(engineer, project, name="dialogues"):
    return services.prompt_set_create(
        actor=engineer,
        project=project,
        name=name,
        rows=[{"prompt": DIALOGUE}, {"prompt": "A plain question?"}],
    )


def test_a_prompt_set_keeps_a_dialogue_as_its_turns_encrypted_at_rest(project, engineer):
    prompt_set = _dialogue_set(engineer, project)

    first, second = Prompt.objects.filter(prompt_set=prompt_set).order_by("position")
    assert first.text == DIALOGUE
    assert second.text == "A plain question?"
    assert "order 17" not in stored_prompt(first.pk)[0]


def test_a_malformed_dialogue_is_refused_naming_the_row_and_turn(project, engineer):
    with pytest.raises(ValidationError, match=r"row 2: prompt\[0\]\.role: the last turn"):
        services.prompt_set_create(
            actor=engineer,
            project=project,
            name="bad",
            rows=[{"prompt": "fine"}, {"prompt": [{"role": "assistant", "content": "hi"}]}],
        )


def test_the_api_takes_a_dialogue_and_answers_a_bad_one_with_400(project, engineer):
    api = APIClient()
    api.force_authenticate(engineer)
    url = reverse("evaluation-api:api-prompt-sets", args=[project.pk])

    good = api.post(url, {"name": "via api", "rows": [{"prompt": DIALOGUE}]}, format="json")
    bad = api.post(url, {"name": "bad", "rows": [{"prompt": [{"role": "x"}]}]}, format="json")

    assert good.status_code == 201, good.content
    assert Prompt.objects.get(prompt_set_id=good.json()["id"]).text == DIALOGUE
    assert bad.status_code == 400
    assert "prompt[0].role" in str(bad.json())


def test_a_conversational_snapshot_gives_dialogue_prompts_and_text_references(project, engineer):
    LabelSchema.objects.create(
        project=project,
        version=1,
        task_type="preference",
        config={"mode": "best"},
        created_by=engineer,
    )
    dataset = DatasetFactory(project=project)
    for i in range(10):
        turns = [*DIALOGUE[:-1], {"role": "user", "content": f"Last Monday, parcel {i}."}]
        gold_item(dataset, {"prompt": turns, "responses": [f"On its way {i}.", "No."]}, {"best": 0})
    snapshot = snapshot_create(
        actor=engineer,
        project=project,
        name="dialogues",
        seed=1,
        split_ratios={"train": 0.5, "validation": 0.0, "test": 0.5},
    )

    prompt_set = services.prompt_set_create_from_snapshot(
        actor=engineer, snapshot=snapshot, name="from snapshot"
    )

    prompts = list(prompt_set.prompts.order_by("position"))
    assert prompts
    for prompt in prompts:
        assert [t["role"] for t in prompt.text] == ["user", "assistant", "user"]
        i = prompt.text[-1]["content"].split("parcel ")[1].rstrip(".")
        assert prompt.reference == f"On its way {i}."


def test_generation_continues_a_dialogue_through_the_chat_template():
    tokenizer = _tokenizer()

    text = _render(tokenizer, DIALOGUE, None)

    assert text == (
        "<|im_start|>user\nMy order 17 is late.<|im_end|>\n"
        "<|im_start|>assistant\nSorry to hear that. When did you order?<|im_end|>\n"
        "<|im_start|>user\nLast Monday.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert _render(tokenizer, DIALOGUE, "Q: {prompt}\nA:") == (
        "Q: User: My order 17 is late.\n\nAssistant: Sorry to hear that. When did you order?"
        "\n\nUser: Last Monday.\nA:"
    )
    assert (
        _render(tokenizer, "Hi", None) == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


@pytest.fixture
def dialogue_campaign(project, engineer):
    prompt_set = services.prompt_set_create(
        actor=engineer, project=project, name="one dialogue", rows=[{"prompt": DIALOGUE}]
    )
    contestants = [
        contestant_with_outputs(engineer, project, prompt_set, f"m{c}", [f"Answer {c}."])
        for c in range(2)
    ]
    return services.campaign_create(
        actor=engineer,
        project=project,
        name="dialogues",
        prompt_set=prompt_set,
        contestants=contestants,
        attention_every=0,
    )


def test_the_reviewer_reads_the_dialogue_turn_by_turn(client, project, dialogue_campaign, reviewer):
    client.force_login(reviewer)

    html = client.get(reverse("evaluation:review", args=[project.pk, dialogue_campaign.pk]))

    (prompt,) = lxml.html.fromstring(html.content).xpath('//*[@data-testid="prompt"]')
    turns = [
        (li.get("data-role"), li.find_class("turn-text")[0].text_content())
        for li in prompt.xpath('.//*[@data-testid="conversation"]/li')
    ]
    assert turns == [(t["role"], t["content"]) for t in DIALOGUE]


def test_the_review_api_gives_the_turns_beside_the_text(project, dialogue_campaign, reviewer):
    api = APIClient()
    api.force_authenticate(reviewer)

    pair = api.get(
        reverse("evaluation-api:api-review-next", args=[project.pk, dialogue_campaign.pk])
    ).json()

    assert [(t["role"], t["content"]) for t in pair["turns"]] == [
        (t["role"], t["content"]) for t in DIALOGUE
    ]
    assert pair["prompt"].startswith("User: My order 17 is late.\n\nAssistant: ")


def test_judgments_on_a_dialogue_export_as_preference_rows_with_its_turns(
    project, engineer, dialogue_campaign, reviewer
):
    judgment = services.judgment_next(campaign=dialogue_campaign, reviewer=reviewer)
    services.judgment_submit(
        campaign=dialogue_campaign, reviewer=reviewer, token=judgment.token, outcome="a"
    )

    snapshot = services.campaign_export_preferences(
        actor=engineer, campaign=dialogue_campaign, name="judged dialogues"
    )

    rows = [json.loads(line) for line in export_lines(snapshot=snapshot, fmt="preference")]
    assert [row["prompt"] for row in rows] == [DIALOGUE]
    assert rows[0]["chosen"][0]["role"] == "assistant"
