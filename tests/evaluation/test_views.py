import json
import re
from html.parser import HTMLParser

import pytest
from django.core.management import call_command
from django.db import connection
from django.urls import reverse
from rest_framework.test import APIClient

from core.models import Role
from evaluation import services
from evaluation.models import (
    Battle,
    Campaign,
    CampaignRater,
    Contestant,
    GenerationJob,
    Judgment,
    MetricRun,
)
from tests.conftest import ROLES
from tests.evaluation.factories import build_campaign, prompt_rows
from training.models import BaseModel, ModelVersion

pytestmark = pytest.mark.django_db


@pytest.fixture
def campaign(project, engineer):
    return build_campaign(engineer, project, attention_every=3, with_versions=True)[0]


@pytest.mark.parametrize("role", sorted(set(ROLES) - {Role.ENGINEER}))
def test_only_engineers_change_campaigns(client, project, campaign, member_of, role):
    client.force_login(member_of(role))

    response = client.post(
        reverse("evaluation:campaign_action", args=[project.pk, campaign.pk]), {"action": "close"}
    )

    assert response.status_code == 403
    assert Campaign.objects.get(pk=campaign.pk).status == "open"


def test_a_campaign_of_another_project_is_404(client, project, other_project, campaign, member_of):
    client.force_login(member_of(Role.REVIEWER))

    response = client.get(reverse("evaluation:review", args=[project.pk, campaign.pk + 10_000]))

    assert response.status_code == 404


# --- blindness ----------------------------------------------------------------------------------


class _Attributes(HTMLParser):
    def __init__(self):
        super().__init__()
        self.values: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.values.extend(v for _, v in attrs if v)


def _json_values(data):
    if isinstance(data, dict):
        for k, v in data.items():
            yield str(k)
            yield from _json_values(v)
    elif isinstance(data, list):
        for v in data:
            yield from _json_values(v)
    elif data is not None:
        yield str(data)


def _identity(project):
    """Every string and id that could tell a reviewer which model wrote a response."""
    words = {
        "contestant",
        "model_version",
        "modelversion",
        "base_model",
        "generation",
        "battle",
        "left_is_x",
        "text_x",
        "text_y",
    }
    names, ids = set(), set()
    for c in Contestant.objects.filter(project=project):
        names.add(c.label)
        ids.add(c.pk)
    for v in ModelVersion.objects.filter(project=project):
        names.update({v.name, v.path})
        ids.add(v.pk)
    for b in BaseModel.objects.filter(project=project):
        names.update({b.name, b.path})
        ids.add(b.pk)
    ids.update(GenerationJob.objects.filter(project=project).values_list("pk", flat=True))
    ids.update(Battle.objects.filter(campaign__project=project).values_list("pk", flat=True))
    ids.update(Judgment.objects.filter(campaign__project=project).values_list("pk", flat=True))
    return words, names, {str(i) for i in ids}


def _bump_identity_ids():
    """Move identity ids far from project and campaign ids (which do appear in URLs), so a
    leaked id cannot hide behind a legitimate one."""
    with connection.cursor() as cursor:
        for table in (
            "evaluation_contestant",
            "evaluation_generationjob",
            "evaluation_battle",
            "evaluation_judgment",
            "training_modelversion",
            "training_basemodel",
        ):
            cursor.execute(f"ALTER SEQUENCE {table}_id_seq RESTART WITH 900001")  # noqa: S608


def _scan(body: bytes, content_type: str, words, names, ids, where: str):
    text = body.decode()
    lowered = text.lower()
    for word in words:
        assert word not in lowered, f"{where}: field name {word!r} reached the reviewer"
    for name in names:
        assert name.lower() not in lowered, f"{where}: {name!r} reached the reviewer"
    if "json" in content_type:
        values = list(_json_values(json.loads(text))) if text else []
    else:
        parser = _Attributes()
        parser.feed(text)
        values = parser.values
    for value in values:
        for token in re.split(r"[^0-9A-Za-z]+", value):
            assert token not in ids, f"{where}: identity id {token} in {value!r}"


