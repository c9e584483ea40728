"""The labelled PII sample (data/pii_sample.jsonl) and span-level precision and recall on it.

Each line holds a short text, the shape it was written to test (`phone_de`, `year_range`,
`url_id`, `coordinates`, `not_name`, ...) and its personal data as (kind, exact substring)
pairs; the loader turns them into character spans. A found span counts when it overlaps a
labelled span of the same kind: the Presidio evaluator's partial match, so that "Dr. Kevin
Osei" found for "Kevin Osei" is not both a miss and a false alarm.
"""

import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from annotation.pii import Span

SAMPLE = Path(__file__).parent / "data" / "pii_sample.jsonl"


@dataclass(frozen=True)
class Labelled:
    shape: str
    text: str
    spans: tuple[Span, ...]


@dataclass(frozen=True)
class Score:
    found: int
    found_right: int  # found spans that overlap a labelled span of their kind
    labelled: int
    labelled_found: int  # labelled spans that some found span of their kind overlaps

    @property
    def precision(self) -> float:
        return self.found_right / self.found if self.found else 1.0

    @property
    def recall(self) -> float:
        return self.labelled_found / self.labelled if self.labelled else 1.0


def load_sample(path: Path = SAMPLE) -> list[Labelled]:
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        text, spans, after = record["text"], [], Counter()
        for kind, value in record["pii"]:
            start = text.find(value, after[value])
            if start < 0:
                raise ValueError(f"{value!r} is not in {text!r}")
            after[value] = start + len(value)
            spans.append(Span(kind, start, start + len(value)))
        records.append(Labelled(record["shape"], text, tuple(spans)))
    return records


def _overlap(a: Span, b: Span) -> bool:
    return a.kind == b.kind and a.start < b.end and b.start < a.end


def score(
    sample: Iterable[Labelled], detect: Callable[[str], list[Span]]
) -> tuple[dict[str, Score], list[tuple[Labelled, list[Span]]]]:
    """Scores per kind and overall ("ALL"), and the texts where detection was wrong."""
    counts: dict[str, Counter] = {}
    wrong = []
    for record in sample:
        found = detect(record.text)
        false_alarms = [s for s in found if not any(_overlap(s, g) for g in record.spans)]
        missed = [g for g in record.spans if not any(_overlap(g, s) for s in found)]
        for kind in ("ALL", *{s.kind for s in (*found, *record.spans)}):
            mine = [s for s in found if kind in ("ALL", s.kind)]
            labels = [g for g in record.spans if kind in ("ALL", g.kind)]
            c = counts.setdefault(kind, Counter())
            c["found"] += len(mine)
            c["found_right"] += sum(s not in false_alarms for s in mine)
            c["labelled"] += len(labels)
            c["labelled_found"] += sum(g not in missed for g in labels)
        if missed or false_alarms:
            wrong.append((record, found))
    scores = {k: Score(**c) for k, c in sorted(counts.items()) if k != "ALL"}
    scores["ALL"] = Score(**counts["ALL"])
    return scores, wrong
