import json
import math

import krippendorff
import numpy as np
import pytest

from annotation.agreement import (
    LabelTable,
    agreement_summary,
    cohen_kappa_pairs,
    dawid_skene,
    fleiss_kappa,
    gold_accuracy,
    krippendorff_alpha,
    majority_vote,
    pairwise_confusion,
)

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 observers
# (rows) x 12 units (columns), None where an observer skipped the unit.
KRIPPENDORFF_2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
]

# Wikipedia, "Fleiss' kappa", worked example: 10 subjects x 5 categories, 14 raters each.
WIKIPEDIA_FLEISS = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]


def table_from_rows(rows, *, offset=0, n_categories=None, dtype=np.int64):
    """rows[annotator][item] is a value or None; `offset` is subtracted from every value."""
    item, annotator, value = [], [], []
    for a, row in enumerate(rows):
        for i, v in enumerate(row):
            if v is not None:
                item.append(i)
                annotator.append(a)
                value.append(v - offset)
    return LabelTable(
        item=np.array(item),
        annotator=np.array(annotator),
        value=np.array(value, dtype=dtype),
        n_categories=n_categories,
    )


def table_from_counts(counts):
    """Each item's labels come from annotators 0, 1, 2, ... in category order."""
    item, annotator, value = [], [], []
    for i, row in enumerate(counts):
        codes = np.repeat(np.arange(len(row)), row)
        item += [i] * len(codes)
        annotator += list(range(len(codes)))
        value += codes.tolist()
    return LabelTable(
        item=np.array(item),
        annotator=np.array(annotator),
        value=np.array(value),
        n_categories=len(counts[0]),
    )


def random_table(rng, *, n_items, n_annotators, n_categories, labels_per_item):
    annotator = np.concatenate(
        [rng.choice(n_annotators, labels_per_item, replace=False) for _ in range(n_items)]
    )
    item = np.repeat(np.arange(n_items), labels_per_item)
    truth = rng.integers(0, n_categories, n_items)
    noisy = rng.random(len(item)) < 0.4
    value = np.where(noisy, rng.integers(0, n_categories, len(item)), truth[item])
    return LabelTable(item=item, annotator=annotator, value=value, n_categories=n_categories)


def test_alpha_nominal_matches_krippendorff_2011_example():
    # 40 pairable values (unit 12 has one value). Per value: n_1=9, n_2=13, n_3=10, n_4=5,
    # n_5=3. Mismatching coincidences, sum over units of (m_u^2 - sum_c n_uc^2) / (m_u - 1):
    # unit 2 (2,2,3,2): 6/3 = 2; unit 6 (1,2,3,4): 12/3 = 4; unit 8 (1,1,2,1): 6/3 = 2; total 8.
    # alpha = 1 - (n - 1) * 8 / (n^2 - sum n_c^2) = 1 - 39 * 8 / (1600 - 384) = 0.7434
    table = table_from_rows(KRIPPENDORFF_2011, offset=1)

    assert krippendorff_alpha(table, "nominal") == pytest.approx(1 - 312 / 1216)
    assert round(krippendorff_alpha(table, "nominal"), 3) == 0.743


def test_alpha_ordinal_and_interval_match_krippendorff_2011_example():
    # The paper reports alpha_ordinal = .815 and alpha_interval = .849 for the same data.
    ordinal = table_from_rows(KRIPPENDORFF_2011, offset=1)
    interval = table_from_rows(KRIPPENDORFF_2011, dtype=np.float64)

    assert round(krippendorff_alpha(ordinal, "ordinal"), 3) == 0.815
    assert round(krippendorff_alpha(interval, "interval"), 3) == 0.849


def test_alpha_interval_on_three_units_matches_hand_computation():
    # Units (1, 2), (3, 3), (5, 4): D_o = (1/n) sum_u sum_{i != j} d^2 / (m_u - 1)
    #   = (2 * 1 + 0 + 2 * 1) / 6 = 2/3.
    # D_e = sum_{i != j} (x_i - x_j)^2 / (n (n - 1)) = 2 n * sum (x - mean)^2 / 30 = 2*6*10/30 = 4.
    # alpha = 1 - (2/3) / 4 = 5/6
    table = table_from_rows([[1.0, 3.0, 5.0], [2.0, 3.0, 4.0]], dtype=np.float64)

    assert krippendorff_alpha(table, "interval") == pytest.approx(5 / 6)


def test_alpha_is_one_under_perfect_agreement_at_every_level():
    table = table_from_rows([[0, 1, 2, 1], [0, 1, 2, 1], [0, 1, None, 1]])

    assert krippendorff_alpha(table, "nominal") == pytest.approx(1.0)
    assert krippendorff_alpha(table, "ordinal") == pytest.approx(1.0)
    assert krippendorff_alpha(table, "interval") == pytest.approx(1.0)