def test_nothing_a_reviewer_receives_names_a_contestant(project, engineer, reviewer, client):
    _bump_identity_ids()
    campaign = build_campaign(engineer, project, prompts=8, attention_every=3, with_versions=True)[
        0
    ]
    words, names, ids = _identity(project)
    assert len(names) >= 9
    assert len(ids) >= 20
    client.force_login(reviewer)
    api = APIClient()
    api.force_authenticate(reviewer)
    seen = []

    def grab(response, where):
        assert response.status_code in (200, 204), (where, response.status_code)
        seen.append((response.content, response.get("Content-Type", ""), where))
        return response

    grab(client.get(reverse("home")), "home")
    grab(client.get(reverse("project_detail", args=[project.pk])), "project page")
    grab(client.get(reverse("evaluation:review_home", args=[project.pk])), "review list")
    url = reverse("evaluation:review", args=[project.pk, campaign.pk])
    submit = reverse("evaluation:review_submit", args=[project.pk, campaign.pk])
    page = grab(client.get(url), "review page")
    outcomes = ["a", "b", "tie", "both_bad"]
    for n in range(12):
        token = re.search(r'name="token" value="([^"]+)"', page.content.decode())
        if token is None:
            break
        page = grab(
            client.post(
                submit,
                {
                    "token": token.group(1),
                    "outcome": outcomes[n % 4],
                    "seconds": "2.5",
                    "crit-helpfulness-a": "4",
                    "crit-helpfulness-b": "2",
                },
                HTTP_HX_REQUEST="true",
            ),
            f"htmx submit {n}",
        )
    next_api = reverse("evaluation-api:api-review-next", args=[project.pk, campaign.pk])
    submit_api = reverse("evaluation-api:api-review-submit", args=[project.pk, campaign.pk])
    pair = grab(api.get(next_api), "api next")
    while pair.status_code == 200:
        pair = grab(
            api.post(submit_api, {"token": pair.json()["token"], "outcome": "a"}, format="json"),
            "api submit",
        )

    submitted = Judgment.objects.filter(reviewer=reviewer, submitted_at__isnull=False).count()
    assert (
        submitted
        == campaign.battles.filter(kind="real").count()
        + Judgment.objects.filter(reviewer=reviewer, is_attention=True).count()
    )
    for body, content_type, where in seen:
        _scan(body, content_type, words, names, ids, where)


def test_engineer_results_do_reveal_identities(client, project, campaign, engineer):
    client.force_login(engineer)

    body = client.get(reverse("evaluation:results", args=[project.pk, campaign.pk])).content

    assert b"Contender-Quokka-0" in body
    assert b'class="echart"' in body


def test_reviewer_screen_swaps_in_the_next_pair(client, project, campaign, reviewer):
    client.force_login(reviewer)
    page = client.get(reverse("evaluation:review", args=[project.pk, campaign.pk]))
    token = re.search(r'name="token" value="([^"]+)"', page.content.decode()).group(1)

    response = client.post(
        reverse("evaluation:review_submit", args=[project.pk, campaign.pk]),
        {"token": token, "outcome": "tie", "rationale": "both fine"},
        HTTP_HX_REQUEST="true",
    )

    assert b"<html" not in response.content  # a fragment, not a page
    assert b'id="pair"' in response.content
    assert token.encode() not in response.content
    judgment = Judgment.objects.get(token=token)
    assert judgment.outcome == "tie"
    assert judgment.rationale == "both fine"


def test_a_bad_outcome_is_shown_on_the_screen(client, project, campaign, reviewer):
    client.force_login(reviewer)
    page = client.get(reverse("evaluation:review", args=[project.pk, campaign.pk]))
    token = re.search(r'name="token" value="([^"]+)"', page.content.decode()).group(1)

    response = client.post(
        reverse("evaluation:review_submit", args=[project.pk, campaign.pk]),
        {"token": token, "outcome": "maybe"},
        HTTP_HX_REQUEST="true",
    )

    assert b"outcome: must be one of" in response.content
    assert Judgment.objects.get(token=token).submitted_at is None


