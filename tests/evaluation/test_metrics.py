import math
from collections import Counter

import numpy as np
import pytest

from evaluation import metrics as M


def test_exact_match_uses_squad_normalisation():
    assert M.exact_match("The Eiffel Tower!", "eiffel tower") == 1.0
    assert M.exact_match("Eiffel", "eiffel tower") == 0.0


def test_token_f1_known_value():
    # 2 shared tokens; precision 2/3, recall 2/4 → F1 = 4/7
    assert M.token_f1("red big house", "a big red barn door") == pytest.approx(4 / 7)
    assert M.token_f1("", "") == 1.0
    assert M.token_f1("x", "") == 0.0


def test_bleu_hand_worked():
    # n-gram precisions 5/6, 3/5, 1/4 and (no 4-gram match, exp smoothing) 1/(2·3); BP = 1
    expected = 100 * (5 / 6 * 3 / 5 * 1 / 4 * 1 / 6) ** 0.25

    assert M.bleu(["the cat sat on the mat"], ["the cat is on the mat"]) == pytest.approx(
        expected, abs=1e-6
    )
    assert M.bleu(["same words here ok"], ["same words here ok"]) == pytest.approx(100)


def _chrf_by_hand(hyp, ref, order=6, beta=2):
    hyp, ref = hyp.replace(" ", ""), ref.replace(" ", "")
    precisions, recalls = [], []
    for n in range(1, order + 1):
        h = Counter(hyp[i : i + n] for i in range(len(hyp) - n + 1))
        r = Counter(ref[i : i + n] for i in range(len(ref) - n + 1))
        if h and r:
            match = sum((h & r).values())
            precisions.append(match / sum(h.values()))
            recalls.append(match / sum(r.values()))
    p, r = np.mean(precisions), np.mean(recalls)
    return 100 * (1 + beta**2) * p * r / (beta**2 * p + r)


def test_chrf_matches_the_formula():
    assert M.chrf(["kitten sat"], ["sitting cat"]) == pytest.approx(
        _chrf_by_hand("kitten sat", "sitting cat"), abs=1e-6
    )
    assert M.chrf(["abc"], ["abc"]) == pytest.approx(100)


def test_rouge_hand_worked():
    scores = M.rouge(["the cat sat on the mat"], ["the cat is on the mat"])

    assert scores["rouge1"] == pytest.approx(5 / 6)
    assert scores["rouge2"] == pytest.approx(3 / 5)
    assert scores["rougeL"] == pytest.approx(5 / 6)  # LCS "the cat on the mat"


def test_text_metrics_refuse_mismatched_lengths():
    with pytest.raises(ValueError, match="differ in length: 2 vs 1"):
        M.text_metrics(["a", "b"], ["a"])


def test_classification_report_known_values():
    refs = ["cat", "cat", "cat", "dog", "dog", "bird"]
    preds = ["cat", "cat", "dog", "dog", "cat", "bird"]

    report = M.classification_report(preds, refs)

    assert report.labels == ["bird", "cat", "dog"]
    assert report.precision["cat"] == pytest.approx(2 / 3)
    assert report.recall["cat"] == pytest.approx(2 / 3)
    assert report.f1["dog"] == pytest.approx(0.5)
    assert report.accuracy == pytest.approx(4 / 6)
    assert report.macro_f1 == pytest.approx((1 + 2 / 3 + 0.5) / 3)
    assert report.confusion == [[1, 0, 0], [0, 2, 1], [0, 1, 1]]


def test_entity_pairwise_f1_ignores_pair_order():
    scores = M.entity_pairwise_f1(
        predicted_matches=[(1, 2), (3, 4), (5, 6)], gold_matches=[(2, 1), (4, 3), (7, 8), (9, 10)]
    )

    assert scores.precision == pytest.approx(2 / 3)
    assert scores.recall == pytest.approx(2 / 4)
    assert scores.f1 == pytest.approx(4 / 7)


def test_precision_at_k():
    scores = [0.9, 0.8, 0.7, 0.2, 0.1]
    truth = [True, False, True, True, False]

    assert M.precision_at_k(scores, truth, 1) == 1.0
    assert M.precision_at_k(scores, truth, 3) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="k must be at least 1"):
        M.precision_at_k(scores, truth, 0)


def test_fairness_flags_the_group_left_behind():
    groups = ["en"] * 100 + ["de"] * 100 + ["sw"] * 100
    scores = [1] * 90 + [0] * 10 + [1] * 88 + [0] * 12 + [1] * 60 + [0] * 40
    positives = [True] * 50 + [False] * 50 + [True] * 48 + [False] * 52 + [True] * 20 + [False] * 80

    report = M.fairness_slices(
        field_name="language", groups=groups, scores=scores, positives=positives
    )

    rows = {r.group: r for r in report.rows}
    assert rows["en"].gap_to_best == 0
    assert rows["sw"].error_rate == pytest.approx(0.4)
    assert rows["sw"].gap_to_best == pytest.approx(0.3)
    assert rows["sw"].disparate_impact == pytest.approx(0.4)
    assert rows["de"].flags == []
    assert len(rows["sw"].flags) == 2
    assert report.flagged
    assert report.max_gap == pytest.approx(0.3)


def test_fairness_passes_balanced_groups():
    report = M.fairness_slices(field_name="g", groups=["x", "y"] * 50, scores=[1, 1] * 50)

    assert not report.flagged
    assert report.min_disparate_impact is None


def test_paired_bootstrap_detects_a_real_regression_and_passes_noise():
    rng = np.random.default_rng(0)
    baseline = rng.random(400)
    worse = baseline - 0.1 + rng.normal(0, 0.02, 400)
    same = baseline + rng.normal(0, 0.02, 400)

    regression = M.paired_bootstrap(metric="score", candidate=worse, baseline=baseline)
    noise = M.paired_bootstrap(metric="score", candidate=same, baseline=baseline, tolerance=0.01)

    assert regression.p_value < 0.05
    assert regression.upper < 0
    assert noise.p_value > 0.05
    assert noise.lower < 0 < noise.upper


def test_paired_bootstrap_on_corpus_chrf():
    refs = [f"the answer number {i} is here" for i in range(60)]
    good = list(refs)
    bad = [f"answer {i}" for i in range(60)]

    result = M.paired_bootstrap(
        metric="chrf", candidate=bad, baseline=good, references=refs, tolerance=0.5, rounds=300
    )

    assert result.baseline == pytest.approx(100)
    assert result.delta < -0.5
    assert result.p_value < 0.05
    assert not math.isnan(result.lower)