def test_alpha_is_none_without_pairable_values_or_without_variation():
    one_label_per_item = table_from_rows([[0, 1, None], [None, None, 2]])
    everyone_says_one = table_from_rows([[1, 1, 1], [1, 1, None]])

    assert krippendorff_alpha(one_label_per_item, "nominal") is None
    assert krippendorff_alpha(everyone_says_one, "nominal") is None
    assert krippendorff_alpha(everyone_says_one, "interval") is None


def test_alpha_ignores_items_with_a_single_label():
    with_singletons = table_from_rows([[0, 1, 0, 2], [0, 0, None, None], [1, 1, None, None]])
    without = table_from_rows([[0, 1], [0, 0], [1, 1]])

    assert krippendorff_alpha(with_singletons, "nominal") == pytest.approx(
        krippendorff_alpha(without, "nominal")
    )


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval"])
def test_alpha_with_many_values_matches_the_package_on_the_dense_matrix(level):
    # 1,200 units x 60 values is past the size this module hands to the package, so it
    # computes alpha itself; the package on the same value_counts is the oracle.
    table = random_table(
        np.random.default_rng(3), n_items=1200, n_annotators=8, n_categories=60, labels_per_item=3
    )
    value_counts = np.zeros((1200, 60), dtype=np.int64)
    np.add.at(value_counts, (table.item, table.value), 1)

    expected = krippendorff.alpha(value_counts=value_counts, level_of_measurement=level)

    assert krippendorff_alpha(table, level) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval"])
def test_alpha_on_a_small_random_table_matches_the_package_on_reliability_data(level):
    rng = np.random.default_rng(11)
    table = random_table(rng, n_items=40, n_annotators=5, n_categories=4, labels_per_item=3)
    reliability = np.full((5, 40), np.nan)
    reliability[table.annotator, table.item] = table.value

    expected = krippendorff.alpha(reliability_data=reliability, level_of_measurement=level)

    assert krippendorff_alpha(table, level) == pytest.approx(expected, rel=1e-9)


def test_alpha_interval_on_continuous_values_matches_the_anova_form():
    # With squared differences, sum_{i != j in u} (x_i - x_j)^2 = 2 m_u SS_u, so
    # alpha = 1 - (n - 1) / n * sum_u [m_u SS_u / (m_u - 1)] / SS_total over pairable values.
    rng = np.random.default_rng(5)
    n_items = 3000
    per_item = rng.integers(1, 5, n_items)
    item = np.repeat(np.arange(n_items), per_item)
    annotator = np.concatenate([rng.choice(6, m, replace=False) for m in per_item])
    value = rng.normal(50, 10, n_items)[item] + rng.normal(0, 5, len(item))
    table = LabelTable(item=item, annotator=annotator, value=value)

    pairable = per_item[item] >= 2
    x, u = value[pairable], item[pairable]
    m = np.bincount(u, minlength=n_items)
    means = np.bincount(u, weights=x, minlength=n_items) / np.maximum(m, 1)
    ss_u = np.bincount(u, weights=(x - means[u]) ** 2, minlength=n_items)
    within = (m * ss_u / np.maximum(m - 1, 1)).sum()
    n = len(x)
    expected = 1 - (n - 1) / n * within / ((x - x.mean()) ** 2).sum()

    assert krippendorff_alpha(table, "interval") == pytest.approx(expected, rel=1e-9)


def test_cohen_kappa_on_four_items_matches_hand_computation():
    # A = 0 1 0 1, B = 0 1 1 1. p_o = 3/4. Marginals A (1/2, 1/2), B (1/4, 3/4):
    # p_e = 1/2 * 1/4 + 1/2 * 3/4 = 1/2. kappa = (3/4 - 1/2) / (1 - 1/2) = 1/2.
    table = table_from_rows([[0, 1, 0, 1], [0, 1, 1, 1]])

    (pair,) = cohen_kappa_pairs(table)

    assert (pair.annotator_a, pair.annotator_b, pair.n_items) == (0, 1, 4)
    assert pair.observed_agreement == pytest.approx(0.75)
    assert pair.kappa == pytest.approx(0.5)


