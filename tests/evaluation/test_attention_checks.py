import re

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from evaluation import services
from evaluation.models import Battle, Generation, Judgment
from evaluation.services.campaigns import attention_slot
from tests.evaluation.factories import build_campaign

pytestmark = pytest.mark.django_db


def _intact(j):
    return "a" if j.left_is_x else "b"


def _off_topic(j):
    return "b" if j.left_is_x else "a"


def _serve_all(campaign, reviewer, outcome_for=_intact):
    """Judge everything in order; returns, per item served, whether it was a check."""
    served = []
    while (j := services.judgment_next(campaign=campaign, reviewer=reviewer)) is not None:
        served.append(j.is_attention)
        services.judgment_submit(
            campaign=campaign,
            reviewer=reviewer,
            token=j.token,
            outcome=outcome_for(j) if j.is_attention else "a",
        )
    return served


def _reals_before_each_check(served):
    reals, out = 0, []
    for is_check in served:
        if is_check:
            out.append(reals)
        else:
            reals += 1
    return out


def test_one_check_per_block_at_the_reviewers_own_slot(project, engineer, member_of):
    every = 4
    campaign, _ = build_campaign(
        engineer, project, prompts=40, contestants=2, raters_per_pair=2, attention_every=every
    )
    first, second = member_of("reviewer", "first"), member_of("reviewer", "second")

    slots = {}
    for reviewer in (first, second):
        served = _serve_all(campaign, reviewer)
        assert served.count(False) == 40
        reals_before = _reals_before_each_check(served)
        # Block k is real judgments 4k+1..4k+4: exactly one check in each, never two in a row.
        assert len(reals_before) == 40 // every
        for k, reals in enumerate(reals_before):
            assert k * every <= reals < (k + 1) * every, (k, reals_before)
        assert not any(a and b for a, b in zip(served, served[1:], strict=False))
        slots[reviewer.pk] = [reals - k * every for k, reals in enumerate(reals_before)]
        assert slots[reviewer.pk] == [
            attention_slot(campaign_id=campaign.pk, reviewer_id=reviewer.pk, block=k, every=every)
            for k in range(10)
        ]

    # Random positions within the blocks, not a fixed beat; each reviewer has their own.
    assert len(set(slots[first.pk])) > 1
    assert slots[first.pk] != slots[second.pk]


def test_the_judged_counter_moves_after_every_real_judgment(project, engineer, reviewer):
    campaign, _ = build_campaign(engineer, project, prompts=12, contestants=2, attention_every=3)

    seen = []
    while (j := services.judgment_next(campaign=campaign, reviewer=reviewer)) is not None:
        before = services.campaigns.selectors.review_progress(campaign=campaign, reviewer=reviewer)
        seen.append((j.is_attention, before.done))
        services.judgment_submit(
            campaign=campaign,
            reviewer=reviewer,
            token=j.token,
            outcome=_intact(j) if j.is_attention else "tie",
        )

    # The counter is the same across at most one check: it never stands still for two.
    counters = [done for _, done in seen]
    assert all(counters.count(n) <= 2 for n in set(counters))
    assert max(counters) == 11


def test_attention_slot_is_reproducible_and_within_the_block():
    slots = [attention_slot(campaign_id=7, reviewer_id=3, block=b, every=5) for b in range(50)]

    assert slots == [
        attention_slot(campaign_id=7, reviewer_id=3, block=b, every=5) for b in range(50)
    ]
    assert set(slots) == {0, 1, 2, 3, 4}
    assert slots != [
        attention_slot(campaign_id=7, reviewer_id=4, block=b, every=5) for b in range(50)
    ]


def test_checks_pair_a_real_answer_with_a_real_answer_to_another_prompt(project, engineer):
    campaign, made = build_campaign(engineer, project, prompts=12, contestants=3, attention_every=3)
    answers: dict[int, set[str]] = {}
    for prompt_id, output in Generation.objects.filter(job__contestant__in=made).values_list(
        "prompt_id", "output"
    ):
        answers.setdefault(prompt_id, set()).add(output)

    checks = list(campaign.battles.filter(kind=Battle.Kind.ATTENTION))

    assert len(checks) == max(5, 36 // 3)  # enough for a reviewer who judges every battle
    for check in checks:
        assert check.text_x in answers[check.prompt_id]
        assert check.text_y not in answers[check.prompt_id]
        assert any(
            check.text_y in texts for pid, texts in answers.items() if pid != check.prompt_id
        )
        assert "lorem" not in (check.text_x + check.text_y).lower()
    assert len({c.text_y for c in checks}) > 1  # no shared bad answer to learn


def _pair_page(client, project, campaign, **post):
    if post:
        url = reverse("evaluation:review_submit", args=[project.pk, campaign.pk])
        return client.post(url, post, HTTP_HX_REQUEST="true").content.decode()
    return client.get(reverse("evaluation:review", args=[project.pk, campaign.pk])).content.decode()


def _token(html):
    return re.search(r'name="token" value="([^"]+)"', html).group(1)


def test_a_reviewer_who_misses_a_check_is_told_on_the_next_page(
    client, project, engineer, reviewer
):
    # Every block is one judgment long, so the first pair is a check.
    campaign, _ = build_campaign(engineer, project, prompts=6, contestants=2, attention_every=1)
    client.force_login(reviewer)
    page = _pair_page(client, project, campaign)
    assert 'data-testid="attention-notice"' not in page
    check = Judgment.objects.get(token=_token(page))
    assert check.is_attention

    page = _pair_page(client, project, campaign, token=check.token, outcome=_off_topic(check))

    notice = re.search(r'data-testid="attention-notice">([^<]*)<', page).group(1)
    assert "The last pair was an attention check" in notice
    assert "missed 1 of 1 attention checks" in notice  # one miss in one: flagged
    real = Judgment.objects.get(token=_token(page))
    assert not real.is_attention  # a check never follows a check

    page = _pair_page(client, project, campaign, token=real.token, outcome="a")

    notice = re.search(r'data-testid="attention-notice">([^<]*)<', page).group(1)
    assert "The last pair" not in notice  # told once, on the page after the miss
    assert "set aside from its results" in notice  # while flagged, every page says so


def test_a_reviewer_who_passes_checks_sees_no_notice(client, project, engineer, reviewer):
    campaign, _ = build_campaign(engineer, project, prompts=6, contestants=2, attention_every=1)
    client.force_login(reviewer)
    page = _pair_page(client, project, campaign)
    check = Judgment.objects.get(token=_token(page))

    page = _pair_page(client, project, campaign, token=check.token, outcome=_intact(check))

    assert 'data-testid="attention-notice"' not in page
    check.refresh_from_db()
    assert check.attention_passed is True


def test_the_api_pair_carries_the_notice(project, engineer, reviewer):
    campaign, _ = build_campaign(engineer, project, prompts=6, contestants=2, attention_every=1)
    api = APIClient()
    api.force_authenticate(reviewer)
    next_url = reverse("evaluation-api:api-review-next", args=[project.pk, campaign.pk])
    submit_url = reverse("evaluation-api:api-review-submit", args=[project.pk, campaign.pk])
    pair = api.get(next_url).json()
    assert pair["notice"] == ""
    check = Judgment.objects.get(token=pair["token"])

    after = api.post(
        submit_url, {"token": check.token, "outcome": _off_topic(check)}, format="json"
    )

    assert after.status_code == 200
    assert after.json()["notice"].startswith("The last pair was an attention check")
