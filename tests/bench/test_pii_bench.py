import re
import time
from pathlib import Path

import pytest

from annotation.pii import BUILTIN, Recognizer, scan_text
from tests.annotation.pii_sample import SAMPLE, load_sample, score

HELD_OUT = Path(__file__).parents[1] / "annotation" / "data" / "pii_heldout.jsonl"
TEXTS = 10_000

# The phone recognizer the check used before libphonenumber: a digit-group pattern and a
# 7-15 digit count. Kept here only so the bench shows what the change bought.
_DATE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}")
REGEX_PHONE = Recognizer(
    "PHONE",
    re.compile(
        r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]?\d{2,4}){1,4}(?!\w)"
    ),
    lambda t: 7 <= sum(c.isdigit() for c in t) <= 15 and not _DATE.fullmatch(t),
)
REGEX_ERA = (*(r for r in BUILTIN if r.kind not in ("PHONE", "PERSON")), REGEX_PHONE)


@pytest.mark.parametrize(("name", "path"), [("sample", SAMPLE), ("heldout", HELD_OUT)])
def test_pii_precision_and_recall(report, name, path):
    sample = load_sample(path)

    scores, _ = score(sample, scan_text)
    before, _ = score(sample, lambda text: scan_text(text, REGEX_ERA))

    for era, by_kind in (("", scores), ("_regex_era", before)):
        for kind, s in by_kind.items():
            if era and kind not in ("PHONE", "PERSON", "ALL"):
                continue  # the other recognizers did not change
            if s.found:  # precision of nothing found is undefined (the regex era's names)
                report(f"pii_{name}_{kind.lower()}_precision{era}", s.precision, "")
            report(f"pii_{name}_{kind.lower()}_recall{era}", s.recall, "")
    assert scores["PHONE"].precision > before["PHONE"].precision


def test_pii_scan_throughput(report):
    texts = [r.text for r in load_sample()]
    dense = (texts * (TEXTS // len(texts) + 1))[:TEXTS]  # every text has numbers or names
    prose = [t for t in texts if sum(c.isdigit() for c in t) < 7]
    prose = (prose * (TEXTS // len(prose) + 1))[:TEXTS]
    scan_text("warm the name lists")

    for name, batch in (("dense", dense), ("prose", prose)):
        for era, recognizers in (("", BUILTIN), ("_regex_era", REGEX_ERA)):
            start = time.perf_counter()
            for text in batch:
                scan_text(text, recognizers)
            elapsed = time.perf_counter() - start
            report(f"pii_scan_{name}_texts_per_s{era}", TEXTS / elapsed, "texts/s")
