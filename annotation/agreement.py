"""Inter-annotator agreement and label aggregation over a long table of labels.

Plain numpy plus the `krippendorff` and `crowd-kit` packages and no Django, so the dashboard,
the label-model service and the benchmarks share one implementation. Everything except
Dawid-Skene works on sorted integer keys and `np.bincount`: memory grows with the number of
labels, not with items x categories; a million labels take about 0.35 s (tests/bench)."""

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import krippendorff
import numpy as np
import pandas as pd
from crowdkit.aggregation import DawidSkene

Level = Literal["nominal", "ordinal", "interval"]

# krippendorff.alpha materialises units x values x values float arrays (about four at once), so
# past this many elements alpha is computed here: from sparse coincidences for nominal and
# ordinal, in closed form for interval (continuous ratings can have thousands of values).
_PACKAGE_MAX_ELEMENTS = 1 << 22


# eq=False: a field-wise == on numpy arrays has no truth value and would raise.
@dataclass(frozen=True, eq=False)
class LabelTable:
    """Long format: one row per (item, annotator) label.

    Preconditions, checked on construction: equal-length 1-D arrays, non-negative item and
    annotator indices, finite values, at most one label per (item, annotator), and values in
    0..n_categories-1 when n_categories is given. For the ordinal level the category codes
    must follow the order of the scale."""

    item: np.ndarray  # int64, item index 0..n_items-1
    annotator: np.ndarray  # int64, annotator index 0..n_annotators-1
    value: np.ndarray  # int64 category code for nominal/ordinal; float64 for interval
    n_categories: int | None = None
    # Rows sorted by (item, annotator): found while checking for duplicates, reused for pairs.
    _order: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        item = _index_array(self.item, "item")
        annotator = _index_array(self.annotator, "annotator")
        value = np.asarray(self.value)
        if value.dtype.kind in "biu":
            value = value.astype(np.int64, copy=False)
        elif value.dtype.kind == "f":
            value = value.astype(np.float64, copy=False)
            if not np.isfinite(value).all():
                raise ValueError("values must be finite; leave missing labels out of the table")
        else:
            raise TypeError(f"values must be integers or floats, not {value.dtype}")
        if not item.shape == annotator.shape == value.shape:
            raise ValueError("item, annotator and value must have the same length")
        k = self.n_categories
        if k is not None and len(value) and (k < 1 or value.min() < 0 or value.max() >= k):
            raise ValueError(f"values must lie in 0..{k - 1}")
        key = item * (int(annotator.max(initial=0)) + 1) + annotator
        order = np.argsort(key)
        if len(key) > 1 and (np.diff(key[order]) == 0).any():
            raise ValueError("an annotator labelled the same item twice")
        object.__setattr__(self, "item", item)
        object.__setattr__(self, "annotator", annotator)
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "_order", order)

    @property
    def n_items(self) -> int:
        return int(self.item.max()) + 1 if len(self.item) else 0

    @property
    def n_annotators(self) -> int:
        return int(self.annotator.max()) + 1 if len(self.annotator) else 0


@dataclass(frozen=True)
class PairAgreement:
    annotator_a: int
    annotator_b: int
    n_items: int
    kappa: float | None
    observed_agreement: float


@dataclass(frozen=True)
class MajorityResult:
    label: np.ndarray  # winning category per item; -1 on a tie or when the item has no label
    votes: np.ndarray  # labels given to the winning (or tied) category
    total: np.ndarray  # labels given to the item


@dataclass(frozen=True)
class LabelModelResult:
    labels: np.ndarray  # aggregated category per item; -1 when the item has no label
    confidence: np.ndarray  # posterior probability of that category
    reliability: np.ndarray  # per annotator, P(label == true label); nan without labels


@dataclass(frozen=True)
class _UnitCounts:
    """Sparse items x categories counts: one row per (unit, code) present, sorted by both."""

    unit: np.ndarray
    code: np.ndarray
    count: np.ndarray
    n_codes: int


