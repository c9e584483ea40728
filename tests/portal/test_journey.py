import pytest

from portal.journey import journey_is_moving, project_journey
from tests.governance.factories import full_lineage
from training.models import TrainingJob

pytestmark = pytest.mark.django_db


def _card(project):
    return {
        s.key: (s.state, s.summary, s.percent)
        for s in project_journey(project=project, roles={"engineer"})
    }


def test_an_empty_project_has_every_stage_still_to_do(project):
    card = _card(project)

    assert list(card) == [
        "data",
        "annotation",
        "snapshot",
        "training",
        "evaluation",
        "gate",
        "approval",
    ]
    assert [state for state, _, _ in card.values()] == ["todo"] * 7


def test_a_project_carried_to_canary_shows_each_stage_done(project, engineer, compliance, reviewer):
    full_lineage(project, engineer, compliance, reviewer)

    card = _card(project)

    assert card["data"] == ("done", "1 dataset(s), 20 item(s)", None)
    assert card["annotation"][0::2] == ("done", 100)
    assert card["snapshot"][1].endswith("· 20 items · leakage not checked")
    assert card["training"][0] == "done"
    assert card["evaluation"] == ("done", "tickets duel: 12 judgment(s)", None)
    assert card["gate"] == ("done", "release gate: passed", None)
    assert card["approval"] == ("done", "support-bot v1: canary · dossier succeeded", None)


def test_a_running_job_shows_its_step_and_keeps_the_card_moving(
    project, engineer, compliance, reviewer
):
    full_lineage(project, engineer, compliance, reviewer)
    TrainingJob.objects.filter(project=project).update(status="running", preflight={"steps": 40})

    stages = project_journey(project=project, roles={"engineer"})

    training = next(s for s in stages if s.key == "training")
    assert (training.state, training.percent) == ("active", 25)
    assert training.summary.endswith("running, step 10 of 40")
    assert journey_is_moving(stages)
