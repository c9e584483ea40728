import base64

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from annotation.models import Snapshot, SnapshotMember
from core.models import AuditEvent, Role
from evaluation import services
from evaluation.models import (
    Campaign,
    CampaignRater,
    GenerationJob,
    PromptSet,
    RatingsBootstrap,
)
from portal.asgi_limits import body_limit_for
from tests.evaluation.factories import build_campaign, prompt_rows, writing_snapshot

pytestmark = pytest.mark.django_db


def _api(user):
    api = APIClient()
    api.force_authenticate(user)
    return api


def _url(name, project, *args):
    return reverse(f"evaluation-api:{name}", args=[project.pk, *args])


@pytest.fixture
def campaign(project, engineer):
    return build_campaign(engineer, project, prompts=3, contestants=2)[0]


def _judge_all(campaign, reviewer, outcome="a"):
    while (j := services.judgment_next(campaign=campaign, reviewer=reviewer)) is not None:
        services.judgment_submit(
            campaign=campaign, reviewer=reviewer, token=j.token, outcome=outcome
        )


# --- finding things again ----------------------------------------------------------------------


def test_a_script_that_lost_its_ids_finds_them_again_by_listing(project, engineer, campaign):
    api = _api(engineer)
    first, second = campaign.contestants.order_by("pk")

    prompt_sets = api.get(_url("api-prompt-sets", project), {"name": campaign.prompt_set.name})
    contestants = api.get(_url("api-contestants", project), {"label": second.label})
    campaigns = api.get(
        _url("api-campaigns", project),
        {"name": campaign.name, "status": "open", "contestant": first.pk},
    )

    assert [p["id"] for p in prompt_sets.json()["results"]] == [campaign.prompt_set.pk]
    assert [c["id"] for c in contestants.json()["results"]] == [second.pk]
    found = campaigns.json()["results"]
    assert [c["id"] for c in found] == [campaign.pk]
    assert found[0]["prompt_set"] == campaign.prompt_set.pk
    assert [c["id"] for c in found[0]["contestants"]] == [first.pk, second.pk]
    assert found[0]["status"] == "open"


def test_filters_narrow_the_lists_to_what_they_name(project, engineer, campaign):
    api = _api(engineer)
    services.prompt_set_create(
        actor=engineer, project=project, name="red", rows=prompt_rows(1), adversarial=True
    )

    red = api.get(_url("api-prompt-sets", project), {"adversarial": "true"}).json()["results"]
    plain = api.get(_url("api-prompt-sets", project), {"adversarial": "false"}).json()["results"]
    closed = api.get(_url("api-campaigns", project), {"status": "closed"}).json()["results"]
    other_set = api.get(_url("api-campaigns", project), {"prompt_set": red[0]["id"]}).json()

    assert [p["name"] for p in red] == ["red"]
    assert [p["id"] for p in plain] == [campaign.prompt_set.pk]
    assert closed == []
    assert other_set["results"] == []


def test_lists_page_by_cursor_newest_first(project, engineer):
    api = _api(engineer)
    made = [
        services.prompt_set_create(
            actor=engineer, project=project, name=f"set {n}", rows=prompt_rows(1)
        ).pk
        for n in range(3)
    ]

    first = api.get(_url("api-prompt-sets", project), {"limit": 2}).json()
    second = api.get(first["next"]).json()

    assert [p["id"] for p in first["results"]] == made[::-1][:2]
    assert [p["id"] for p in second["results"]] == made[:1]
    assert first["previous"] is None
    assert second["next"] is None


def test_generation_jobs_page_by_cursor_newest_first(project, engineer, campaign):
    api = _api(engineer)
    made = list(
        GenerationJob.objects.filter(project=project).order_by("-pk").values_list("pk", flat=True)
    )
    assert len(made) >= 2

    seen, page = [], api.get(_url("api-generation-jobs", project), {"limit": 1}).json()
    while True:
        assert page["count"] == len(made)
        seen += [job["id"] for job in page["results"]]
        if not page["next"]:
            break
        assert "cursor=" in page["next"]
        assert "offset=" not in page["next"]
        page = api.get(page["next"]).json()

    assert seen == made


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"cursor": "not a cursor"}, "cursor"),
        ({"cursor": base64.b64encode(b"p=abc").decode()}, "cursor"),
        ({"cursor": base64.b64encode(b"p=" + b"9" * 30).decode()}, "cursor"),
        ({"contestant": "abc"}, "contestant"),
        ({"prompt_set": "9" * 30}, "prompt_set"),
        ({"status": "paused"}, "status"),
        ({"contestants": "1"}, "contestants"),
    ],
)
def test_a_malformed_filter_or_cursor_is_a_400_naming_it(project, engineer, params, field):
    response = _api(engineer).get(_url("api-campaigns", project), params)

    assert response.status_code == 400
    assert list(response.json()) == [field]