def _index_array(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
        raise TypeError(f"{name} must be a 1-D integer array")
    array = array.astype(np.int64, copy=False)
    if array.size and array.min() < 0:
        raise ValueError(f"{name} indices must be non-negative")
    return array


def _codes(table: LabelTable) -> tuple[np.ndarray, int]:
    """Category codes as int64 and the number of categories."""
    value = table.value
    if value.dtype.kind == "f":
        if not (value == np.round(value)).all():
            raise ValueError("nominal and ordinal metrics need integer category codes")
        value = value.astype(np.int64)
    if len(value) and value.min() < 0:
        raise ValueError("category codes must be non-negative")
    if table.n_categories is not None:
        return value, table.n_categories
    return value, int(value.max()) + 1 if len(value) else 0


def _unit_counts(unit: np.ndarray, code: np.ndarray, n_codes: int) -> _UnitCounts:
    key = unit * n_codes + code
    n_keys = (int(unit.max()) + 1) * n_codes if len(unit) else 0
    if n_keys <= 4 * len(key) + 1024:
        # A dense key space is counted in one pass; sorting would cost several times more.
        full = np.bincount(key, minlength=n_keys)
        key = np.flatnonzero(full)
        count = full[key]
    else:
        key, count = np.unique(key, return_counts=True)
    return _UnitCounts(key // n_codes, key % n_codes, count, n_codes)


def _pairs_within_groups(group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i, j), i < j, of elements with equal `group`; `group` must be sorted.

    Fully vectorised: each element i is repeated once per later element of its group."""
    n = len(group)
    if n < 2:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    sizes = np.diff(np.r_[starts, n])
    rank = np.arange(n) - np.repeat(starts, sizes)
    later = np.repeat(sizes, sizes) - 1 - rank
    first = np.repeat(np.arange(n), later)
    block_start = np.repeat(np.cumsum(later) - later, later)
    second = first + 1 + (np.arange(len(first)) - block_start)
    return first, second


def _pair_matrix(counts: _UnitCounts, unit_weight: np.ndarray | None = None) -> np.ndarray:
    """sum over units u of w_u * (r_u r_u^T - diag r_u), r_u the unit's category counts:
    ordered pairs of distinct labels on one unit, by category."""
    k = counts.n_codes
    n = counts.count.astype(np.float64)
    w = np.ones_like(n) if unit_weight is None else unit_weight[counts.unit]
    diagonal = np.bincount(counts.code, weights=w * n * (n - 1), minlength=k)
    # Codes ascend within a unit, so every (i, j) pair lands above the diagonal.
    i, j = _pairs_within_groups(counts.unit)
    upper = np.bincount(
        counts.code[i] * k + counts.code[j], weights=w[i] * n[i] * n[j], minlength=k * k
    ).reshape(k, k)
    return upper + upper.T + np.diag(diagonal)


def _ordinal_distances(n_v: np.ndarray) -> np.ndarray:
    """Krippendorff's ordinal difference, as in the krippendorff package:
    (sum of n_g for g from c to k - (n_c + n_k) / 2) ** 2."""
    rank = np.arange(len(n_v))
    low, high = np.minimum.outer(rank, rank), np.maximum.outer(rank, rank)
    cumulative = np.cumsum(n_v)
    between = cumulative[high] - cumulative[low] + n_v[low]
    return (between - (n_v[:, None] + n_v[None, :]) / 2) ** 2


def _interval_alpha(unit: np.ndarray, x: np.ndarray, count: np.ndarray) -> float:
    """Interval alpha in O(labels): with squared differences, the disagreement within unit u
    sums to 2 m_u SS_u, so alpha = 1 - (n-1)/n * sum_u [m_u SS_u / (m_u-1)] / SS_total.
    Every unit given here holds at least two values."""
    # Centring first keeps the sums of squares from cancelling on large offsets.
    x = x - np.average(x, weights=count)
    m = np.bincount(unit, weights=count)
    s1 = np.bincount(unit, weights=count * x)
    s2 = np.bincount(unit, weights=count * x * x)
    rated = m >= 2
    within = (s2[rated] - s1[rated] ** 2 / m[rated]) * m[rated] / (m[rated] - 1)
    n = m.sum()
    return float(1.0 - (n - 1) / n * within.sum() / (count * x * x).sum())


def _alpha(counts: _UnitCounts, domain: np.ndarray, level: Level) -> float | None:
    labels_per_unit = np.bincount(counts.unit, weights=counts.count)
    pairable = labels_per_unit[counts.unit] >= 2
    if not pairable.any():
        return None
    # Values nobody used in a pairable unit change no distance: drop them to keep V small.
    used, code = np.unique(counts.code[pairable], return_inverse=True)
    if len(used) < 2:
        return None  # no variation: expected disagreement is 0 and alpha is 0/0
    unit, count, domain = counts.unit[pairable], counts.count[pairable], domain[used]
    row = np.cumsum(np.r_[True, unit[1:] != unit[:-1]]) - 1
    n_units, k = int(row[-1]) + 1, len(used)
    if n_units * k * k <= _PACKAGE_MAX_ELEMENTS:
        value_counts = np.zeros((n_units, k), dtype=np.int64)
        value_counts[row, code] = count
        alpha = krippendorff.alpha(
            value_counts=value_counts, value_domain=domain, level_of_measurement=level
        )
        return float(alpha)
    if level == "interval":
        return _interval_alpha(unit, domain[code], count)
    weight = 1.0 / (labels_per_unit - 1).clip(min=1)
    observed = _pair_matrix(_UnitCounts(unit, code, count, k), weight)
    n_v = observed.sum(axis=0)
    expected = (np.outer(n_v, n_v) - np.diag(n_v)) / (n_v.sum() - 1)
    distance = 1.0 - np.eye(k) if level == "nominal" else _ordinal_distances(n_v)
    return float(1.0 - (observed * distance).sum() / (expected * distance).sum())


def krippendorff_alpha(table: LabelTable, level: Level) -> float | None:
    """Krippendorff's alpha at the given level of measurement; None when undefined: no item
    has two labels, or all pairable labels are the same value."""
    if level == "interval":
        domain, code = np.unique(table.value.astype(np.float64), return_inverse=True)
        return _alpha(_unit_counts(table.item, code, len(domain)), domain, level)
    code, k = _codes(table)
    return _alpha(_unit_counts(table.item, code, k), np.arange(k, dtype=np.float64), level)


def _fleiss(counts: _UnitCounts) -> float | None:
    n_i = np.bincount(counts.unit, weights=counts.count)
    n = counts.count.astype(np.float64)
    keep = n_i[counts.unit] >= 2
    if len(np.unique(counts.code[keep])) < 2:
        return None  # one category (or none): P_e = 1 and kappa is 0/0
    agreeing_pairs = np.bincount(
        counts.unit[keep], weights=n[keep] * (n[keep] - 1), minlength=len(n_i)
    )
    rated = n_i >= 2
    p_i = agreeing_pairs[rated] / (n_i[rated] * (n_i[rated] - 1))
    p_j = np.bincount(counts.code[keep], weights=n[keep], minlength=counts.n_codes)
    p_j = p_j / p_j.sum()
    p_e = float((p_j**2).sum())
    return float((p_i.mean() - p_e) / (1.0 - p_e))


def fleiss_kappa(table: LabelTable) -> float | None:
    """Fleiss' kappa with n_i raters on item i, over the items with n_i >= 2:

        P_i   = sum_j n_ij (n_ij - 1) / (n_i (n_i - 1))   agreeing rater pairs on item i
        P_bar = mean of P_i, every item weighted equally
        p_j   = sum_i n_ij / sum_i n_i                    share of labels in category j
        P_e   = sum_j p_j^2
        kappa = (P_bar - P_e) / (1 - P_e)

    With a constant n_i this is Fleiss (1971). None when undefined (fewer than two
    categories used on those items)."""
    code, k = _codes(table)
    return _fleiss(_unit_counts(table.item, code, k))


def cohen_kappa_pairs(table: LabelTable) -> list[PairAgreement]:
    """Cohen's kappa for every pair of annotators over the items both labelled, ordered by
    (annotator_a, annotator_b) with annotator_a < annotator_b; pairs sharing no item are
    left out. kappa is None when both annotators used one and the same category only."""
    code, k = _codes(table)
    n_ann = table.n_annotators
    order = table._order
    i, j = _pairs_within_groups(table.item[order])
    if len(i) == 0:
        return []
    # Rows are sorted by annotator within an item, so annotator_a < annotator_b already.
    pair_key = table.annotator[order[i]] * n_ann + table.annotator[order[j]]
    code_a, code_b = code[order[i]], code[order[j]]
    pairs, pair, n = np.unique(pair_key, return_inverse=True, return_counts=True)
    agree = np.bincount(pair, weights=code_a == code_b, minlength=len(pairs))
    # n^2 * chance agreement = sum_c count_a(c) * count_b(c), from sparse per-pair marginals.
    key_a, count_a = np.unique(pair * k + code_a, return_counts=True)
    key_b, count_b = np.unique(pair * k + code_b, return_counts=True)
    common, at_a, at_b = np.intersect1d(key_a, key_b, assume_unique=True, return_indices=True)
    chance = np.bincount(common // k, weights=count_a[at_a] * count_b[at_b], minlength=len(pairs))
    n_sq = n.astype(np.float64) ** 2
    # Integer-valued floats, so the comparison is exact.
    defined = chance < n_sq
    kappa = np.divide(agree * n - chance, n_sq - chance, out=np.zeros(len(n)), where=defined)
    return [
        PairAgreement(
            annotator_a=key // n_ann,
            annotator_b=key % n_ann,
            n_items=count,
            kappa=value if ok else None,
            observed_agreement=agreed / count,
        )
        for key, count, value, ok, agreed in zip(
            pairs.tolist(),
            n.tolist(),
            kappa.tolist(),
            defined.tolist(),
            agree.tolist(),
            strict=True,
        )
    ]


def _confusion(counts: _UnitCounts) -> np.ndarray:
    return np.rint(_pair_matrix(counts)).astype(np.int64)


def pairwise_confusion(table: LabelTable) -> np.ndarray:
    """n_categories x n_categories counts of label pairs two annotators gave one item; each
    unordered pair is counted in both directions, so the matrix is symmetric and a pair of
    equal labels adds 2 to the diagonal."""
    code, k = _codes(table)
    return _confusion(_unit_counts(table.item, code, k))


def majority_vote(table: LabelTable) -> MajorityResult:
    code, k = _codes(table)
    counts = _unit_counts(table.item, code, k)
    n_items = table.n_items
    label = np.full(n_items, -1, dtype=np.int64)
    votes = np.zeros(n_items, dtype=np.int64)
    total = np.bincount(table.item, minlength=n_items)
    if not len(counts.unit):
        return MajorityResult(label, votes, total)
    starts = np.flatnonzero(np.r_[True, counts.unit[1:] != counts.unit[:-1]])
    votes[counts.unit[starts]] = np.maximum.reduceat(counts.count, starts)
    is_top = counts.count == votes[counts.unit]
    tops = np.bincount(counts.unit[is_top], minlength=n_items)
    single = is_top & (tops[counts.unit] == 1)
    label[counts.unit[single]] = counts.code[single]
    return MajorityResult(label, votes, total)


def dawid_skene(table: LabelTable, *, n_iter: int = 100) -> LabelModelResult:
    """Dawid-Skene EM through crowd-kit. An annotator's reliability is
    sum_c prior_c * P(label = c | true = c) with the fitted priors and confusion matrix."""
    code, _ = _codes(table)
    n_items, n_ann = table.n_items, table.n_annotators
    labels = np.full(n_items, -1, dtype=np.int64)
    confidence = np.zeros(n_items)
    reliability = np.full(n_ann, np.nan)
    if not len(code):
        return LabelModelResult(labels, confidence, reliability)
    frame = pd.DataFrame({"task": table.item, "worker": table.annotator, "label": code})
    model = DawidSkene(n_iter=n_iter)
    probas = model.fit_predict_proba(frame)
    posterior = probas.to_numpy()
    tasks = probas.index.to_numpy(dtype=np.int64)
    labels[tasks] = probas.columns.to_numpy(dtype=np.int64)[posterior.argmax(axis=1)]
    confidence[tasks] = posterior.max(axis=1)
    # errors_: rows (worker, given label), columns true label, P(given | true).
    errors, priors = model.errors_, model.priors_
    if errors is None or priors is None:  # fit_predict_proba above sets both
        raise RuntimeError("Dawid-Skene left no estimates")
    true_labels = errors.columns
    column = true_labels.get_indexer(errors.index.get_level_values("label"))
    worker = errors.index.get_level_values("worker").to_numpy(dtype=np.int64)
    diagonal = errors.to_numpy()[np.arange(len(errors)), column]
    prior = priors.reindex(true_labels).fillna(0.0).to_numpy()[column]
    weighted = np.bincount(worker, weights=diagonal * prior, minlength=n_ann)
    seen = np.bincount(table.annotator, minlength=n_ann) > 0
    reliability[seen] = weighted[seen]
    return LabelModelResult(labels, confidence, reliability)


def gold_accuracy(
    table: LabelTable, gold: dict[int, int] | np.ndarray
) -> dict[int, tuple[int, int]]:
    """(correct, total) per annotator over the gold items; annotators who labelled no gold
    item are left out. `gold` maps item index -> category, or is an array indexed by item
    with a negative entry for items without gold."""
    n_items = table.n_items
    truth = np.full(n_items, -1, dtype=np.int64)
    if isinstance(gold, dict):
        known = {i: c for i, c in gold.items() if 0 <= i < n_items}
        truth[list(known)] = list(known.values())
    else:
        gold = np.asarray(gold, dtype=np.int64)
        truth[: min(len(gold), n_items)] = gold[:n_items]
    expected = truth[table.item]
    on_gold = expected >= 0
    annotator = table.annotator[on_gold]
    total = np.bincount(annotator, minlength=table.n_annotators)
    correct = np.bincount(
        annotator, weights=table.value[on_gold] == expected[on_gold], minlength=len(total)
    )
    return {a: (int(correct[a]), int(total[a])) for a in np.flatnonzero(total).tolist()}


def agreement_summary(table: LabelTable, level: Level) -> dict[str, Any]:
    """Alpha, Fleiss' kappa, Cohen's kappa per pair and the pair confusion matrix, as plain
    JSON types for the dashboard. Fleiss, pairs and confusion treat the values as
    categories, so for the interval level they are None, [] and None."""
    summary: dict[str, Any] = {
        "level": level,
        "labels": len(table.item),
        "items": int(np.count_nonzero(np.bincount(table.item))),
        "annotators": int(np.count_nonzero(np.bincount(table.annotator))),
    }
    if level == "interval":
        summary.update(alpha=krippendorff_alpha(table, level), fleiss=None, pairs=[])
        summary["confusion"] = None
        return summary
    code, k = _codes(table)
    # The counts are shared by alpha, Fleiss and the confusion matrix.
    counts = _unit_counts(table.item, code, k)
    summary["alpha"] = _alpha(counts, np.arange(k, dtype=np.float64), level)
    summary["fleiss"] = _fleiss(counts)
    summary["pairs"] = [asdict(pair) for pair in cohen_kappa_pairs(table)]
    summary["confusion"] = _confusion(counts).tolist()
    return summary
