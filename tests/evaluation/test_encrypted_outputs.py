import pytest

from core.fields import TOKEN_PREFIX
from evaluation import selectors, services
from evaluation.models import Battle, Generation, Judgment, MetricRun
from tests.evaluation.factories import build_campaign
from tests.support.stored import stored_column

pytestmark = pytest.mark.django_db

SECRET = "Answer 1 written by system"  # what build_campaign's contestants write


def _all_encrypted(table: str, column: str) -> list[str]:
    values = stored_column(table, column)
    assert values
    assert all(v.startswith(TOKEN_PREFIX) for v in values), (table, column)
    return values


def test_outputs_battles_rationales_and_metric_examples_are_stored_encrypted(
    project, engineer, reviewer
):
    campaign, contestants = build_campaign(engineer, project, attention_every=2)
    judgment = services.judgment_next(campaign=campaign, reviewer=reviewer)
    services.judgment_submit(
        campaign=campaign,
        reviewer=reviewer,
        token=judgment.token,
        outcome="a",
        rationale="Mrs Jane Roe's reply is clearer",
    )
    run = services.metric_run_start(
        actor=engineer, contestant=contestants[0], prompt_set=campaign.prompt_set
    )
    services.offline.metric_run_execute(run_id=run.pk)

    stored = [
        *_all_encrypted("evaluation_generation", "output"),
        *_all_encrypted("evaluation_battle", "text_x"),
        *_all_encrypted("evaluation_battle", "text_y"),
        *_all_encrypted("evaluation_judgment", "rationale"),
        *_all_encrypted("evaluation_metricrun", "examples"),
    ]
    assert not any(SECRET in v or "Jane Roe" in v for v in stored)
    # ...and every reader still gets the plaintext back.
    assert Generation.objects.filter(output__isnull=False).count() == 18
    assert {g.output for g in Generation.objects.filter(job__contestant=contestants[0])} == {
        f"Answer {i} written by system 0." for i in range(6)
    }
    assert Judgment.objects.get(pk=judgment.pk).rationale == "Mrs Jane Roe's reply is clearer"
    battle = Battle.objects.get(pk=judgment.battle_id)
    shown = selectors.blind_pair_from_judgment(judgment=judgment, campaign=campaign)
    assert {shown.response_a, shown.response_b} == {battle.text_x, battle.text_y}
    assert shown.prompt.startswith("Customer question number")
    run = MetricRun.objects.get(pk=run.pk)
    assert run.status == MetricRun.Status.SUCCEEDED
    assert run.examples[0]["output"] == "Answer 0 written by system 0."
    assert run.results["scored"] == 6


def test_identical_outputs_still_make_no_battle(project, engineer):
    campaign, _ = build_campaign(engineer, project, identical_on=(0, 1))

    battles = list(Battle.objects.filter(campaign=campaign, kind=Battle.Kind.REAL))

    assert battles
    assert all(b.text_x != b.text_y for b in battles)
    assert campaign.stats["identical_skipped"] == 2 * 3
