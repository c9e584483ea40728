import pytest
from django.urls import reverse

from core.models import JobStatus, Role
from evaluation import services
from evaluation.models import MetricRun
from evaluation.selectors.compare import version_comparison
from tests.evaluation.factories import build_campaign, model_version
from tests.portal.factories import ProjectFactory

pytestmark = pytest.mark.django_db

ROLES = [r.value for r in Role]
READERS = {"engineer", "admin", "compliance"}


@pytest.fixture
def rated(project, engineer, reviewer):
    """Three versions rated in one campaign (version 0 always wins), each with a text run."""
    campaign, made = build_campaign(engineer, project, prompts=4, contestants=3, with_versions=True)
    while (j := services.judgment_next(campaign=campaign, reviewer=reviewer)) is not None:
        best = made[0].pk
        outcome = (
            "a" if j.contestant_left_id == best else "b" if j.contestant_right_id == best else "tie"
        )
        services.judgment_submit(
            campaign=campaign, reviewer=reviewer, token=j.token, outcome=outcome
        )
    for n, contestant in enumerate(made):
        MetricRun.objects.create(
            project=project,
            contestant=contestant,
            prompt_set=campaign.prompt_set,
            status=JobStatus.SUCCEEDED,
            results={"exact_match": 0.5, "token_f1": 0.4 + n / 10, "scored": 4},
            created_by=engineer,
        )
    return campaign, [c.model_version for c in made]


def test_versions_are_compared_by_rating_with_intervals_and_by_offline_metrics(project, rated):
    campaign, versions = rated

    comparison = version_comparison(project=project, version_ids=[v.pk for v in versions[:2]])
    (ratings,) = comparison.ratings
    metrics = {row.name: row for row in comparison.metrics}
    prefix = f"{campaign.prompt_set.name} · "

    assert [row[0] for row in ratings.rows] == [versions[0].name, versions[1].name]
    winner, loser = ratings.rows
    assert winner[2] < winner[1] < winner[3]  # low < rating < high
    assert winner[1] > loser[1]
    assert metrics[prefix + "token_f1"].differs
    assert metrics[prefix + "token_f1"].values == ["0.4", "0.5"]
    assert not metrics[prefix + "exact_match"].differs
    assert prefix + "scored" not in metrics  # a count, not a score


def test_a_version_of_another_project_is_not_compared(project, rated):
    stranger = model_version(ProjectFactory(), "elsewhere")
    _, versions = rated

    comparison = version_comparison(project=project, version_ids=[versions[0].pk, stranger.pk])

    assert [v.pk for v in comparison.versions] == [versions[0].pk]


@pytest.mark.parametrize("role", ROLES)
def test_version_compare_page_is_open_to_the_registry_readers(
    client, member_of, project, rated, role
):
    _, versions = rated
    client.force_login(member_of(role))

    response = client.get(
        reverse("evaluation:version_compare", args=[project.pk]),
        {"versions": [v.pk for v in versions]},
    )

    assert response.status_code == (200 if role in READERS else 403)
    if response.status_code == 200:
        body = response.content.decode()
        assert 'data-testid="compare-ratings"' in body
        assert 'data-testid="compare-metrics"' in body
        assert body.count('data-testid="compared-version"') == 3
