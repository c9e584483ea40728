import re

import pytest
from django.urls import reverse

from evaluation import services
from tests.evaluation.factories import build_campaign, contestant_with_outputs, prompt_rows

pytestmark = pytest.mark.django_db

MARKDOWN = (
    "**Track it** here:\n\n- open *Orders*\n- press <b onclick=alert(1)>Track</b>\n\n"
    "<script>alert(2)</script>"
)


def _token(html: str) -> str:
    return re.search(r'name="token" value="([^"]+)"', html).group(1)


def test_progress_has_a_denominator_and_each_verdict_is_confirmed(
    client, project, engineer, reviewer
):
    # 4 prompts, 3 contestants: 4 x 3 pairs, one rater each.
    campaign = build_campaign(engineer, project, prompts=4, contestants=3)[0]
    client.force_login(reviewer)
    url = reverse("evaluation:review", args=[project.pk, campaign.pk])

    page = client.get(url).content.decode()
    response = client.post(
        reverse("evaluation:review_submit", args=[project.pk, campaign.pk]),
        {"token": _token(page), "outcome": "b"},
        HTTP_HX_REQUEST="true",
    ).content.decode()

    assert "Judged 0 of 12" in page
    assert 'data-testid="verdict-saved"' not in page
    assert "Judged 1 of 12" in response
    assert "Saved your verdict on the last pair: B is better." in response


def test_progress_denominator_is_the_quota_when_smaller(client, project, engineer, reviewer):
    campaign = build_campaign(engineer, project, prompts=4, contestants=3)[0]
    campaign.rater_quota = 5
    campaign.save(update_fields=["rater_quota"])
    client.force_login(reviewer)

    page = client.get(reverse("evaluation:review", args=[project.pk, campaign.pk])).content

    assert b"Judged 0 of 5" in page


def test_answers_render_markdown_and_no_raw_html(client, project, engineer, reviewer):
    prompt_set = services.prompt_set_create(
        actor=engineer, project=project, name="p", rows=prompt_rows(1)
    )
    made = [
        contestant_with_outputs(engineer, project, prompt_set, f"c{n}", [f"{MARKDOWN}\n\n{n}"])
        for n in range(2)
    ]
    campaign = services.campaign_create(
        actor=engineer, project=project, name="md", prompt_set=prompt_set, contestants=made
    )
    client.force_login(reviewer)

    html = client.get(reverse("evaluation:review", args=[project.pk, campaign.pk])).content.decode()

    assert "<strong>Track it</strong>" in html
    assert "<li>open <em>Orders</em></li>" in html
    assert "<script>alert(2)" not in html
    assert "onclick" not in html.replace("&lt;b onclick=alert(1)&gt;", "")
    assert "&lt;b onclick=alert(1)&gt;" in html


def test_verdict_buttons_come_right_after_the_answers(client, project, engineer, reviewer):
    campaign = build_campaign(engineer, project, prompts=2, contestants=2)[0]
    campaign.criteria = [{"key": "helpful", "label": "Helpful", "scale": 5}]
    campaign.save(update_fields=["criteria"])
    client.force_login(reviewer)

    html = client.get(reverse("evaluation:review", args=[project.pk, campaign.pk])).content.decode()

    assert html.index('data-testid="response-b"') < html.index('data-testid="verdicts"')
    assert html.index('data-testid="verdicts"') < html.index('class="card criteria"')
