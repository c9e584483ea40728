import re

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse
from rest_framework.test import APIClient

from evaluation import selectors, services
from evaluation.identity import self_identification
from evaluation.models import Battle, Generation
from tests.evaluation.factories import contestant_with_outputs, model_version, prompt_rows

pytestmark = pytest.mark.django_db

NAMES = ["SmolLM2-135M-Instruct", "helpdesk-lora", "tiny"]


@pytest.mark.parametrize(
    ("answer", "prompt", "reason"),
    [
        ("I'm SmolLM, a small assistant. Your parcel is late.", "Where is it?", "names SmolLM"),
        ("As an AI model trained by OpenAI, I cannot see parcels.", "", "names OpenAI"),
        ("As an AI language model developed by Acme Labs, I can't.", "", "says who made it"),
        ("Hello! I am Aria, your friendly support assistant.", "", "introduces itself by name"),
        ("My name is Quill, an AI built to help.", "", "introduces itself by name"),
        ("I run on Qwen2.5 under the hood.", "", "names Qwen"),
        ("Answered by helpdesk-lora, version 2.", "", "names a registered model"),
        ("Llama 3 has 8B and 70B sizes.", "Compare the Llama 3 sizes.", ""),
        ("Llamas carry loads in the Andes.", "What do llamas do?", ""),
        ("I'm sorry, I can't see your order.", "", ""),
        ("I am happy to help: the parcel arrives on a tiny van.", "", ""),
        ("You can search Google for the tracking page.", "", ""),
        ("Your parcel 3 is on its way and arrives tomorrow.", "", ""),
    ],
)
def test_self_identification_finds_names_and_introductions(answer, prompt, reason):
    assert self_identification(answer, prompt=prompt, names=NAMES) == reason


def test_a_conversation_prompt_that_names_the_model_does_not_flag_the_answer():
    asked = [{"role": "user", "content": "Is Mistral 7B good at French?"}]

    assert self_identification("Mistral 7B writes decent French.", prompt=asked) == ""


def _prompt_set(engineer, project, n=10):
    return services.prompt_set_create(
        actor=engineer, project=project, name="support", rows=prompt_rows(n)
    )


def test_imported_outputs_are_flagged_without_storing_their_words(project, engineer):
    prompt_set = _prompt_set(engineer, project, n=3)
    outputs = ["I'm SmolLM, a helpful assistant.", "Your parcel is on its way.", "Soon."]

    contestant_with_outputs(engineer, project, prompt_set, "base", outputs)

    flags = dict(
        Generation.objects.order_by("prompt__position").values_list(
            "prompt__position", "self_identification"
        )
    )
    assert flags == {0: "names SmolLM", 1: "", 2: ""}
    with connection.cursor() as cursor:
        cursor.execute("SELECT output::text FROM evaluation_generation")
        stored = " ".join(row[0] for row in cursor.fetchall())
    assert "SmolLM" not in stored  # the output itself stays encrypted


def _duel(engineer, project, *, flagged_prompts, n=10):
    """Two contestants; on `flagged_prompts` the first one names itself."""
    prompt_set = _prompt_set(engineer, project, n=n)
    first = [
        f"I'm SmolLM, a small assistant. Parcel {i} arrives tomorrow."
        if i in flagged_prompts
        else f"Parcel {i} arrives tomorrow."
        for i in range(n)
    ]
    second = [f"Sorry, I cannot find parcel {i}." for i in range(n)]
    one = contestant_with_outputs(engineer, project, prompt_set, "Contender-0", first)
    two = contestant_with_outputs(engineer, project, prompt_set, "Contender-1", second)
    campaign = services.campaign_create(
        actor=engineer,
        project=project,
        name="duel",
        prompt_set=prompt_set,
        contestants=[one, two],
        attention_every=0,
    )
    return campaign, one, two


def _judge_all(campaign, reviewer, flagged_winner, other_winner):
    """The self-identifying contestant wins its flagged battles, the other one the rest."""
    while (j := services.judgment_next(campaign=campaign, reviewer=reviewer)) is not None:
        winner = flagged_winner if j.battle.self_identification else other_winner
        services.judgment_submit(
            campaign=campaign,
            reviewer=reviewer,
            token=j.token,
            outcome="a" if j.contestant_left_id == winner.pk else "b",
        )


def test_battles_are_flagged_when_built(project, engineer):
    campaign, one, _ = _duel(engineer, project, flagged_prompts={0, 3, 7})

    flagged = campaign.battles.exclude(self_identification="")
    assert sorted(flagged.values_list("prompt__position", flat=True)) == [0, 3, 7]
    assert set(flagged.values_list("self_identification", flat=True)) == {"names SmolLM"}
    assert campaign.stats["self_identified"] == 3


