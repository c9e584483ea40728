"""Inter-annotator agreement and label aggregation over a long table of labels.

Pure numpy (plus the `krippendorff` and `crowd-kit` packages); no Django, so the same
code serves the dashboard, the API and the benchmarks. All metrics are vectorised: a
million labels take well under a second except Dawid-Skene."""

from dataclasses import asdict, dataclass
from typing import Any, Literal

import krippendorff
import numpy as np
import pandas as pd
from crowdkit.aggregation import DawidSkene

Level = Literal["nominal", "ordinal", "interval"]


@dataclass(frozen=True)
class LabelTable:
    """Long format: one row per (item, annotator) label."""

    item: np.ndarray  # int64 item index 0..n_items-1
    annotator: np.ndarray  # int64 annotator index 0..n_annotators-1
    value: np.ndarray  # int64 category code for nominal/ordinal, float64 for interval
    n_categories: int | None = None

    @property
    def n_items(self) -> int:
        return int(self.item.max()) + 1 if len(self.item) else 0

    @property
    def n_annotators(self) -> int:
        return int(self.annotator.max()) + 1 if len(self.annotator) else 0

    def categories(self) -> int:
        if self.n_categories is not None:
            return self.n_categories
        return int(self.value.max()) + 1 if len(self.value) else 0


@dataclass(frozen=True)
class PairAgreement:
    annotator_a: int
    annotator_b: int
    n_items: int
    kappa: float | None
    observed_agreement: float


def _value_counts(table: LabelTable) -> np.ndarray:
    """items x categories matrix of label counts."""
    counts = np.zeros((table.n_items, table.categories()), dtype=np.int64)
    np.add.at(counts, (table.item, table.value.astype(np.int64)), 1)
    return counts


def krippendorff_alpha(table: LabelTable, level: Level) -> float | None:
    if len(table.item) < 2:
        return None
    if level == "interval":
        # Interval data: count matrix over the distinct values, ordered, as the domain.
        domain, codes = np.unique(table.value.astype(np.float64), return_inverse=True)
        counts = np.zeros((table.n_items, len(domain)), dtype=np.int64)
        np.add.at(counts, (table.item, codes), 1)
        value_domain = domain
    else:
        counts = _value_counts(table)
        value_domain = np.arange(counts.shape[1])
    pairable = counts[counts.sum(axis=1) >= 2]
    if pairable.sum() < 2 or len(value_domain) < 2 and pairable.shape[0] == 0:
        return None
    if len(value_domain) < 2:
        return 1.0  # everyone gave the one value there is
    try:
        alpha = krippendorff.alpha(
            value_counts=pairable, value_domain=value_domain, level_of_measurement=level
        )
    except (ValueError, ZeroDivisionError):
        return None
    return None if np.isnan(alpha) else float(alpha)


def fleiss_kappa(table: LabelTable) -> float | None:
    """Fleiss' kappa generalised to a varying number of raters n_i per item:
    P_i = (sum_j n_ij^2 - n_i) / (n_i (n_i - 1)), P_bar = mean P_i,
    p_j = sum_i n_ij / sum_i n_i, P_e = sum_j p_j^2, kappa = (P_bar - P_e) / (1 - P_e).
    Items with fewer than two labels are left out."""
    counts = _value_counts(table)
    n = counts.sum(axis=1)
    keep = n >= 2
    if not keep.any():
        return None
    counts, n = counts[keep], n[keep]
    p_i = ((counts**2).sum(axis=1) - n) / (n * (n - 1))
    p_bar = p_i.mean()
    p_j = counts.sum(axis=0) / n.sum()
    p_e = float((p_j**2).sum())
    if p_e >= 1.0:
        return 1.0 if p_bar >= 1.0 else None
    return float((p_bar - p_e) / (1 - p_e))


