"""The Bradley–Terry fit: scipy's L-BFGS (what evaluation.ratings uses) against the hand-written
Newton it replaced and against the choix package, on a realistic campaign of 20 contestants and
20k judgments (10% ties): one fit, then the 1000-round bootstrap the results page offers.

choix is not a dependency (it lost: seconds per fit, and it takes no per-judgment weights, which
adaptive pair selection needs); its figures print only where it is installed."""

import time

import numpy as np
import pytest

from evaluation import ratings as R
from tests.evaluation.bt_reference import newton, reference_bootstrap

CONTESTANTS = 20
JUDGMENTS = 20_000
ROUNDS = 1000


def _campaign() -> R.GroupedCounts:
    rng = np.random.default_rng(8)
    strength = np.linspace(-1.2, 1.2, CONTESTANTS)
    a = rng.integers(0, CONTESTANTS, JUDGMENTS)
    b = (a + rng.integers(1, CONTESTANTS, JUDGMENTS)) % CONTESTANTS
    wins = rng.random(JUDGMENTS) < 1 / (1 + np.exp(-(strength[a] - strength[b])))
    outcome = np.where(rng.random(JUDGMENTS) < 0.1, 2, np.where(wins, 0, 1))
    cells, counts = np.unique(np.stack([a, b, outcome]), axis=1, return_counts=True)
    names = ("a", "b", "tie")
    rows = [
        (int(i), int(j), names[o], int(c)) for (i, j, o), c in zip(cells.T, counts, strict=True)
    ]
    return R.grouped_counts(rows, k=CONTESTANTS)


def _best_of(runs, fn):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def test_bt_lbfgs_against_the_newton_it_replaced(report):
    g = _campaign()
    p = R._pairs(g)
    wins, n = R._pair_sums(g, p, g.count[None, :])

    newton_s, newton_theta = _best_of(5, lambda: newton(g.k, p.i, p.j, wins, n))
    lbfgs_s, lbfgs_theta = _best_of(5, lambda: R._fit_theta(g.k, p.i, p.j, wins, n))
    boot_newton_s, old = _best_of(3, lambda: reference_bootstrap(g, rounds=ROUNDS, seed=1))
    boot_lbfgs_s, new = _best_of(3, lambda: R.bootstrap_ratings(g, rounds=ROUNDS, seed=1))

    report("bt_fit_newton_20x20k_ms", newton_s * 1e3, "ms")
    report("bt_fit_lbfgs_20x20k_ms", lbfgs_s * 1e3, "ms")
    report("bt_bootstrap_newton_1000_rounds_20x20k_s", boot_newton_s, "s")
    report("bt_bootstrap_lbfgs_1000_rounds_20x20k_s", boot_lbfgs_s, "s")
    np.testing.assert_allclose(
        lbfgs_theta * R.THETA_TO_RATING, newton_theta * R.THETA_TO_RATING, atol=1e-4
    )
    np.testing.assert_allclose(new.lower, old.lower, atol=1e-3)
    np.testing.assert_allclose(new.upper, old.upper, atol=1e-3)
    assert boot_lbfgs_s < 2


def _choix_pairs(g: R.GroupedCounts, counts: np.ndarray) -> np.ndarray:
    """(winner, loser) rows for choix, which knows no ties: every judgment appears twice, a tie
    as one win each way. Doubling the likelihood leaves its optimum where it was."""
    decisive = g.score != 0.5
    winner = np.where(g.score == 1.0, g.a, g.b)
    loser = np.where(g.score == 1.0, g.b, g.a)
    twice = np.where(decisive, 2 * counts, counts).astype(np.int64)
    one_way = np.stack([np.repeat(winner, twice), np.repeat(loser, twice)], axis=1)
    tie = ~decisive
    # A tie's first copy above went to B (score is not 1); this is A's.
    back = np.stack([np.repeat(g.a[tie], counts[tie]), np.repeat(g.b[tie], counts[tie])], axis=1)
    return np.concatenate([one_way, back.astype(np.int64)])


def test_bt_choix_on_the_same_campaign(report):
    choix = pytest.importorskip("choix")
    g = _campaign()
    data = _choix_pairs(g, g.count.astype(np.int64))
    ours = R.fit_bradley_terry(g).rating

    # choix's penalty is alpha·‖θ‖² on the doubled likelihood: alpha = RIDGE is our ridge.
    opt_s, opt = _best_of(1, lambda: choix.opt_pairwise(g.k, data, alpha=R.RIDGE, tol=1e-10))
    ilsr_s, ilsr = _best_of(1, lambda: choix.ilsr_pairwise(g.k, data, tol=1e-10))
    rng = np.random.default_rng(1)
    sample = 5
    start = time.perf_counter()
    for _ in range(sample):
        counts = rng.multinomial(g.total, g.count / g.total)
        choix.ilsr_pairwise(g.k, _choix_pairs(g, counts), tol=1e-10)
    ilsr_round_s = (time.perf_counter() - start) / sample

    report("bt_fit_choix_opt_pairwise_20x20k_ms", opt_s * 1e3, "ms")
    report("bt_fit_choix_ilsr_pairwise_20x20k_ms", ilsr_s * 1e3, "ms")
    report("bt_bootstrap_choix_ilsr_1000_rounds_20x20k_estimated_s", ilsr_round_s * ROUNDS, "s")
    for theta in (opt, ilsr):
        rating = R.MEAN + R.THETA_TO_RATING * (theta - theta.mean())
        np.testing.assert_allclose(rating, ours, atol=1e-2)
