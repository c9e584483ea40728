import math
from collections import Counter

import krippendorff
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from evaluation import ratings as R
from tests.evaluation.bt_reference import reference_bootstrap, reference_ratings


def _simulate(strengths, battles, seed, tie_share=0.0, pair_bias=None):
    rng = np.random.default_rng(seed)
    k = len(strengths)
    a = rng.integers(0, k, battles)
    b = (a + rng.integers(1, k, battles)) % k
    if pair_bias is not None:  # over-sample one pair, as adaptive selection would
        extra = battles // 3
        a[:extra], b[:extra] = pair_bias
    p = 1 / (1 + np.exp(-(strengths[a] - strengths[b])))
    outcome = np.where(rng.random(battles) < p, "a", "b").astype(object)
    outcome[rng.random(battles) < tie_share] = "tie"
    counts = Counter(zip(a.tolist(), b.tolist(), outcome.tolist(), strict=True))
    return [(i, j, o, n) for (i, j, o), n in counts.items()]


def test_two_contestants_hand_worked():
    g = R.grouped_counts([(0, 1, "a", 3), (0, 1, "b", 1)], k=2)

    fit = R.fit_bradley_terry(g)

    # P(0 beats 1) = 3/4 → rating gap 400·log10(3) = 190.85, centred on 1000.
    assert fit.rating[0] == pytest.approx(1000 + 200 * math.log10(3), abs=0.01)
    assert fit.rating[1] == pytest.approx(1000 - 200 * math.log10(3), abs=0.01)
    # Var(θ0 − θ1) = 1/(n·p·(1−p)) = 4/3; each side carries a quarter of it.
    assert fit.se[0] == pytest.approx(R.THETA_TO_RATING * math.sqrt(1 / 3), rel=1e-4)


def test_ties_and_both_bad_count_half_a_win_each():
    g = R.grouped_counts([(0, 1, "a", 2), (0, 1, "tie", 1), (1, 0, "both_bad", 1)], k=2)

    fit = R.fit_bradley_terry(g)

    # 0 scores 2 + ½ + ½ of 4 → p = 3/4
    assert fit.rating[0] - fit.rating[1] == pytest.approx(400 * math.log10(3), abs=0.01)


def test_chain_hand_worked():
    rows = [(0, 1, "a", 2), (0, 1, "b", 1), (1, 2, "a", 2), (2, 1, "a", 1)]

    fit = R.fit_bradley_terry(R.grouped_counts(rows, k=3))

    step = 400 * math.log10(2)  # each link won 2 of 3
    np.testing.assert_allclose(fit.rating, [1000 + step, 1000, 1000 - step], atol=0.01)
    assert fit.rating.mean() == pytest.approx(1000)


def test_matches_an_independent_logistic_regression():
    strengths = np.array([0.8, 0.3, 0.0, -0.2, -0.9])
    rows = _simulate(strengths, 4000, seed=3, tie_share=0.15)
    x, y, w = [], [], []
    for i, j, outcome, n in rows:
        row = np.zeros(5)
        row[i], row[j] = 1, -1
        score = R.A_SCORE[outcome]
        for label, share in ((1, score), (0, 1 - score)):
            if share:
                x.append(row)
                y.append(label)
                w.append(n * share)
    lr = LogisticRegression(C=np.inf, fit_intercept=False, tol=1e-10, max_iter=10_000)
    lr.fit(np.array(x), np.array(y), sample_weight=np.array(w))
    expected = lr.coef_[0] - lr.coef_[0].mean()

    fit = R.fit_bradley_terry(R.grouped_counts(rows, k=5))

    np.testing.assert_allclose((fit.rating - 1000) / R.THETA_TO_RATING, expected, atol=1e-4)


def test_a_contestant_that_never_lost_gets_a_finite_rating():
    fit = R.fit_bradley_terry(R.grouped_counts([(0, 1, "a", 5), (1, 2, "a", 3)], k=3))

    assert np.all(np.isfinite(fit.rating))
    assert fit.rating[0] > fit.rating[1] > fit.rating[2]


def test_bootstrap_and_sandwich_intervals_cover_true_strengths():
    strengths = np.linspace(-1.0, 1.0, 12)
    rows = _simulate(strengths, 30_000, seed=11)
    g = R.grouped_counts(rows, k=12)
    truth = 1000 + R.THETA_TO_RATING * (strengths - strengths.mean())

    boot = R.bootstrap_ratings(g, rounds=1000, seed=5)
    fit = R.fit_bradley_terry(g)

    assert boot.rounds == 1000
    boot_cover = np.mean((boot.lower <= truth) & (truth <= boot.upper))
    sandwich_cover = np.mean((fit.lower <= truth) & (truth <= fit.upper))
    assert boot_cover >= 10 / 12
    assert sandwich_cover >= 10 / 12
    # Both are honest 95% intervals of the same fit: their widths agree.
    np.testing.assert_allclose(boot.upper - boot.lower, fit.upper - fit.lower, rtol=0.2)


