import time

import numpy as np
import pytest

from annotation.agreement import LabelTable, agreement_summary, dawid_skene

ITEMS = 500_000
ANNOTATORS = 40
CATEGORIES = 5


def million_labels() -> tuple[LabelTable, np.ndarray]:
    """500,000 items x 2 labels from two different annotators; 20 % of labels are noise."""
    rng = np.random.default_rng(7)
    truth = rng.integers(0, CATEGORIES, ITEMS)
    item = np.repeat(np.arange(ITEMS), 2)
    annotator = rng.integers(0, ANNOTATORS, 2 * ITEMS)
    annotator[1::2] = (annotator[0::2] + 1 + rng.integers(0, ANNOTATORS - 1, ITEMS)) % ANNOTATORS
    noisy = rng.random(2 * ITEMS) < 0.2
    value = np.where(noisy, rng.integers(0, CATEGORIES, 2 * ITEMS), truth[item])
    table = LabelTable(item=item, annotator=annotator, value=value, n_categories=CATEGORIES)
    return table, truth


def test_agreement_summary_of_a_million_labels_takes_under_10_s(report):
    table, _ = million_labels()

    start = time.perf_counter()
    summary = agreement_summary(table, "nominal")
    elapsed = time.perf_counter() - start

    report("agreement_1m_labels_s", elapsed, "s")
    # A label is right with p = 0.84, so two agree with p = 0.84^2 + 4 * 0.04^2 = 0.712; chance
    # is 0.2 with uniform categories: (0.712 - 0.2) / 0.8 = 0.64.
    assert summary["alpha"] == pytest.approx(0.64, abs=0.01)
    assert summary["fleiss"] == pytest.approx(0.64, abs=0.01)
    assert len(summary["pairs"]) == ANNOTATORS * (ANNOTATORS - 1) // 2
    assert sum(map(sum, summary["confusion"])) == 2 * ITEMS
    assert elapsed < 10


def test_dawid_skene_on_a_million_labels(report):
    table, truth = million_labels()

    start = time.perf_counter()
    result = dawid_skene(table)
    elapsed = time.perf_counter() - start

    report("dawid_skene_1m_labels_s", elapsed, "s")
    assert (result.labels == truth).mean() > 0.8
    # About 2.5 s on 2 cores; the bound only catches a runaway EM, not noise.
    assert elapsed < 30
