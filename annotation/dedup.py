"""Exact and near-duplicate clusters, and length statistics for the data reports.

Near duplicates are found with MinHash LSH (datasketch): each text becomes a set of word
3-gram shingles, LSH proposes candidate pairs whose estimated Jaccard similarity is over
the threshold, and the estimate is checked before a pair is joined. Pure functions; no
Django.
"""

import re
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence

import numpy as np
from datasketch import MinHash, MinHashLSH
from scipy.spatial.distance import jensenshannon
from scipy.stats import ks_2samp

from annotation.pii import text_leaves

NUM_PERM = 128
# Candidates are verified by their estimated Jaccard, so LSH is tuned to miss little.
LSH_WEIGHTS = (0.2, 0.8)  # (false positive, false negative)
SHINGLE = 3
_WORD = re.compile(r"\w+", re.UNICODE)
_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def payload_text(payload) -> str:
    """All the text of a payload, in key order: what duplicates and lengths are measured on."""
    return "\n".join(text for _, text in text_leaves(payload))


def approx_tokens(text: str) -> int:
    """Words and punctuation marks: the fallback when no tokenizer is named."""
    return len(_TOKEN.findall(text))


def shingles(text: str) -> set[bytes]:
    words = _WORD.findall(text.lower())
    if len(words) < SHINGLE:
        return {" ".join(words).encode()} if words else set()
    return {" ".join(words[i : i + SHINGLE]).encode() for i in range(len(words) - SHINGLE + 1)}


class _UnionFind:
    def __init__(self):
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        root = x
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while self.parent.get(x, x) != root:  # path compression
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        self.parent.setdefault(ra, ra)
        self.parent.setdefault(rb, rb)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def groups(self) -> list[list[int]]:
        members: dict[int, list[int]] = defaultdict(list)
        for x in list(self.parent):
            members[self.find(x)].append(x)
        return [sorted(g) for g in members.values() if len(g) > 1]


def exact_clusters(records: Iterable[tuple[int, str]]) -> list[list[int]]:
    """Groups of ids sharing a content hash, each sorted, largest first."""
    by_hash: dict[str, list[int]] = defaultdict(list)
    for item_id, digest in records:
        by_hash[digest].append(item_id)
    return sorted((sorted(g) for g in by_hash.values() if len(g) > 1), key=lambda g: (-len(g), g))


def near_clusters(
    records: Iterable[tuple[int, str]],
    *,
    threshold: float = 0.8,
    on_progress: Callable[[int], None] | None = None,
    progress_every: int = 5000,
) -> list[list[int]]:
    """Groups of ids whose texts are near duplicates (estimated Jaccard >= threshold),
    each sorted, largest first. Texts too short to shingle are left out."""
    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM, weights=LSH_WEIGHTS)
    # Copying one initialised sketch skips re-deriving the permutations per item (half the
    # time); crc32 is a fast, stable 32-bit shingle hash that datasketch then mixes.
    template = MinHash(num_perm=NUM_PERM, hashfunc=zlib.crc32)
    sketches: dict[int, MinHash] = {}
    found = _UnionFind()
    for count, (item_id, text) in enumerate(records, start=1):
        grams = shingles(text)
        if grams:
            sketch = template.copy()
            sketch.update_batch(list(grams))
            for other in lsh.query(sketch):
                if sketch.jaccard(sketches[other]) >= threshold:
                    found.union(item_id, other)
            lsh.insert(item_id, sketch)
            sketches[item_id] = sketch
        if on_progress is not None and count % progress_every == 0:
            on_progress(count)
    return sorted(found.groups(), key=lambda g: (-len(g), g))


def histogram_counts(values: Sequence[float], edges: Sequence[float]) -> list[int]:
    counts, _ = np.histogram(np.asarray(values, dtype=float), bins=np.asarray(edges))
    return [int(c) for c in counts]


def shared_edges(*samples: Sequence[float], bins: int = 30) -> list[float]:
    """Bin edges covering every sample up to its 99th percentile (a long tail would
    squash the rest into one bar); the last bin takes everything above."""
    pooled = np.concatenate(
        [np.asarray(s, dtype=float) for s in samples if len(s)] or [np.zeros(1)]
    )
    hi = max(float(np.percentile(pooled, 99)), 1.0)
    edges = np.linspace(0.0, hi, bins + 1).tolist()
    edges[-1] = max(hi, float(pooled.max()))
    return [round(e, 2) for e in edges]


def divergence(a: Sequence[float], b: Sequence[float]) -> dict[str, float | None]:
    """How far apart two length distributions are: Jensen-Shannon distance over shared
    bins (0 same, 1 disjoint) and the two-sample Kolmogorov-Smirnov statistic."""
    if not len(a) or not len(b):
        return {"jensen_shannon": None, "ks_statistic": None, "ks_pvalue": None}
    edges = shared_edges(a, b)
    pa, pb = histogram_counts(a, edges), histogram_counts(b, edges)
    ks = ks_2samp(a, b)
    return {
        "jensen_shannon": round(float(jensenshannon(pa, pb, base=2)), 4),
        "ks_statistic": round(float(ks.statistic), 4),
        "ks_pvalue": float(ks.pvalue),
    }
