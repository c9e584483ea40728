import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from core.models import Membership, Role
from evaluation import services
from evaluation.models import GenerationJob
from tests.evaluation.factories import build_campaign, contestant_with_outputs

pytestmark = pytest.mark.django_db


def _api(user):
    api = APIClient()
    api.force_authenticate(user)
    return api


def _outputs_url(project):
    return reverse("evaluation-api:api-generation-outputs", args=[project.pk])


def _page_url(project):
    return reverse("evaluation:outputs", args=[project.pk])


@pytest.fixture
def campaign(project, engineer):
    return build_campaign(engineer, project, prompts=3, contestants=2)[0]


def _job(campaign, contestant):
    return GenerationJob.objects.get(contestant=contestant, prompt_set=campaign.prompt_set)


def test_a_jobs_outputs_are_read_beside_their_prompts_and_references(project, engineer, campaign):
    first, _ = campaign.contestants.order_by("pk")
    job = _job(campaign, first)

    body = _api(engineer).get(_outputs_url(project), {"generation_job": job.pk}).json()

    rows = body["results"]
    assert [r["prompt"]["position"] for r in rows] == [0, 1, 2]
    assert rows[1]["output"] == "Answer 1 written by system 0."
    assert rows[1]["prompt"]["text"] == "Customer question number 1: where is my parcel?"
    assert rows[1]["prompt"]["reference"] == "Your parcel 1 is on its way and arrives tomorrow."
    assert rows[1]["prompt"]["turns"] is None
    assert rows[1]["contestant"] == {"id": first.pk, "label": first.label}
    assert {r["generation_job"] for r in rows} == {job.pk}
    assert body["next"] is None


def test_outputs_filter_per_contestant_and_page_by_cursor(project, engineer, campaign):
    _, second = campaign.contestants.order_by("pk")
    api = _api(engineer)

    first_page = api.get(
        _outputs_url(project), {"campaign": campaign.pk, "contestant": second.pk, "limit": 2}
    ).json()
    rest = api.get(first_page["next"]).json()
    everyone = api.get(_outputs_url(project), {"campaign": campaign.pk}).json()["results"]

    rows = first_page["results"] + rest["results"]
    assert [r["output"] for r in rows] == [f"Answer {i} written by system 1." for i in range(3)]
    assert {r["contestant"]["id"] for r in rows} == {second.pk}
    assert len(everyone) == 6


def test_another_projects_outputs_are_never_listed(project, other_project, engineer, campaign):
    foreign, _ = build_campaign(other_project.created_by, other_project, prompts=2, contestants=2)
    foreign_job = GenerationJob.objects.filter(project=other_project).first()
    api = _api(engineer)

    by_job = api.get(_outputs_url(project), {"generation_job": foreign_job.pk}).json()
    by_campaign = api.get(_outputs_url(project), {"campaign": foreign.pk}).json()
    everything = api.get(_outputs_url(project), {"limit": 1000}).json()["results"]

    assert by_job["results"] == []
    assert by_campaign["results"] == []
    assert {r["generation_job"] for r in everything} <= set(
        GenerationJob.objects.filter(project=project).values_list("pk", flat=True)
    )


@pytest.mark.parametrize("params", [{"campaign": "abc"}, {"generation_job": "9" * 30}, {"x": "1"}])
def test_a_malformed_outputs_filter_is_a_400_naming_it(project, engineer, params):
    response = _api(engineer).get(_outputs_url(project), params)

    assert response.status_code == 400
    assert list(response.json()) == list(params)


def test_a_reviewer_reads_no_outputs(project, reviewer, campaign, client):
    client.force_login(reviewer)

    assert _api(reviewer).get(_outputs_url(project)).status_code == 403
    assert client.get(_page_url(project)).status_code == 403


def test_an_engineer_who_also_reviews_gets_no_outputs_of_an_open_campaigns_contestants(
    project, engineer, campaign, client
):
    Membership.objects.create(project=project, user=engineer, role=Role.REVIEWER)
    outsider_contestant = contestant_with_outputs(
        engineer, project, campaign.prompt_set, "Not in any campaign", ["a", "b", "c"]
    )
    client.force_login(engineer)
    api = _api(engineer)

    while_open = api.get(_outputs_url(project), {"limit": 1000})
    page = client.get(_page_url(project))
    services.campaign_close(actor=engineer, campaign=campaign)
    once_closed = api.get(_outputs_url(project), {"limit": 1000}).json()["results"]

    shown = {r["contestant"]["id"] for r in while_open.json()["results"]}
    assert shown == {outsider_contestant.pk}
    assert b"written by system" not in while_open.content
    assert b"written by system" not in page.content
    assert page.context["withheld"] == 6
    assert "hidden from you" in page.content.decode()
    assert len(once_closed) == 9


@pytest.mark.parametrize("role", [Role.ENGINEER, Role.COMPLIANCE, Role.ADMIN])
def test_the_outputs_page_shows_a_jobs_outputs_to_who_may_see_generations(
    project, engineer, campaign, client, member_of, role
):
    first, _ = campaign.contestants.order_by("pk")
    job = _job(campaign, first)
    client.force_login(member_of(role))

    page = client.get(_page_url(project), {"generation_job": job.pk})

    text = page.content.decode()
    assert page.status_code == 200
    assert text.count('data-testid="output"') == 3
    assert "Answer 2 written by system 0." in text
    assert "Your parcel 2 is on its way" in text
    assert "Customer question number 2" in text
    assert "written by system 1" not in text


def test_the_outputs_page_filters_per_contestant_and_refuses_a_bad_filter_gently(
    project, engineer, campaign, client
):
    _, second = campaign.contestants.order_by("pk")
    client.force_login(engineer)

    page = client.get(_page_url(project), {"campaign": campaign.pk, "contestant": second.pk})
    bad = client.get(_page_url(project), {"contestant": "abc", "page": "x"})

    assert page.content.decode().count('data-testid="output"') == 3
    assert "written by system 0" not in page.content.decode()
    assert bad.status_code == 200
    assert 'data-testid="outputs-error"' in bad.content.decode()


def test_the_generation_jobs_table_and_the_campaign_page_link_to_the_outputs(
    project, engineer, campaign, client
):
    first, _ = campaign.contestants.order_by("pk")
    client.force_login(engineer)

    overview = client.get(reverse("evaluation:overview", args=[project.pk])).content.decode()
    results = client.get(
        reverse("evaluation:results", args=[project.pk, campaign.pk])
    ).content.decode()

    job = _job(campaign, first)
    assert f"{_page_url(project)}?generation_job={job.pk}" in overview
    assert f"{_page_url(project)}?campaign={campaign.pk}" in results