def test_ratings_api_and_command_print_the_table(project, engineer, reviewer, capsys):
    # No attention checks here: a reviewer pressing "a" throughout would fail them and drop out.
    campaign = build_campaign(engineer, project, attention_every=0)[0]
    api = APIClient()
    api.force_authenticate(reviewer)
    next_api = reverse("evaluation-api:api-review-next", args=[project.pk, campaign.pk])
    submit_api = reverse("evaluation-api:api-review-submit", args=[project.pk, campaign.pk])
    pair = api.get(next_api)
    while pair.status_code == 200:
        pair = api.post(submit_api, {"token": pair.json()["token"], "outcome": "a"}, format="json")
    api.force_authenticate(engineer)

    data = api.get(
        reverse("evaluation-api:api-campaign-ratings", args=[project.pk, campaign.pk])
    ).json()
    call_command("campaign_ratings", str(campaign.pk))

    assert {r["label"] for r in data["ratings"]} == {f"Contender-Quokka-{i}" for i in range(3)}
    assert data["judgments"] == campaign.battles.filter(kind="real").count()
    out = capsys.readouterr().out
    assert "Contender-Quokka-0" in out
    assert "95% (sandwich)" in out


def test_the_blindness_scan_catches_an_engineer_page(client, project, engineer):
    _bump_identity_ids()
    campaign = build_campaign(engineer, project, with_versions=True)[0]
    words, names, ids = _identity(project)
    client.force_login(engineer)
    response = client.get(reverse("evaluation:results", args=[project.pk, campaign.pk]))

    with pytest.raises(AssertionError, match="reached the reviewer|identity id"):
        _scan(response.content, response["Content-Type"], words, names, ids, "results")


# --- ids that name nothing here -----------------------------------------------------------------


@pytest.fixture
def their_prompt_set(other_project, outsider):
    return services.prompt_set_create(
        actor=outsider, project=other_project, name="their prompts", rows=prompt_rows(3)
    )


def _not_here(their_prompt_set, which):
    return their_prompt_set.pk if which == "foreign" else their_prompt_set.pk + 10_000


@pytest.mark.parametrize("which", ["missing", "foreign"])
def test_a_campaign_on_a_prompt_set_not_in_this_project_is_404(
    client, project, campaign, engineer, their_prompt_set, which
):
    client.force_login(engineer)

    response = client.post(
        reverse("evaluation:overview", args=[project.pk]),
        {
            "action": "campaign",
            "name": "round 2",
            "prompt_set": _not_here(their_prompt_set, which),
            "contestants": [c.pk for c in campaign.contestants.all()],
        },
    )

    assert response.status_code == 404
    assert list(Campaign.objects.values_list("pk", flat=True)) == [campaign.pk]


API_WITH_PROMPT_SET = [
    ("evaluation-api:api-campaigns", lambda c: {"name": "round 2", "contestants": c}),
    ("evaluation-api:api-generation-jobs", lambda c: {"contestant": c[0]}),
    ("evaluation-api:api-metric-runs", lambda c: {"contestant": c[0]}),
    ("evaluation-api:api-generations", lambda c: {"outputs": ["an answer"]}),
]


@pytest.mark.parametrize("which", ["missing", "foreign"])
@pytest.mark.parametrize(("name", "body"), API_WITH_PROMPT_SET)
def test_the_api_answers_404_for_a_prompt_set_not_in_this_project(
    project, campaign, engineer, their_prompt_set, which, name, body
):
    contestants = sorted(campaign.contestants.values_list("pk", flat=True))
    args = [project.pk, contestants[0]] if name.endswith("generations") else [project.pk]
    api = APIClient()
    api.force_authenticate(engineer)
    before = (Campaign.objects.count(), GenerationJob.objects.count(), MetricRun.objects.count())

    response = api.post(
        reverse(name, args=args),
        {**body(contestants), "prompt_set": _not_here(their_prompt_set, which)},
        format="json",
    )

    assert response.status_code == 404
    after = (Campaign.objects.count(), GenerationJob.objects.count(), MetricRun.objects.count())
    assert after == before


def test_excluding_a_reviewer_named_by_something_not_an_id_is_refused_not_an_error(
    client, project, campaign, engineer
):
    client.force_login(engineer)

    response = client.post(
        reverse("evaluation:campaign_action", args=[project.pk, campaign.pk]),
        {"action": "exclude", "reviewer": "someone"},
        follow=True,
    )

    assert response.status_code == 200
    assert "This reviewer has not judged in this campaign." in response.content.decode()
    assert not CampaignRater.objects.filter(campaign=campaign, excluded=True).exists()