def test_adaptive_weights_equalise_pairs_and_keep_the_fit_unbiased():
    strengths = np.array([0.6, 0.2, -0.1, -0.7])
    rows = _simulate(strengths, 20_000, seed=2, pair_bias=(1, 2))
    g = R.grouped_counts(rows, k=4)

    weights = R.adaptive_pair_weights(g)
    fit = R.fit_bradley_terry(R.reweighted(g, weights))

    per_pair = Counter()
    for (i, j, _, n), w in zip(rows, weights, strict=True):
        per_pair[frozenset((i, j))] += n * w
    assert len(set(np.round(list(per_pair.values()), 6))) == 1
    assert sum(per_pair.values()) == pytest.approx(g.total)
    truth = 1000 + R.THETA_TO_RATING * (strengths - strengths.mean())
    assert np.all((fit.lower <= truth) & (truth <= fit.upper))


def _campaign_counts(weighted=False):
    strengths = np.array([0.9, 0.5, 0.1, 0.0, -0.3, -0.6, -1.2])
    rows = _simulate(strengths, 6000, seed=7, tie_share=0.2, pair_bias=(2, 3))
    # Half the ties become "both bad": they must score the same half a win.
    rows = [(i, j, "both_bad" if o == "tie" and n % 2 else o, n) for i, j, o, n in rows]
    g = R.grouped_counts(rows, k=7)
    return R.reweighted(g, R.adaptive_pair_weights(g)) if weighted else g


@pytest.mark.parametrize(
    ("weighted", "ridge"),
    [(False, R.RIDGE), (True, R.RIDGE), (False, 5.0), (True, 50.0)],
    ids=["plain", "adaptive-weights", "strong-prior", "weights-and-prior"],
)
def test_library_fit_matches_the_newton_reference(weighted, ridge):
    g = _campaign_counts(weighted)

    fit = R.fit_bradley_terry(g, ridge=ridge)

    np.testing.assert_allclose(fit.rating, reference_ratings(g, ridge=ridge), rtol=0, atol=1e-4)


def test_library_fit_matches_the_newton_reference_when_a_contestant_never_lost():
    # Only the whisper of ridge holds these ratings finite: the optimum is very flat.
    g = R.grouped_counts([(0, 1, "a", 5), (1, 2, "a", 3), (2, 3, "tie", 2), (3, 1, "b", 1)], k=5)

    fit = R.fit_bradley_terry(g)

    np.testing.assert_allclose(fit.rating, reference_ratings(g), rtol=0, atol=0.05)
    assert fit.rating[4] == pytest.approx(1000)  # never played: stays at the mean


def test_bootstrap_matches_the_newton_reference():
    g = _campaign_counts()

    boot = R.bootstrap_ratings(g, rounds=1000, seed=4)
    ref = reference_bootstrap(g, rounds=1000, seed=4)

    for ours, theirs in (
        (boot.lower, ref.lower),
        (boot.median, ref.median),
        (boot.upper, ref.upper),
    ):
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-3)


def test_win_rate_matrix_counts_ties_as_half():
    g = R.grouped_counts([(0, 1, "a", 3), (1, 0, "tie", 2), (0, 1, "b", 1)], k=3)

    rate, games = R.win_rate_matrix(g)

    assert rate[0, 1] == pytest.approx(4 / 6)
    assert rate[1, 0] == pytest.approx(2 / 6)
    assert games[0, 1] == 6
    assert math.isnan(rate[0, 2])


def test_position_bias_interval_contains_a_half_when_balanced():
    bias = R.position_bias(left_wins=52, right_wins=48)

    assert bias.share == pytest.approx(0.52)
    assert bias.lower < 0.5 < bias.upper
    assert R.position_bias(left_wins=80, right_wins=20).lower > 0.5


def test_repeated_pair_agreement_matches_krippendorff_package():
    groups = [["a", "a", "b"], ["b", "b"], ["tie", "a"], ["a", "a", "a"], ["b"]]
    codes = {"a": 0, "b": 1, "tie": 2}
    matrix = np.full((3, len(groups)), np.nan)
    for u, values in enumerate(groups):
        for r, v in enumerate(values):
            matrix[r, u] = codes[v]

    agreement = R.repeated_pair_agreement(groups)

    assert agreement.groups == 4
    assert agreement.pairs_of_judgments == 3 + 1 + 1 + 3
    assert agreement.percent == pytest.approx(5 / 8)
    assert agreement.alpha == pytest.approx(
        krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal")
    )


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ((0, 5, "a", 1), "out of range"),
        ((1, 1, "a", 1), "cannot battle itself"),
        ((0, 1, "win", 1), "unknown outcome"),
        ((0, 1, "a", -1), "negative count"),
    ],
)
def test_bad_rows_are_refused_with_the_row_named(row, message):
    with pytest.raises(ValueError, match=f"row 0: .*{message}"):
        R.grouped_counts([row], k=3)


def test_repeated_pair_agreement_is_perfect_when_every_repeat_chose_one_outcome():
    agreement = R.repeated_pair_agreement([["a", "a"], ["a", "a", "a"], ["b"]])

    assert agreement.groups == 2
    assert agreement.alpha == 1.0


def test_repeated_pair_agreement_without_repeats_has_no_alpha():
    agreement = R.repeated_pair_agreement([["a"], ["tie"]])

    assert agreement.groups == 0
    assert math.isnan(agreement.alpha)
    assert math.isnan(agreement.percent)
