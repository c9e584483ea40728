"""Offline metrics, fairness slices and paired-bootstrap significance. Pure Python, no Django.

Text metrics come from the packages the field compares against (sacrebleu for BLEU and chrF,
rouge-score for ROUGE, scikit-learn for classification), so our numbers match theirs.
Exact match and token F1 follow the SQuAD normalisation (lower case, no punctuation, no
articles, single spaces).
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU, CHRF
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    text = text.lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(reference))


def token_f1(prediction: str, reference: str) -> float:
    pred = normalize_answer(prediction).split()
    ref = normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def _check_lengths(predictions: Sequence, references: Sequence) -> None:
    if len(predictions) != len(references):
        raise ValueError(
            f"predictions and references differ in length: {len(predictions)} vs {len(references)}"
        )


def bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (sacrebleu defaults: 13a tokenizer, exponential smoothing), 0–100."""
    _check_lengths(predictions, references)
    return float(BLEU().corpus_score(list(predictions), [list(references)]).score)


def chrf(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus chrF (character 6-grams, β = 2), 0–100."""
    _check_lengths(predictions, references)
    return float(CHRF().corpus_score(list(predictions), [list(references)]).score)


ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def rouge(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F-measure over examples, 0–1."""
    _check_lengths(predictions, references)
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for pred, ref in zip(predictions, references, strict=True):
        for name, score in scorer.score(ref, pred).items():
            totals[name] += score.fmeasure
    n = max(len(predictions), 1)
    return {name: total / n for name, total in totals.items()}


def text_metrics(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Every text metric at once, as stored on an offline metric run."""
    _check_lengths(predictions, references)
    n = max(len(predictions), 1)
    pairs = list(zip(predictions, references, strict=True))
    return {
        "exact_match": sum(exact_match(p, r) for p, r in pairs) / n,
        "token_f1": sum(token_f1(p, r) for p, r in pairs) / n,
        "bleu": bleu(predictions, references),
        "chrf": chrf(predictions, references),
        **rouge(predictions, references),
    }


@dataclass(frozen=True)
class ClassificationReport:
    labels: list[str]
    precision: dict[str, float]
    recall: dict[str, float]
    f1: dict[str, float]
    support: dict[str, int]
    macro_f1: float
    micro_f1: float
    accuracy: float
    confusion: list[list[int]]  # rows: true label, columns: predicted label, in `labels` order

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def classification_report(
    predictions: Sequence[Hashable], references: Sequence[Hashable]
) -> ClassificationReport:
    _check_lengths(predictions, references)
    labels = sorted({str(x) for x in [*references, *predictions]})
    y_pred = [str(x) for x in predictions]
    y_true = [str(x) for x in references]
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0.0)
    _, _, macro, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average="macro", zero_division=0.0
    )
    _, _, micro, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average="micro", zero_division=0.0
    )
    matrix = confusion_matrix(y_true, y_pred, labels=labels) if labels else np.zeros((0, 0))
    accuracy = float(np.mean([a == b for a, b in zip(y_true, y_pred, strict=True)]))
    return ClassificationReport(
        labels=labels,
        precision=dict(zip(labels, map(float, p), strict=True)),
        recall=dict(zip(labels, map(float, r), strict=True)),
        f1=dict(zip(labels, map(float, f), strict=True)),
        support=dict(zip(labels, map(int, s), strict=True)),
        macro_f1=float(macro),
        micro_f1=float(micro),
        accuracy=accuracy if y_true else math.nan,
        confusion=matrix.astype(int).tolist(),
    )


@dataclass(frozen=True)
class PairwiseScores:
    precision: float
    recall: float
    f1: float


def entity_pairwise_f1(
    predicted_matches: Sequence[tuple[Hashable, Hashable]],
    gold_matches: Sequence[tuple[Hashable, Hashable]],
) -> PairwiseScores:
    """Pairwise P/R/F1 over unordered record pairs declared the same entity."""
    pred = {frozenset(p) for p in predicted_matches}
    gold = {frozenset(p) for p in gold_matches}
    hit = len(pred & gold)
    precision = hit / len(pred) if pred else 0.0
    recall = hit / len(gold) if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return PairwiseScores(precision, recall, f1)


def precision_at_k(scores: Sequence[float], is_match: Sequence[bool], k: int) -> float:
    """Share of true matches among the k highest-scoring candidate pairs (stable on ties)."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    _check_lengths(scores, is_match)
    order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")[:k]
    return float(np.mean(np.asarray(is_match, dtype=bool)[order])) if len(order) else math.nan


# --- fairness slices ------------------------------------------------------------------------

# The four-fifths rule: a group selected at under 80% of the best group's rate is flagged.
DISPARATE_IMPACT_FLOOR = 0.8


@dataclass(frozen=True)
class SliceRow:
    group: str
    n: int
    score: float  # mean per-example score (accuracy-like: higher is better)
    error_rate: float
    positive_rate: float | None
    gap_to_best: float
    disparate_impact: float | None
    flags: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SliceReport:
    field: str
    rows: list[SliceRow]
    max_gap: float
    min_disparate_impact: float | None
    flagged: bool

    def as_dict(self) -> dict:
        return {
            "field": self.field,
            "max_gap": self.max_gap,
            "min_disparate_impact": self.min_disparate_impact,
            "flagged": self.flagged,
            "rows": [r.__dict__ for r in self.rows],
        }


def fairness_slices(
    *,
    field_name: str,
    groups: Sequence[str],
    scores: Sequence[float],
    positives: Sequence[bool] | None = None,
    gap_threshold: float = 0.05,
    di_floor: float = DISPARATE_IMPACT_FLOOR,
    min_group_size: int = 1,
) -> SliceReport:
    """Per-group score and error rate, the gap to the best group, and (when `positives`
    says which outputs were a favourable decision) the disparate-impact ratio of each group's
    positive rate to the highest. A group is flagged when its gap exceeds `gap_threshold`
    or its ratio falls under `di_floor`; groups smaller than `min_group_size` are reported
    but never flagged (too few to say)."""
    _check_lengths(groups, scores)
    if positives is not None:
        _check_lengths(groups, positives)
    by_group: dict[str, list[int]] = {}
    for n, g in enumerate(groups):
        by_group.setdefault(str(g), []).append(n)
    score_arr = np.asarray(scores, dtype=float)
    pos_arr = None if positives is None else np.asarray(positives, dtype=bool)
    stats = {}
    for g, idx in by_group.items():
        s = float(score_arr[idx].mean())
        pr = float(pos_arr[idx].mean()) if pos_arr is not None else None
        stats[g] = (len(idx), s, pr)
    best = max((s for _, s, _ in stats.values()), default=math.nan)
    best_pr = max((pr for _, _, pr in stats.values() if pr is not None), default=None)
    rows = []
    for g in sorted(stats):
        n, s, pr = stats[g]
        gap = best - s
        di = None
        if pr is not None and best_pr:
            di = pr / best_pr
        flags = []
        if n >= min_group_size:
            if gap > gap_threshold:
                flags.append(f"gap {gap:.3f} > {gap_threshold}")
            if di is not None and di < di_floor:
                flags.append(f"disparate impact {di:.3f} < {di_floor}")
        rows.append(SliceRow(g, n, s, 1 - s, pr, gap, di, flags))
    dis = [r.disparate_impact for r in rows if r.disparate_impact is not None]
    return SliceReport(
        field=field_name,
        rows=rows,
        max_gap=max((r.gap_to_best for r in rows), default=0.0),
        min_disparate_impact=min(dis) if dis else None,
        flagged=any(r.flags for r in rows),
    )


# --- paired bootstrap -----------------------------------------------------------------------


@dataclass(frozen=True)
class PairedBootstrap:
    candidate: float
    baseline: float
    delta: float  # candidate − baseline
    lower: float  # 95% interval of the delta
    upper: float
    p_value: float  # P(the drop is no worse than the tolerance); small means a real regression
    rounds: int
    not_worse: int  # rounds whose delta is at or above −tolerance; p = (this + 1)/(rounds + 1)


def _sentence_stats(metric_name: str, preds: Sequence[str], refs: Sequence[str]):
    metric = {"bleu": BLEU(), "chrf": CHRF()}[metric_name]
    stats = np.asarray(metric._extract_corpus_statistics(list(preds), [list(refs)]), dtype=float)
    return metric, stats


def paired_bootstrap(
    *,
    metric: str,
    candidate: Sequence[str] | Sequence[float],
    baseline: Sequence[str] | Sequence[float],
    references: Sequence[str] | None = None,
    tolerance: float = 0.0,
    rounds: int = 1000,
    seed: int = 0,
) -> PairedBootstrap:
    """Paired bootstrap over examples for "candidate is not worse than baseline by more
    than `tolerance`".

    For corpus metrics (`bleu`, `chrf`) the candidate and baseline are texts and every round
    recomputes the corpus score from resampled sentence statistics, as sacrebleu's own
    significance test does; for anything else they are per-example scores and the round
    statistic is the mean. The p-value is the share of rounds whose delta is at or above
    −tolerance (with the +1 correction): a gate fails when it is under its alpha.
    """
    n = len(candidate)
    if n != len(baseline):
        raise ValueError(f"candidate and baseline differ in length: {n} vs {len(baseline)}")
    if n == 0:
        raise ValueError("no examples to compare")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(rounds, n))
    counts = np.zeros((rounds, n))
    np.add.at(counts, (np.arange(rounds)[:, None], idx), 1.0)
    if metric in ("bleu", "chrf"):
        if references is None:
            raise ValueError(f"{metric} needs references")
        m, cand_stats = _sentence_stats(metric, candidate, references)  # type: ignore[arg-type]
        _, base_stats = _sentence_stats(metric, baseline, references)  # type: ignore[arg-type]

        def corpus(stats: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
            return lambda w: np.array([m._compute_score_from_stats(row).score for row in w @ stats])

        cand_fn, base_fn = corpus(cand_stats), corpus(base_stats)
        cand_value = float(m._compute_score_from_stats(cand_stats.sum(0)).score)
        base_value = float(m._compute_score_from_stats(base_stats.sum(0)).score)
    else:
        c = np.asarray(candidate, dtype=float)
        b = np.asarray(baseline, dtype=float)

        def cand_fn(w: np.ndarray) -> np.ndarray:
            return w @ c / n

        def base_fn(w: np.ndarray) -> np.ndarray:
            return w @ b / n

        cand_value, base_value = float(c.mean()), float(b.mean())
    deltas = cand_fn(counts) - base_fn(counts)
    lo, hi = np.percentile(deltas, [2.5, 97.5])
    not_worse = int(np.sum(deltas >= -tolerance))
    p_value = (not_worse + 1) / (rounds + 1)
    return PairedBootstrap(
        candidate=cand_value,
        baseline=base_value,
        delta=cand_value - base_value,
        lower=float(lo),
        upper=float(hi),
        p_value=p_value,
        rounds=rounds,
        not_worse=not_worse,
    )


def decimals_for(spread: float) -> int:
    """Decimal places that show `spread` (the width of an interval) to three significant
    digits, so numbers printed beside it are as precise as the interval says they are."""
    if not math.isfinite(spread) or spread <= 0:
        return 4
    return min(8, max(2, 2 - math.floor(math.log10(spread))))
