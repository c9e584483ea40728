"""Bradley–Terry ratings for pairwise battles, on counts grouped by (A, B, outcome).

Pure numpy/scipy, no Django: the campaign selectors group judgments in SQL and hand the
counts here, so a million judgments reach this module as a few thousand rows.

The model: P(i beats j) = 1 / (1 + 10 ** ((r_j - r_i) / SCALE)), with ratings centred on
MEAN. A tie or a "both bad" counts as half a win for each side. Internally we fit natural-log
strengths θ (P = σ(θ_i − θ_j)) with scipy's L-BFGS and convert at the end.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, sparse, special
from scipy import stats as scipy_stats
from threadpoolctl import ThreadpoolController

from annotation.agreement import LabelTable, krippendorff_alpha

BASE = 10.0
SCALE = 400.0
MEAN = 1000.0
# Converts natural-log strengths to the Elo-like scale.
THETA_TO_RATING = SCALE / math.log(BASE)

OUTCOME_A = "a"
OUTCOME_B = "b"
OUTCOME_TIE = "tie"
OUTCOME_BOTH_BAD = "both_bad"
OUTCOMES = (OUTCOME_A, OUTCOME_B, OUTCOME_TIE, OUTCOME_BOTH_BAD)
# The share of a win that contestant A takes for each outcome.
A_SCORE = {OUTCOME_A: 1.0, OUTCOME_B: 0.0, OUTCOME_TIE: 0.5, OUTCOME_BOTH_BAD: 0.5}

# A whisper of L2 keeps a contestant that won (or lost) every battle finite; its prior
# standard deviation is ~1000 log-odds, so it moves real fits by far less than 0.01 points.
RIDGE = 1e-6
# Largest gradient component (per judgment) at which a fit stops: ratings then sit within
# 1e-4 points of the exact optimum on real campaigns (tests/evaluation/test_ratings.py).
_GTOL = 1e-9


@dataclass(frozen=True)
class GroupedCounts:
    """Judgments grouped by cell (contestant a, contestant b, outcome).

    `a`, `b` are contestant indices 0..k-1; `score` is A's share of a win for the cell's
    outcome (1, 0 or ½); `count` is how many judgments fell in the cell; `weight` is an
    optional per-judgment weight (adaptive pair reweighting), 1 when absent.
    """

    k: int
    a: np.ndarray
    b: np.ndarray
    score: np.ndarray
    count: np.ndarray
    weight: np.ndarray

    @property
    def total(self) -> int:
        return int(self.count.sum())


def grouped_counts(
    rows: Sequence[tuple[int, int, str, int]], k: int, weights: Sequence[float] | None = None
) -> GroupedCounts:
    """Build GroupedCounts from (a_index, b_index, outcome, count) rows.

    Raises ValueError naming the row when an index is out of range, a contestant meets
    itself, an outcome is unknown or a count is negative.
    """
    a = np.empty(len(rows), dtype=np.int64)
    b = np.empty(len(rows), dtype=np.int64)
    score = np.empty(len(rows), dtype=np.float64)
    count = np.empty(len(rows), dtype=np.float64)
    for n, (i, j, outcome, c) in enumerate(rows):
        if not (0 <= i < k and 0 <= j < k):
            raise ValueError(f"row {n}: contestant index out of range 0..{k - 1}: ({i}, {j})")
        if i == j:
            raise ValueError(f"row {n}: contestant {i} cannot battle itself")
        if outcome not in A_SCORE:
            raise ValueError(f"row {n}: unknown outcome {outcome!r}; expected one of {OUTCOMES}")
        if c < 0:
            raise ValueError(f"row {n}: negative count {c}")
        a[n], b[n], score[n], count[n] = i, j, A_SCORE[outcome], c
    w = np.ones(len(rows)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(rows),):
        raise ValueError(f"weights: expected {len(rows)} values, got {w.shape[0]}")
    return GroupedCounts(k=k, a=a, b=b, score=score, count=count, weight=w)


@dataclass(frozen=True)
class _Pairs:
    """Cells folded to unordered pairs (i < j): cell_pair maps each cell to its pair."""

    i: np.ndarray
    j: np.ndarray
    cell_pair: np.ndarray
    sign: np.ndarray  # +1 where the cell's A is the pair's i, else −1


def _pairs(g: GroupedCounts) -> _Pairs:
    lo = np.minimum(g.a, g.b)
    hi = np.maximum(g.a, g.b)
    keys = lo * g.k + hi
    uniq, inverse = np.unique(keys, return_inverse=True)
    return _Pairs(
        i=uniq // g.k, j=uniq % g.k, cell_pair=inverse, sign=np.where(g.a == lo, 1.0, -1.0)
    )


def _pair_sums(g: GroupedCounts, p: _Pairs, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pair (weighted wins of i, weighted judgments) for count matrix `counts` (R × cells).

    A cell where i is B contributes (1 − score) wins to i.
    """
    wc = counts * g.weight
    i_score = np.where(p.sign > 0, g.score, 1.0 - g.score)
    cells = len(g.a)
    fold = sparse.csr_matrix(
        (np.ones(cells), (p.cell_pair, np.arange(cells))), shape=(len(p.i), cells)
    )
    return (fold @ (wc * i_score).T).T, (fold @ wc.T).T