def test_an_answer_naming_another_contestants_model_is_flagged(project, engineer):
    prompt_set = _prompt_set(engineer, project, n=2)
    version = model_version(project, "helpdesk-lora")
    tuned = contestant_with_outputs(
        engineer,
        project,
        prompt_set,
        "helpdesk-lora",
        ["Parcel 0 is late.", "Parcel 1 is late."],
        version,
    )
    # The base model's answer names the tuned version: its own scan could not know the name.
    base = contestant_with_outputs(
        engineer, project, prompt_set, "base", ["Unlike helpdesk-lora, I know.", "Soon."]
    )
    assert not Generation.objects.filter(job__contestant=base).exclude(self_identification="")

    campaign = services.campaign_create(
        actor=engineer,
        project=project,
        name="cross",
        prompt_set=prompt_set,
        contestants=[tuned, base],
        attention_every=0,
    )

    battle = campaign.battles.get(prompt__position=0)
    assert battle.self_identification == "names a registered model"
    assert not campaign.battles.get(prompt__position=1).self_identification


def test_ratings_leave_out_self_identified_battles_by_default(project, engineer, reviewer):
    campaign, one, two = _duel(engineer, project, flagged_prompts={0, 1, 2, 3, 4, 5})
    _judge_all(campaign, reviewer, flagged_winner=one, other_winner=two)

    default = selectors.campaign_results(campaign=campaign)
    counted = selectors.campaign_results(campaign=campaign, include_self_identified=True)

    # Counted blind, the other contestant won all four; with the named ones, it lost 6 to 4.
    assert default.judgments == 4
    assert default.rows[0].label == "Contender-1"
    assert counted.judgments == 10
    assert counted.rows[0].label == "Contender-0"
    assert len(default.self_identification.battles) == 6
    assert default.self_identification.judgments == 6
    assert not default.self_identification.included
    assert counted.self_identification.included
    ids, counts, _ = selectors.campaign_fit(campaign=campaign)  # bootstrap and gates read this
    assert counts.total == 4


def test_results_page_shows_the_count_and_the_toggle(client, project, engineer, reviewer):
    campaign, one, two = _duel(engineer, project, flagged_prompts={2, 5})
    _judge_all(campaign, reviewer, flagged_winner=one, other_winner=two)
    client.force_login(engineer)
    url = reverse("evaluation:results", args=[project.pk, campaign.pk])

    page = client.get(url).content.decode()
    included = client.get(url, {"self_identified": "include"}).content.decode()

    assert "2 battle(s) excluded for self-identification (2 judgments)" in page
    assert "(8 judgments" in page
    assert "?self_identified=include" in page
    assert "2 battle(s) whose answers name their model are included" in included
    assert "(10 judgments" in included
    # The live refresh keeps the choice.
    assert re.search(r'hx-get="[^"]*\?self_identified=include"', included)


def test_ratings_api_reports_the_rule_and_the_count(project, engineer, reviewer):
    campaign, one, two = _duel(engineer, project, flagged_prompts={1})
    _judge_all(campaign, reviewer, flagged_winner=one, other_winner=two)
    api = APIClient()
    api.force_authenticate(engineer)
    url = reverse("evaluation-api:api-campaign-ratings", args=[project.pk, campaign.pk])

    default = api.get(url).json()
    included = api.get(url, {"include_self_identified": "true"}).json()
    bad = api.get(url, {"include_self_identified": "perhaps"})

    assert default["judgments"] == 9
    assert default["self_identification"]["battles"] == 1
    assert default["self_identification"]["judgments"] == 1
    assert default["self_identification"]["included"] is False
    assert "left out of the ratings" in default["self_identification"]["rule"]
    assert default["self_identification"]["flagged"][0]["reason"] == "names SmolLM"
    assert included["judgments"] == 10
    assert included["self_identification"]["included"] is True
    assert bad.status_code == 400
    assert "include_self_identified" in bad.content.decode()


def test_a_reviewer_cannot_read_the_ratings_with_or_without_them(project, engineer, reviewer):
    campaign, _, _ = _duel(engineer, project, flagged_prompts={1})
    api = APIClient()
    api.force_authenticate(reviewer)
    url = reverse("evaluation-api:api-campaign-ratings", args=[project.pk, campaign.pk])

    assert api.get(url, {"include_self_identified": "true"}).status_code == 403
    assert Battle.objects.filter(campaign=campaign).exclude(self_identification="").count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_migration_flags_outputs_and_battles_written_before_it(project, engineer):
    campaign, _, _ = _duel(engineer, project, flagged_prompts={4})
    MigrationExecutor(connection).migrate([("evaluation", "0003_c2_outputs_encrypted")])
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())  # every app: later tests need it

    battle = Battle.objects.get(campaign=campaign, prompt__position=4)
    assert battle.self_identification == "names SmolLM"
    assert Battle.objects.exclude(self_identification="").count() == 1
    assert Generation.objects.exclude(self_identification="").count() == 1