def test_cohen_kappa_uses_only_the_items_both_annotators_labelled():
    # Pair (0, 1) shares items 0-3: A = 0 1 0 1, B = 0 1 1 1 -> kappa 1/2 as above.
    # Pair (0, 2) shares items 4, 5: A = 0 1, C = 0 1 -> p_o = 1, p_e = 1/2, kappa 1.
    # Annotators 1 and 2 share no item, so that pair is absent.
    table = table_from_rows(
        [[0, 1, 0, 1, 0, 1], [0, 1, 1, 1, None, None], [None, None, None, None, 0, 1]]
    )

    pairs = cohen_kappa_pairs(table)

    assert [(p.annotator_a, p.annotator_b, p.n_items) for p in pairs] == [(0, 1, 4), (0, 2, 2)]
    assert pairs[0].kappa == pytest.approx(0.5)
    assert pairs[1].kappa == pytest.approx(1.0)


def test_cohen_kappa_is_none_when_both_annotators_used_one_same_category():
    table = table_from_rows([[2, 2, 2], [2, 2, 2]], n_categories=3)

    (pair,) = cohen_kappa_pairs(table)

    assert pair.kappa is None
    assert pair.observed_agreement == 1.0


def test_cohen_kappa_matches_sklearn_for_every_pair_of_many_annotators():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(2)
    table = random_table(rng, n_items=600, n_annotators=7, n_categories=4, labels_per_item=3)
    labels = np.full((7, 600), -1)
    labels[table.annotator, table.item] = table.value

    pairs = cohen_kappa_pairs(table)

    assert len(pairs) == 21
    for pair in pairs:
        shared = (labels[pair.annotator_a] >= 0) & (labels[pair.annotator_b] >= 0)
        a, b = labels[pair.annotator_a, shared], labels[pair.annotator_b, shared]
        assert pair.n_items == shared.sum()
        assert pair.observed_agreement == pytest.approx((a == b).mean())
        assert pair.kappa == pytest.approx(metrics.cohen_kappa_score(a, b))


def test_fleiss_kappa_matches_wikipedia_example():
    # P_bar = 0.378, P_e = 0.213 (p_j = .143 .200 .279 .150 .229), kappa = 0.210.
    table = table_from_counts(WIKIPEDIA_FLEISS)

    assert round(fleiss_kappa(table), 3) == 0.210


def test_fleiss_kappa_with_varying_raters_matches_hand_computation():
    # Item 0: 0 0 1 -> P = (2*1 + 0) / (3*2) = 1/3. Item 1: 1 1 -> P = 1. Item 2 has one
    # label and is ignored. P_bar = 2/3. Labels on kept items: two 0s, three 1s ->
    # P_e = (2/5)^2 + (3/5)^2 = 13/25. kappa = (2/3 - 13/25) / (12/25) = 11/36.
    table = table_from_rows([[0, 1, 0], [0, 1, None], [1, None, None]])

    assert fleiss_kappa(table) == pytest.approx(11 / 36)


def test_fleiss_kappa_is_one_under_perfect_agreement_and_none_without_variation():
    agreeing = table_from_rows([[0, 1, 2], [0, 1, 2], [0, 1, 2]])
    one_category = table_from_rows([[1, 1], [1, 1]])
    no_pairs = table_from_rows([[0, 1], [None, None]])

    assert fleiss_kappa(agreeing) == pytest.approx(1.0)
    assert fleiss_kappa(one_category) is None
    assert fleiss_kappa(no_pairs) is None


def test_pairwise_confusion_counts_each_label_pair_in_both_directions():
    # Item 0 has 0 0 1: pairs (0,0), (0,1), (0,1). Item 1 has 1 2: pair (1,2). Item 2 has a
    # single label. Both directions: [0,0] = 2, [0,1] = [1,0] = 2, [1,2] = [2,1] = 1.
    table = table_from_rows([[0, 1, 2], [0, 2, None], [1, None, None]], n_categories=4)

    assert pairwise_confusion(table).tolist() == [
        [2, 2, 0, 0],
        [2, 0, 1, 0],
        [0, 1, 0, 0],
        [0, 0, 0, 0],
    ]


def test_majority_vote_marks_ties_and_unlabelled_items():
    # Item 0: 1 1 0 -> 1 with 2 of 3. Item 1: 0 1 -> tie. Item 2: no label. Item 3: 2 alone.
    table = table_from_rows([[1, 0, None, 2], [1, 1, None, None], [0, None, None, None]])

    result = majority_vote(table)

    assert result.label.tolist() == [1, -1, -1, 2]
    assert result.votes.tolist() == [2, 1, 0, 1]
    assert result.total.tolist() == [3, 2, 0, 1]