@functools.cache
def _blas_threads() -> ThreadpoolController:
    # Built once: finding the loaded BLAS libraries takes milliseconds, a limit microseconds.
    return ThreadpoolController()


def _fit_theta(
    k: int,
    pi: np.ndarray,
    pj: np.ndarray,
    wins: np.ndarray,
    n: np.ndarray,
    *,
    ridge: float = RIDGE,
    start: np.ndarray | None = None,
) -> np.ndarray:
    """MAP log-strengths for R independent fits at once. wins, n: R × pairs. Returns θ: R × k.

    The R objectives are stacked into one scipy L-BFGS run: they share no parameter, so the
    minimum of their sum is each fit's own minimum, and one call is about four times faster
    than R calls for a 1000-round bootstrap. Each fit's objective is divided by its total
    weight so the gradient tolerance means the same at any campaign size. The likelihood
    cannot see a common shift of θ; the ridge pins it at mean 0.
    """
    r = wins.shape[0]
    total = np.maximum(n.sum(axis=1, keepdims=True), 1e-300)
    flat_i = (np.arange(r)[:, None] * k + pi).ravel()
    flat_j = (np.arange(r)[:, None] * k + pj).ravel()

    def objective(flat: np.ndarray) -> tuple[float, np.ndarray]:
        theta = flat.reshape(r, k)
        d = theta[:, pi] - theta[:, pj]
        # −log L per pair: n·log(1 + e^d) − wins·d, i.e. wins·(−log σ(d)) + losses·(−log σ(−d)).
        nll = (n * np.logaddexp(0.0, d) - wins * d).sum(axis=1)
        penalty = 0.5 * ridge * (theta**2).sum(axis=1)
        resid = ((n * special.expit(d) - wins) / total).ravel()
        grad = np.bincount(flat_i, resid, r * k) - np.bincount(flat_j, resid, r * k)
        grad += (ridge * theta / total).ravel()
        return float(((nll + penalty) / total[:, 0]).sum()), grad

    x0 = np.zeros((r, k)) if start is None else np.broadcast_to(start, (r, k))
    # L-BFGS calls BLAS on vectors far too short to gain from threads; on a busy machine the
    # waits for OpenBLAS's threads made a bootstrap several times slower (tests/bench).
    with _blas_threads().limit(limits=1, user_api="blas"):
        result = optimize.minimize(
            objective,
            x0.ravel(),
            jac=True,
            method="L-BFGS-B",
            options={"gtol": _GTOL, "ftol": 0.0, "maxiter": 10_000},
        )
    theta = result.x.reshape(r, k)
    return theta - theta.mean(axis=1, keepdims=True)


def _to_rating(theta: np.ndarray) -> np.ndarray:
    return MEAN + THETA_TO_RATING * theta


