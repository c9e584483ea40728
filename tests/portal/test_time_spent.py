"""One rule for time spent (core.time_spent), used alike by the annotation queue and the
blind review: the browser's measure when it fits in the time the item was out, else the
server's; the API answer says which was recorded, the dashboards state the rule and count
answers faster than reading time."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape
from rest_framework.test import APIClient

from annotation import services as annotation_services
from annotation.models import Annotation, Lease
from core.time_spent import RULE, min_reading_seconds, time_spent_decide, words_in
from evaluation import services as evaluation_services
from evaluation.models import Judgment
from tests.annotation.factories import ItemFactory, classification_setup
from tests.evaluation.factories import build_campaign

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("claimed", "server", "seconds", "source"),
    [
        (12.0, 20.0, 12.0, "client"),  # a tab hidden for a while: the browser knows
        (24.0, 20.0, 24.0, "client"),  # within 5 s of slack
        (22.0, 0.1, 0.1, "server"),  # longer than the pair was out: impossible
        (None, 20.0, 20.0, "server"),
        (-1.0, 20.0, 20.0, "server"),
        (float("nan"), 20.0, 20.0, "server"),
    ],
)
def test_the_rule_keeps_a_plausible_claim_and_otherwise_the_server_time(
    claimed, server, seconds, source
):
    spent = time_spent_decide(
        claimed=claimed, handed_out_at=T0, answered_at=T0 + timedelta(seconds=server), shown=""
    )
    assert (spent.seconds, spent.source) == (pytest.approx(seconds), source)


def test_too_fast_is_under_a_quarter_of_reading_time_at_250_wpm_with_a_1_s_floor():
    text = "word " * 500  # 2 minutes of reading; 30 s is a quarter
    assert words_in({"prompt": text, "responses": ["a b", "c"]}) == 503
    assert min_reading_seconds(500) == 30.0
    assert min_reading_seconds(3) == 1.0

    def fast(seconds):
        return time_spent_decide(
            claimed=seconds, handed_out_at=T0, answered_at=T0 + timedelta(seconds=60), shown=text
        ).too_fast

    assert (fast(29.0), fast(31.0)) == (True, False)


# --- the annotation queue ----------------------------------------------------------------


@pytest.fixture
def queue(project, member_of):
    # lease_seconds 3 puts every answer within the expiry margin: the locked path.
    def make(path):
        classification_setup(project, k=1, lease_seconds=600 if path == "fast" else 3)
        ItemFactory(project=project, dataset__project=project, payload={"text": "word " * 200})
        return member_of("annotator", f"annotator-{path}")

    return make


def _api_submit(project, annotator, seconds_spent, *, lease_age: float = 0.0):
    api = APIClient()
    api.force_authenticate(annotator)
    task = api.post(reverse("annotation-api:api-queue-next", args=[project.pk])).json()
    if lease_age:
        Lease.objects.filter(pk=task["lease"]).update(
            created_at=timezone.now() - timedelta(seconds=lease_age)
        )
    return api.post(
        reverse("annotation-api:api-queue-submit", args=[project.pk]),
        {
            "lease": task["lease"],
            "value": {"labels": ["pos"]},
            "submission_id": str(uuid.uuid4()),
            "seconds_spent": seconds_spent,
        },
        format="json",
    )


@pytest.mark.parametrize("path", ["fast", "locked"])
def test_annotation_api_replaces_an_impossible_claim_and_says_so(project, queue, path):
    annotator = queue(path)

    answer = _api_submit(project, annotator, 22.0)

    assert answer.status_code == 201, answer.content
    body = answer.json()
    stored = Annotation.objects.get(pk=body["annotation"])
    assert body["seconds_source"] == stored.seconds_source == "server"
    assert body["seconds_spent"] == stored.seconds_spent < 5
    assert body["too_fast"] is stored.too_fast is True  # 200 words need 12 s
    assert body["time_rule"] == RULE


@pytest.mark.parametrize("path", ["fast", "locked"])
def test_annotation_api_keeps_a_plausible_claim(project, queue, path):
    annotator = queue(path)

    body = _api_submit(project, annotator, 30.0, lease_age=60).json()

    assert (body["seconds_spent"], body["seconds_source"], body["too_fast"]) == (
        30.0,
        "client",
        False,
    )


def test_annotation_dashboard_states_the_rule_and_counts_fast_answers(
    client, project, queue, engineer
):
    annotator = queue("fast")
    _api_submit(project, annotator, 0.2)
    client.force_login(engineer)

    page = client.get(reverse("annotation:dashboard", args=[project.pk])).content.decode()

    assert escape(RULE) in page
    assert 'data-testid="too-fast-total">1<' in page


def test_a_plain_form_submit_follows_the_same_rule(client, project, queue):
    annotator = queue("fast")
    offer = annotation_services.item_lease_next(project=project, annotator=annotator)
    client.force_login(annotator)

    client.post(
        reverse("annotation:submit", args=[project.pk]),
        {
            "lease": offer.lease.pk,
            "submission_id": str(uuid.uuid4()),
            "seconds": "22",
            "labels": "pos",
        },
    )

    stored = Annotation.objects.get(lease=offer.lease)
    assert (stored.seconds_source, stored.too_fast) == ("server", True)


# --- the blind review ----------------------------------------------------------------------


@pytest.fixture
def campaign(project, engineer):
    return build_campaign(engineer, project, prompts=2, contestants=2)[0]


def test_review_api_replaces_an_impossible_claim_and_says_so(project, campaign, reviewer):
    api = APIClient()
    api.force_authenticate(reviewer)
    first = api.get(reverse("evaluation-api:api-review-next", args=[project.pk, campaign.pk]))
    submit = reverse("evaluation-api:api-review-submit", args=[project.pk, campaign.pk])

    answer = api.post(
        submit, {"token": first.json()["token"], "outcome": "a", "seconds_spent": 22}, "json"
    )

    judgment = Judgment.objects.get(token=first.json()["token"])
    assert judgment.seconds_source == "server"
    assert judgment.seconds_spent < 5  # today: 22, the client's word
    assert judgment.too_fast is True
    assert answer.status_code == 200
    assert answer.json()["submitted"] == {
        "seconds_spent": judgment.seconds_spent,
        "seconds_source": "server",
        "too_fast": True,
        "time_rule": RULE,
    }
    last = api.post(submit, {"token": answer.json()["token"], "outcome": "b"}, "json")
    assert last.status_code == 204  # nothing left: the headers still say what was recorded
    assert last["X-Seconds-Source"] == "server"
    assert last["X-Too-Fast"] == "true"


def test_review_keeps_a_plausible_claim(project, campaign, reviewer):
    judgment = evaluation_services.judgment_next(campaign=campaign, reviewer=reviewer)
    Judgment.objects.filter(pk=judgment.pk).update(shown_at=timezone.now() - timedelta(seconds=60))

    stored = evaluation_services.judgment_submit(
        campaign=campaign, reviewer=reviewer, token=judgment.token, outcome="a", seconds_spent=30
    )

    assert (stored.seconds_spent, stored.seconds_source, stored.too_fast) == (30, "client", False)


def test_results_state_the_rule_and_count_fast_verdicts(
    client, project, campaign, engineer, reviewer
):
    judge = evaluation_services.judgment_next
    while (j := judge(campaign=campaign, reviewer=reviewer)) is not None:
        evaluation_services.judgment_submit(
            campaign=campaign, reviewer=reviewer, token=j.token, outcome="a", seconds_spent=0.1
        )
    client.force_login(engineer)
    api = APIClient()
    api.force_authenticate(engineer)

    page = client.get(reverse("evaluation:results", args=[project.pk, campaign.pk]))
    data = api.get(
        reverse("evaluation-api:api-campaign-ratings", args=[project.pk, campaign.pk])
    ).json()

    assert escape(RULE) in page.content.decode()
    assert 'data-testid="too-fast-total">2<' in page.content.decode()
    assert data["time_spent"] == {"rule": RULE, "too_fast": 2}
    assert [r["too_fast"] for r in data["raters"]] == [2]