def _pairs(table: LabelTable) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of labels two different annotators gave the same item, as
    (annotator_a, annotator_b, value_a, value_b) with annotator_a < annotator_b."""
    order = np.lexsort((table.annotator, table.item))
    item, annotator, value = table.item[order], table.annotator[order], table.value[order]
    starts = np.flatnonzero(np.r_[True, item[1:] != item[:-1]])
    sizes = np.diff(np.r_[starts, len(item)])
    a_idx, b_idx = [], []
    # Items usually carry 2-5 labels: loop over the offset, vectorise over items.
    for offset_a in range(int(sizes.max()) if len(sizes) else 0):
        for offset_b in range(offset_a + 1, int(sizes.max())):
            has = sizes > offset_b
            a_idx.append(starts[has] + offset_a)
            b_idx.append(starts[has] + offset_b)
    if not a_idx:
        empty = np.array([], dtype=np.int64)
        return empty, empty, empty, empty
    a, b = np.concatenate(a_idx), np.concatenate(b_idx)
    ann_a, ann_b = annotator[a], annotator[b]
    swap = ann_a > ann_b
    val_a, val_b = value[a], value[b]
    return (
        np.where(swap, ann_b, ann_a),
        np.where(swap, ann_a, ann_b),
        np.where(swap, val_b, val_a),
        np.where(swap, val_a, val_b),
    )


def cohen_kappa_pairs(table: LabelTable) -> list[PairAgreement]:
    """Cohen's kappa for each pair of annotators over the items both labelled."""
    ann_a, ann_b, val_a, val_b = _pairs(table)
    if len(ann_a) == 0:
        return []
    k = table.categories()
    n_ann = table.n_annotators
    pair_id = ann_a * n_ann + ann_b
    order = np.argsort(pair_id, kind="stable")
    pair_id, val_a, val_b = pair_id[order], val_a[order], val_b[order]
    bounds = np.flatnonzero(np.r_[True, pair_id[1:] != pair_id[:-1], True])
    result = []
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        pid = int(pair_id[start])
        va, vb = val_a[start:end].astype(np.int64), val_b[start:end].astype(np.int64)
        n = end - start
        observed = float((va == vb).mean())
        pa = np.bincount(va, minlength=k) / n
        pb = np.bincount(vb, minlength=k) / n
        expected = float((pa * pb).sum())
        kappa = None if expected >= 1.0 else (observed - expected) / (1 - expected)
        result.append(PairAgreement(pid // n_ann, pid % n_ann, int(n), kappa, observed))
    return result


def pairwise_confusion(table: LabelTable) -> np.ndarray:
    """Symmetric categories x categories counts of label pairs on the same item."""
    k = table.categories()
    _, _, val_a, val_b = _pairs(table)
    matrix = np.zeros((k, k), dtype=np.int64)
    np.add.at(matrix, (val_a.astype(np.int64), val_b.astype(np.int64)), 1)
    np.add.at(matrix, (val_b.astype(np.int64), val_a.astype(np.int64)), 1)
    return matrix


@dataclass(frozen=True)
class MajorityResult:
    label: np.ndarray  # winning category per item, -1 on a tie
    votes: np.ndarray
    total: np.ndarray


def majority_vote(table: LabelTable) -> MajorityResult:
    counts = _value_counts(table)
    top = counts.argmax(axis=1)
    votes = counts.max(axis=1)
    ties = (counts == votes[:, None]).sum(axis=1) > 1
    return MajorityResult(np.where(ties, -1, top), votes, counts.sum(axis=1))


@dataclass(frozen=True)
class LabelModelResult:
    labels: np.ndarray  # aggregated category per item
    confidence: np.ndarray  # posterior probability of that category
    reliability: np.ndarray  # per annotator: P(label == truth) under the model


def dawid_skene(table: LabelTable, n_iter: int = 100) -> LabelModelResult:
    """Dawid-Skene EM through crowd-kit; reliability is the prior-weighted diagonal of
    each annotator's confusion matrix."""
    frame = pd.DataFrame({"task": table.item, "worker": table.annotator, "label": table.value})
    model = DawidSkene(n_iter=n_iter)
    probas = model.fit_predict_proba(frame)
    probas = probas.reindex(index=range(table.n_items), fill_value=0.0)
    columns = np.asarray(probas.columns)
    matrix = probas.to_numpy()
    labels = columns[matrix.argmax(axis=1)].astype(np.int64)
    confidence = matrix.max(axis=1)
    priors = model.priors_.reindex(columns).fillna(0.0).to_numpy()
    errors = model.errors_  # index (worker, label given), columns: true label
    reliability = np.full(table.n_annotators, np.nan)
    for worker in range(table.n_annotators):
        if worker not in errors.index.get_level_values(0):
            continue
        confusion = errors.loc[worker].reindex(index=columns, columns=columns, fill_value=0.0)
        reliability[worker] = float((np.diag(confusion.to_numpy()) * priors).sum())
    return LabelModelResult(labels, confidence, reliability)


def gold_accuracy(table: LabelTable, gold: dict[int, int]) -> dict[int, tuple[int, int]]:
    """(correct, total) per annotator on the items of `gold` (item index -> category)."""
    result: dict[int, tuple[int, int]] = {}
    for item, annotator, value in zip(table.item, table.annotator, table.value, strict=True):
        if int(item) in gold:
            correct, total = result.get(int(annotator), (0, 0))
            result[int(annotator)] = (correct + int(gold[int(item)] == int(value)), total + 1)
    return result


def agreement_summary(table: LabelTable, level: Level) -> dict[str, Any]:
    """Everything a dashboard shows, JSON-serialisable."""
    summary: dict[str, Any] = {
        "labels": int(len(table.item)),
        "items": int(len(np.unique(table.item))) if len(table.item) else 0,
        "alpha": krippendorff_alpha(table, level),
    }
    if level != "interval":
        summary["fleiss"] = fleiss_kappa(table)
        summary["pairs"] = [asdict(p) for p in cohen_kappa_pairs(table)]
        summary["confusion"] = pairwise_confusion(table).tolist()
    else:
        summary["fleiss"] = None
        summary["pairs"] = []
    return summary