@dataclass(frozen=True)
class Ratings:
    """Fitted ratings with robust (sandwich) standard errors and 95% intervals."""

    rating: np.ndarray
    se: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    judgments: np.ndarray  # per contestant, unweighted
    covariance: np.ndarray  # on the rating scale


def fit_bradley_terry(g: GroupedCounts, *, ridge: float = RIDGE) -> Ratings:
    """Maximum-likelihood ratings with sandwich-covariance 95% intervals.

    Sandwich: A⁻ B A⁻ where A is the (weighted) Fisher information and B sums each judgment's
    squared score contribution, so ties (which carry less information than a win) and
    reweighting both show in the width; A⁻ is the pseudo-inverse on the centred subspace.
    """
    k = g.k
    per_contestant = np.zeros(k)
    np.add.at(per_contestant, g.a, g.count)
    np.add.at(per_contestant, g.b, g.count)
    if len(g.a) == 0 or g.count.sum() == 0:
        nan = np.full(k, np.nan)
        return Ratings(np.full(k, MEAN), nan, nan, nan, per_contestant, np.full((k, k), np.nan))
    p = _pairs(g)
    wins, n = _pair_sums(g, p, g.count[None, :])
    theta = _fit_theta(k, p.i, p.j, wins, n, ridge=ridge)[0]

    d = theta[g.a] - theta[g.b]
    prob = 1.0 / (1.0 + np.exp(-d))
    x = np.zeros((len(g.a), k))
    x[np.arange(len(g.a)), g.a] = 1.0
    x[np.arange(len(g.a)), g.b] = -1.0
    info = (x * (g.count * g.weight * prob * (1 - prob))[:, None]).T @ x
    meat = (x * (g.count * (g.weight * (g.score - prob)) ** 2)[:, None]).T @ x
    centre = np.full((k, k), 1.0 / k)
    info_pinv = np.linalg.inv(info + ridge * np.eye(k) + centre) - centre
    cov = info_pinv @ meat @ info_pinv * THETA_TO_RATING**2
    se = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    rating = _to_rating(theta)
    z = scipy_stats.norm.ppf(0.975)
    return Ratings(rating, se, rating - z * se, rating + z * se, per_contestant, cov)


@dataclass(frozen=True)
class BootstrapIntervals:
    lower: np.ndarray
    upper: np.ndarray
    median: np.ndarray
    rounds: int


def bootstrap_ratings(
    g: GroupedCounts, *, rounds: int = 1000, seed: int = 0, level: float = 0.95, chunk: int = 250
) -> BootstrapIntervals:
    """Percentile intervals from resampling the judgments: each round draws N judgments
    multinomially over the grouped cells (the same as resampling rows, without the rows),
    and all rounds of a chunk are fitted together, starting from the full-data fit."""
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    total = int(g.count.sum())
    if total == 0:
        nan = np.full(g.k, np.nan)
        return BootstrapIntervals(nan, nan, nan, rounds)
    rng = np.random.default_rng(seed)
    p = _pairs(g)
    probs = g.count / total
    full_wins, full_n = _pair_sums(g, p, g.count[None, :])
    # Every round's optimum lies near the full data's, so starting there saves iterations.
    start_theta = _fit_theta(g.k, p.i, p.j, full_wins, full_n)
    ratings = np.empty((rounds, g.k))
    for start in range(0, rounds, chunk):
        size = min(chunk, rounds - start)
        counts = rng.multinomial(total, probs, size=size).astype(np.float64)
        wins, n = _pair_sums(g, p, counts)
        theta = _fit_theta(g.k, p.i, p.j, wins, n, start=start_theta)
        ratings[start : start + size] = _to_rating(theta)
    tail = (1 - level) / 2 * 100
    lo, med, hi = np.percentile(ratings, [tail, 50, 100 - tail], axis=0)
    return BootstrapIntervals(lo, hi, med, rounds)