def test_details_answer_for_this_projects_objects_and_404_for_another_projects(
    project, other_project, engineer, campaign
):
    api = _api(engineer)
    foreign, _ = build_campaign(other_project.created_by, other_project, prompts=2, contestants=2)
    contestant = campaign.contestants.first()
    bootstrap = services.ratings_bootstrap_start(actor=engineer, campaign=campaign)

    mine = {
        "api-campaign": (campaign.pk,),
        "api-prompt-set": (campaign.prompt_set.pk,),
        "api-contestant": (contestant.pk,),
        "api-campaign-bootstrap": (campaign.pk, bootstrap.pk),
    }
    theirs = {
        "api-campaign": (foreign.pk,),
        "api-prompt-set": (foreign.prompt_set.pk,),
        "api-contestant": (foreign.contestants.first().pk,),
        "api-campaign-bootstrap": (foreign.pk, bootstrap.pk),
    }

    assert {n: api.get(_url(n, project, *a)).status_code for n, a in mine.items()} == dict.fromkeys(
        mine, 200
    )
    assert {
        n: api.get(_url(n, project, *a)).status_code for n, a in theirs.items()
    } == dict.fromkeys(theirs, 404)
    assert api.get(_url("api-contestant", project, contestant.pk)).json()["label"] == (
        contestant.label
    )


# --- campaign actions ----------------------------------------------------------------------------


def test_closing_a_campaign_is_audited_and_queues_the_final_bootstrap(
    project, engineer, campaign, django_capture_on_commit_callbacks
):
    api = _api(engineer)

    with django_capture_on_commit_callbacks() as callbacks:
        response = api.post(_url("api-campaign-close", project, campaign.pk))
    again = api.post(_url("api-campaign-close", project, campaign.pk))

    assert response.status_code == 200
    assert response.json()["status"] == "closed"
    assert response.json()["closed_at"]
    assert AuditEvent.objects.filter(
        action="evaluation.campaign.close", target_id=str(campaign.pk)
    ).exists()
    assert RatingsBootstrap.objects.filter(campaign=campaign).count() == 1
    assert len(callbacks) == 1
    assert again.status_code == 400
    assert "already closed" in again.json()["detail"][0]


@pytest.mark.parametrize("role", [Role.COMPLIANCE, Role.ADMIN, Role.REVIEWER])
def test_only_engineers_act_on_campaigns_and_a_refusal_changes_nothing(
    project, campaign, member_of, role
):
    api = _api(member_of(role))
    before = AuditEvent.objects.count()

    answers = {
        api.post(_url(name, project, campaign.pk), body, format="json").status_code
        for name, body in [
            ("api-campaign-close", {}),
            ("api-campaign-bootstraps", {}),
            ("api-campaign-rater-exclude", {"reviewer": 1}),
            ("api-campaign-export-preferences", {"name": "prefs"}),
        ]
    }

    assert answers == {403}
    assert Campaign.objects.get(pk=campaign.pk).status == "open"
    assert not RatingsBootstrap.objects.exists()
    assert AuditEvent.objects.count() == before


def test_actions_on_another_projects_campaign_are_404_and_change_nothing(
    project, other_project, engineer
):
    foreign, _ = build_campaign(other_project.created_by, other_project, prompts=2, contestants=2)
    api = _api(engineer)
    before = AuditEvent.objects.count()

    answers = {
        name: api.post(_url(name, project, foreign.pk), body, format="json").status_code
        for name, body in [
            ("api-campaign-close", {}),
            ("api-campaign-bootstraps", {}),
            ("api-campaign-rater-include", {"reviewer": 1}),
            ("api-campaign-export-preferences", {"name": "prefs"}),
        ]
    }

    assert set(answers.values()) == {404}
    assert Campaign.objects.get(pk=foreign.pk).status == "open"
    assert AuditEvent.objects.count() == before


