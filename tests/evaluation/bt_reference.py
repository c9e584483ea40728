"""The hand-written batched Newton fit that evaluation.ratings used before it moved to scipy's
L-BFGS, kept only as a reference: tests check the library fit against it and tests/bench times
the two side by side."""

import numpy as np

from evaluation import ratings as R


def newton(
    k: int,
    pi: np.ndarray,
    pj: np.ndarray,
    wins: np.ndarray,
    n: np.ndarray,
    ridge: float = R.RIDGE,
    max_iter: int = 100,
    tol: float = 1e-10,
) -> np.ndarray:
    """Batched Newton for R independent fits. wins, n: R × pairs. Returns θ: R × k.

    Each step solves (H + λI + J·c/k) δ = ∇: the J term fixes the free shift of θ (the
    likelihood cannot see it), so the system stays well conditioned without a reference
    contestant, and the gradient sums to zero so the step keeps θ centred.
    """
    r = wins.shape[0]
    theta = np.zeros((r, k))
    rows = np.arange(k)
    ones = np.full((k, k), 1.0 / k)
    for _ in range(max_iter):
        d = theta[:, pi] - theta[:, pj]
        prob = 1.0 / (1.0 + np.exp(-d))
        resid = wins - n * prob
        grad = np.zeros((r, k))
        np.add.at(grad.T, pi, resid.T)
        np.add.at(grad.T, pj, -resid.T)
        grad -= ridge * theta
        w = n * prob * (1.0 - prob)
        hess = np.zeros((r, k, k))
        hess[:, pi, pj] = -w
        hess[:, pj, pi] = -w
        hess[:, rows, rows] = -hess.sum(axis=2)
        scale = np.maximum(hess[:, rows, rows].mean(axis=1), 1.0)
        hess[:, rows, rows] += ridge
        hess += scale[:, None, None] * ones
        step = np.linalg.solve(hess, grad[..., None])[..., 0]
        # Damp huge first steps (a contestant that never lost), which Newton overshoots.
        biggest = np.abs(step).max(axis=1, keepdims=True)
        step *= np.minimum(1.0, 5.0 / np.maximum(biggest, 1e-300))
        theta += step
        theta -= theta.mean(axis=1, keepdims=True)
        if biggest.max() < tol:
            break
    return theta


def reference_ratings(g: R.GroupedCounts, ridge: float = R.RIDGE) -> np.ndarray:
    """The ratings the Newton fit gives for g (the old fit_bradley_terry(g).rating)."""
    p = R._pairs(g)
    wins, n = R._pair_sums(g, p, g.count[None, :])
    return R.MEAN + R.THETA_TO_RATING * newton(g.k, p.i, p.j, wins, n, ridge=ridge)[0]


def reference_bootstrap(
    g: R.GroupedCounts, *, rounds: int = 1000, seed: int = 0, level: float = 0.95, chunk: int = 250
) -> R.BootstrapIntervals:
    """The old bootstrap_ratings: the same multinomial draws, each chunk fitted by Newton."""
    total = int(g.count.sum())
    rng = np.random.default_rng(seed)
    p = R._pairs(g)
    probs = g.count / total
    ratings = np.empty((rounds, g.k))
    for start in range(0, rounds, chunk):
        size = min(chunk, rounds - start)
        counts = rng.multinomial(total, probs, size=size).astype(np.float64)
        wins, n = R._pair_sums(g, p, counts)
        ratings[start : start + size] = R.MEAN + R.THETA_TO_RATING * newton(g.k, p.i, p.j, wins, n)
    tail = (1 - level) / 2 * 100
    lo, med, hi = np.percentile(ratings, [tail, 50, 100 - tail], axis=0)
    return R.BootstrapIntervals(lo, hi, med, rounds)