def adaptive_pair_weights(g: GroupedCounts) -> np.ndarray:
    """Per-cell weights that give every observed pair the same total weight.

    Adaptive selection shows uncertain pairs more often, so raw counts over-represent close
    matches; weighting each pair back to an equal share (keeping the total at N) fits the
    ratings as if pairs had been drawn uniformly, which is what the all-pairs design does.
    """
    p = _pairs(g)
    per_pair = np.bincount(p.cell_pair, weights=g.count, minlength=len(p.i))
    observed = per_pair > 0
    target = g.count.sum() / max(int(observed.sum()), 1)
    w = np.where(per_pair > 0, target / np.maximum(per_pair, 1e-300), 0.0)
    return w[p.cell_pair]


def reweighted(g: GroupedCounts, weights: np.ndarray) -> GroupedCounts:
    return GroupedCounts(k=g.k, a=g.a, b=g.b, score=g.score, count=g.count, weight=weights)


def win_probability(rating_i: float, rating_j: float) -> float:
    return 1.0 / (1.0 + BASE ** ((rating_j - rating_i) / SCALE))


def win_rate_matrix(g: GroupedCounts) -> tuple[np.ndarray, np.ndarray]:
    """Observed (wins + ½ ties) / battles of row over column, and the battle counts.

    Cells with no battles are NaN.
    """
    k = g.k
    wins = np.zeros((k, k))
    games = np.zeros((k, k))
    np.add.at(wins, (g.a, g.b), g.count * g.score)
    np.add.at(wins, (g.b, g.a), g.count * (1 - g.score))
    np.add.at(games, (g.a, g.b), g.count)
    np.add.at(games, (g.b, g.a), g.count)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(games > 0, wins / games, np.nan)
    return rate, games


@dataclass(frozen=True)
class Proportion:
    """A share with its Wilson 95% interval; share is NaN when nothing was counted."""

    successes: int
    trials: int
    share: float
    lower: float
    upper: float


def proportion(successes: int, trials: int, level: float = 0.95) -> Proportion:
    if trials <= 0:
        return Proportion(0, 0, math.nan, math.nan, math.nan)
    ci = scipy_stats.binomtest(int(successes), int(trials)).proportion_ci(
        confidence_level=level, method="wilson"
    )
    return Proportion(int(successes), int(trials), successes / trials, ci.low, ci.high)


def position_bias(left_wins: int, right_wins: int) -> Proportion:
    """Share of decisive judgments won by the response shown on the left (A); ½ is no bias."""
    return proportion(left_wins, left_wins + right_wins)


@dataclass(frozen=True)
class Agreement:
    groups: int  # repeated pairs judged at least twice
    pairs_of_judgments: int
    percent: float  # share of judgment pairs on the same outcome
    alpha: float  # Krippendorff's alpha (nominal) over the repeated pairs


def repeated_pair_agreement(groups: Sequence[Sequence[str]]) -> Agreement:
    """Agreement among judgments of the same battle (same prompt, same two contestants),
    with outcomes already mapped to a fixed orientation (not the side shown)."""
    kept = [list(g) for g in groups if len(g) >= 2]
    agree = total = 0
    for outcomes in kept:
        for x in range(len(outcomes)):
            for y in range(x + 1, len(outcomes)):
                total += 1
                agree += outcomes[x] == outcomes[y]
    alpha = _krippendorff_nominal(kept)
    return Agreement(len(kept), total, agree / total if total else math.nan, alpha)


def _krippendorff_nominal(units: list[list[str]]) -> float:
    """Nominal alpha by annotation's implementation; every unit holds at least two values.

    Units whose judgments all chose one outcome keep the convention of 1.0 (perfect
    agreement) where annotation says undefined (0/0); no units at all is NaN."""
    if not units:
        return math.nan
    codes: dict[str, int] = {}
    item = [u for u, values in enumerate(units) for _ in values]
    # Repeated judgments of one battle need not share raters: position in the unit stands in.
    rater = [r for values in units for r in range(len(values))]
    value = [codes.setdefault(v, len(codes)) for values in units for v in values]
    table = LabelTable(item=np.array(item), annotator=np.array(rater), value=np.array(value))
    alpha = krippendorff_alpha(table, "nominal")
    return 1.0 if alpha is None else alpha