def test_a_bootstrap_is_queued_audited_and_followed(
    project, engineer, compliance, campaign, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        response = _api(engineer).post(_url("api-campaign-bootstraps", project, campaign.pk))
    body = response.json()
    followed = _api(compliance).get(
        _url("api-campaign-bootstrap", project, campaign.pk, body["id"])
    )

    assert response.status_code == 201
    assert body["status"] == "queued"
    assert body["rounds"] == 1000
    assert len(callbacks) == 1
    assert AuditEvent.objects.filter(
        action="evaluation.ratings.bootstrap", target_id=str(body["id"])
    ).exists()
    assert followed.json() == body


def test_a_rater_is_excluded_and_included_again(project, engineer, reviewer, campaign):
    _judge_all(campaign, reviewer)
    api = _api(engineer)

    out = api.post(
        _url("api-campaign-rater-exclude", project, campaign.pk),
        {"reviewer": reviewer.pk},
        format="json",
    )
    excluded = CampaignRater.objects.get(campaign=campaign, reviewer=reviewer).excluded
    back = api.post(
        _url("api-campaign-rater-include", project, campaign.pk),
        {"reviewer": reviewer.pk},
        format="json",
    )

    assert out.status_code == 200
    assert out.json()["excluded"] is True
    assert excluded is True
    assert back.json()["excluded"] is False
    assert [e.action for e in AuditEvent.objects.filter(action__startswith="evaluation.rater")] == [
        "evaluation.rater.exclude",
        "evaluation.rater.include",
    ]


@pytest.mark.parametrize(
    "body",
    [{}, {"reviewer": "abc"}, {"reviewer": "9" * 30}, {"reviewer": 999_999}, ["reviewer"]],
)
def test_excluding_a_rater_who_is_not_one_is_a_400_naming_the_reviewer(
    project, engineer, campaign, body
):
    before = AuditEvent.objects.count()

    response = _api(engineer).post(
        _url("api-campaign-rater-exclude", project, campaign.pk), body, format="json"
    )

    assert response.status_code == 400
    assert "reviewer" in response.json() or "detail" in response.json()
    assert AuditEvent.objects.count() == before


def test_judgments_are_exported_as_a_preference_snapshot(project, engineer, reviewer, campaign):
    _judge_all(campaign, reviewer, outcome="a")

    response = _api(engineer).post(
        _url("api-campaign-export-preferences", project, campaign.pk),
        {"name": "prefs from round 1"},
        format="json",
    )

    assert response.status_code == 201
    snapshot = Snapshot.objects.get(pk=response.json()["snapshot"], project=project)
    assert snapshot.name == "prefs from round 1"
    assert response.json()["member_count"] == snapshot.member_count == 3
    assert AuditEvent.objects.filter(
        action="evaluation.campaign.export_preferences", target_id=str(campaign.pk)
    ).exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "prefs", "split": "test"}, "split"),
        ({"name": "prefs"}, "detail"),  # no decisive judgments yet
    ],
)
def test_an_export_that_cannot_be_made_is_a_400_naming_why(
    project, engineer, campaign, body, field
):
    response = _api(engineer).post(
        _url("api-campaign-export-preferences", project, campaign.pk), body, format="json"
    )

    assert response.status_code == 400
    assert field in response.json()
    assert not Snapshot.objects.exists()


# --- prompt sets from snapshots ------------------------------------------------------------------


def test_a_prompt_set_is_made_from_a_snapshot_as_the_page_makes_it(
    project, other_project, engineer
):
    snapshot = writing_snapshot(
        project, engineer, rows=10, split_ratios={"train": 0.5, "validation": 0.0, "test": 0.5}
    )
    tests = SnapshotMember.objects.filter(snapshot=snapshot, split="test").count()
    foreign = Snapshot.objects.create(
        project=other_project,
        name="theirs",
        version=1,
        task_type="writing",
        seed=0,
        split_ratios={"test": 1.0},
        member_count=0,
        manifest_sha256="0" * 64,
        created_by=other_project.created_by,
        created_at=timezone.now(),
    )
    api = _api(engineer)
    url = _url("api-prompt-set-from-snapshot", project)

    made = api.post(url, {"name": "held out", "snapshot": snapshot.pk}, format="json")
    theirs = api.post(url, {"name": "theirs", "snapshot": foreign.pk}, format="json")
    too_long = api.post(url, {"name": "n" * 201, "snapshot": snapshot.pk}, format="json")

    assert made.status_code == 201
    assert made.json()["source"] == "snapshot"
    assert made.json()["prompt_count"] == tests > 0
    assert AuditEvent.objects.filter(
        action="evaluation.prompt_set.create", target_id=str(made.json()["id"])
    ).exists()
    assert theirs.status_code == 404
    assert too_long.status_code == 400
    assert list(too_long.json()) == ["name"]
    assert list(PromptSet.objects.values_list("name", flat=True)) == ["held out"]


@pytest.mark.parametrize(
    "body", [b"{not json", b"[1, 2]", b'{"name": "x", "snapshot": 1e400}', b'"text"']
)
def test_a_malformed_body_is_a_400_never_a_500(project, engineer, body):
    response = _api(engineer).post(
        _url("api-prompt-set-from-snapshot", project), body, content_type="application/json"
    )

    assert response.status_code == 400
    assert not PromptSet.objects.exists()


WRITES = [
    ("evaluation-api:api-prompt-set-from-snapshot", ()),
    ("evaluation-api:api-campaign-close", (1,)),
    ("evaluation-api:api-campaign-bootstraps", (1,)),
    ("evaluation-api:api-campaign-rater-exclude", (1,)),
    ("evaluation-api:api-campaign-rater-include", (1,)),
    ("evaluation-api:api-campaign-export-preferences", (1,)),
    ("training-api:api-base-model-registrations", ()),
]


@pytest.mark.parametrize(("name", "args"), WRITES)
def test_a_body_over_the_small_limit_is_refused_before_django(name, args):
    # The ASGI guard answers 413 past this limit (tests/portal/test_asgi_limits.py).
    path = reverse(name, args=[1, *args])

    assert body_limit_for(path) == settings.DATA_UPLOAD_MAX_MEMORY_SIZE
