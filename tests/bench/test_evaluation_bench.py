import time
from itertools import combinations

import numpy as np
import pytest
from django.db import connection

from evaluation import ratings as R
from evaluation import selectors
from evaluation.models import Battle, Campaign, Contestant, Prompt, PromptSet
from tests.portal.factories import UserFactory

CONTESTANTS = 50
JUDGMENTS = 1_000_000


def _strengths():
    return np.linspace(-1.5, 1.5, CONTESTANTS)


def _campaign(project, user):
    prompt_set = PromptSet.objects.create(
        project=project, name="bench", source="upload", prompt_count=1, created_by=user
    )
    prompt = Prompt.objects.create(prompt_set=prompt_set, position=0, text="q")
    contestants = Contestant.objects.bulk_create(
        [
            Contestant(project=project, label=f"c{i:02d}", created_by=user)
            for i in range(CONTESTANTS)
        ]
    )
    campaign = Campaign.objects.create(
        project=project, name="bench", prompt_set=prompt_set, created_by=user
    )
    campaign.contestants.set(contestants)
    battles = Battle.objects.bulk_create(
        [
            Battle(
                campaign=campaign,
                prompt=prompt,
                contestant_x=x,
                contestant_y=y,
                text_x="x",
                text_y="y",
            )
            for x, y in combinations(contestants, 2)
        ]
    )
    return campaign, contestants, battles


def _copy_judgments(campaign, contestants, battles, reviewer):
    """A million judgments with known strengths, loaded with COPY."""
    rng = np.random.default_rng(3)
    ids = np.array([c.pk for c in contestants])
    pair = rng.integers(0, len(battles), JUDGMENTS)
    bx = np.array([b.contestant_x_id for b in battles])[pair]
    by = np.array([b.contestant_y_id for b in battles])[pair]
    lookup = np.zeros(ids.max() + 1, dtype=int)
    lookup[ids] = np.arange(len(ids))
    strength = _strengths()
    p_x = 1 / (1 + np.exp(-(strength[lookup[bx]] - strength[lookup[by]])))
    x_wins = rng.random(JUDGMENTS) < p_x
    left_is_x = rng.random(JUDGMENTS) < 0.5
    tie = rng.random(JUDGMENTS) < 0.05
    outcome = np.where(tie, "tie", np.where(x_wins == left_is_x, "a", "b"))
    left = np.where(left_is_x, bx, by)
    right = np.where(left_is_x, by, bx)
    battle_ids = np.array([b.pk for b in battles])[pair]
    columns = (
        "token, campaign_id, battle_id, reviewer_id, is_attention, left_is_x, "
        "contestant_left_id, contestant_right_id, outcome, criteria, unsafe_left, unsafe_right, "
        "rationale, shown_at, submitted_at"
    )
    with connection.connection.cursor() as cursor:
        with cursor.copy(f"COPY evaluation_judgment ({columns}) FROM STDIN") as copy:
            for n in range(JUDGMENTS):
                copy.write_row(
                    (
                        f"bench{n}",
                        campaign.pk,
                        int(battle_ids[n]),
                        reviewer.pk,
                        False,
                        bool(left_is_x[n]),
                        int(left[n]),
                        int(right[n]),
                        str(outcome[n]),
                        "{}",
                        False,
                        False,
                        "",
                        "2026-01-01T00:00:00Z",
                        "2026-01-01T00:00:01Z",
                    )
                )
        cursor.execute("ANALYZE evaluation_judgment")


@pytest.mark.django_db
def test_bt_ratings_from_a_million_judgments_in_postgres(report, project):
    user = UserFactory(username="bench-engineer")
    campaign, contestants, battles = _campaign(project, user)
    _copy_judgments(campaign, contestants, battles, user)

    start = time.perf_counter()
    ids, counts, fit = selectors.campaign_fit(campaign=campaign)
    elapsed = time.perf_counter() - start

    report("bt_ratings_1m_votes_s", elapsed, "s")
    assert counts.total == JUDGMENTS
    estimated = (fit.rating - 1000) / R.THETA_TO_RATING
    truth = _strengths() - _strengths().mean()
    # Ties at 5% regardless of strength pull ratings slightly towards the mean.
    assert np.corrcoef(estimated, truth)[0, 1] > 0.999
    assert elapsed < 2


def test_bt_bootstrap_1000_rounds_on_100k_votes(report):
    rng = np.random.default_rng(5)
    strength = _strengths()
    n = 100_000
    a = rng.integers(0, CONTESTANTS, n)
    b = (a + rng.integers(1, CONTESTANTS, n)) % CONTESTANTS
    wins = rng.random(n) < 1 / (1 + np.exp(-(strength[a] - strength[b])))
    outcome = np.where(rng.random(n) < 0.05, 2, np.where(wins, 0, 1))
    cells, counts = np.unique(np.stack([a, b, outcome]), axis=1, return_counts=True)
    names = ("a", "b", "tie")
    rows = [
        (int(i), int(j), names[o], int(c)) for (i, j, o), c in zip(cells.T, counts, strict=True)
    ]
    grouped = R.grouped_counts(rows, k=CONTESTANTS)

    start = time.perf_counter()
    boot = R.bootstrap_ratings(grouped, rounds=1000, seed=1)
    elapsed = time.perf_counter() - start

    report("bt_bootstrap_1000_rounds_100k_votes_s", elapsed, "s")
    assert boot.rounds == 1000
    assert np.all(boot.lower < boot.upper)
    assert elapsed < 10