def test_dawid_skene_recovers_truth_and_finds_the_random_annotator():
    rng = np.random.default_rng(0)
    n_items, n_categories = 600, 3
    truth = rng.integers(0, n_categories, n_items)
    item = np.tile(np.arange(n_items), 3)
    annotator = np.repeat(np.arange(3), n_items)
    correct = rng.random(3 * n_items) < np.repeat([0.9, 0.85, 0.0], n_items)
    value = np.where(correct, truth[item], rng.integers(0, n_categories, 3 * n_items))
    table = LabelTable(item=item, annotator=annotator, value=value, n_categories=n_categories)

    result = dawid_skene(table)

    assert (result.labels == truth).mean() > 0.9
    assert ((result.confidence > 1 / n_categories) & (result.confidence <= 1)).all()
    # Annotator 2 answers uniformly at random: right one time in three.
    assert result.reliability[2] == pytest.approx(1 / 3, abs=0.1)
    assert result.reliability[0] == pytest.approx(0.9 + 0.1 / 3, abs=0.05)
    assert result.reliability[1] == pytest.approx(0.85 + 0.15 / 3, abs=0.05)


def test_dawid_skene_leaves_unlabelled_items_and_idle_annotators_empty():
    # Nobody labelled item 1 and annotator 1 labelled nothing.
    table = table_from_rows([[0, None, 1, 1], [None] * 4, [0, None, 1, 0]])

    result = dawid_skene(table)

    assert result.labels[1] == -1
    assert result.confidence[1] == 0.0
    assert result.labels[[0, 2]].tolist() == [0, 1]
    assert math.isnan(result.reliability[1])
    assert not np.isnan(result.reliability[[0, 2]]).any()


def test_gold_accuracy_counts_only_gold_items_for_dict_and_array():
    # Gold: item 0 -> 1, item 2 -> 0. Annotator 0 gave 1, 0 (2/2); annotator 1 gave 0 on
    # item 0 (0/1); annotator 2 labelled no gold item.
    table = table_from_rows([[1, 1, 0], [0, 1, None], [None, 0, None]])

    from_dict = gold_accuracy(table, {0: 1, 2: 0, 99: 1})
    from_array = gold_accuracy(table, np.array([1, -1, 0]))

    assert from_dict == {0: (2, 2), 1: (0, 1)}
    assert from_array == from_dict


def test_agreement_summary_is_json_and_matches_the_single_metrics():
    table = table_from_rows(KRIPPENDORFF_2011, offset=1)

    summary = json.loads(json.dumps(agreement_summary(table, "nominal")))

    assert summary["labels"] == 41
    assert summary["items"] == 12
    assert summary["annotators"] == 4
    assert summary["alpha"] == pytest.approx(krippendorff_alpha(table, "nominal"))
    assert summary["fleiss"] == pytest.approx(fleiss_kappa(table))
    assert len(summary["pairs"]) == 6
    assert summary["pairs"][0]["kappa"] == pytest.approx(cohen_kappa_pairs(table)[0].kappa)
    assert summary["confusion"] == pairwise_confusion(table).tolist()


def test_agreement_summary_for_interval_reports_alpha_only():
    table = table_from_rows([[1.5, 3.0, 5.0], [2.0, 3.0, 4.5]], dtype=np.float64)

    summary = json.loads(json.dumps(agreement_summary(table, "interval")))

    assert summary["alpha"] == pytest.approx(krippendorff_alpha(table, "interval"))
    assert (summary["fleiss"], summary["pairs"], summary["confusion"]) == (None, [], None)


def test_agreement_summary_of_an_empty_table_has_no_metrics():
    empty = LabelTable(
        item=np.array([], dtype=np.int64),
        annotator=np.array([], dtype=np.int64),
        value=np.array([], dtype=np.int64),
        n_categories=3,
    )

    summary = agreement_summary(empty, "nominal")

    assert (summary["alpha"], summary["fleiss"], summary["pairs"]) == (None, None, [])
    assert summary["confusion"] == [[0, 0, 0]] * 3


def test_table_rejects_a_second_label_from_the_same_annotator_on_an_item():
    with pytest.raises(ValueError, match="twice"):
        LabelTable(item=np.array([0, 0]), annotator=np.array([3, 3]), value=np.array([0, 1]))


def test_table_rejects_values_outside_the_categories():
    with pytest.raises(ValueError, match="0..2"):
        LabelTable(
            item=np.array([0, 0]),
            annotator=np.array([0, 1]),
            value=np.array([0, 3]),
            n_categories=3,
        )


def test_nominal_metrics_reject_fractional_codes():
    table = table_from_rows([[0.5, 1.0], [1.0, 1.0]], dtype=np.float64)

    assert not math.isnan(krippendorff_alpha(table, "interval"))
    with pytest.raises(ValueError, match="integer category codes"):
        fleiss_kappa(table)
