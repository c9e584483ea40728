"""Grouped, seeded, stratified splits: items that share a prompt (or a battle, or any
declared `split_group`) always land in the same split, so no prompt is trained on and
then tested on.

An item's group keys:
- tasks with a prompt (writing, preference): the sha256 of the prompt, normalised (Unicode
  NFKC, case folded, runs of whitespace made one space; a conversation's every text the
  same way), so two judgments of one prompt, or two responses written to it, share it;
- every other task: the item's content hash (the item is its own prompt; exact copies go
  together, near copies are left to the leakage check);
- and, for every task, the item's `split_group` metadata when it has one (the judgments
  export sets it to the battle a verdict was on).
Items sharing any key form one group (the connected components of items and keys).

Groups are then split. Within each stratum (a group's most common label) groups are
ordered by md5("<seed>:<hash in the first key of the group's first item>") and each is
placed at the midpoint of its members as a share of the stratum; all groups, sorted by
that share, are cut by cumulative size into round(n*test) for test, round(n*validation)
for validation and the rest for train, a group going where its midpoint falls. Every split
so gets its share of each label, and no stratum is too small to reach test. With one
stratum of single items this is the per-item rule the snapshots used before. Pure
functions; no Django.
"""

import hashlib
import json
import math
import re
import unicodedata
from array import array
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

SPLITS = ("train", "validation", "test")
# The tasks whose payload names a prompt, and the schema key that names its field.
PROMPT_FIELD = {"writing": "prompt_field", "preference": "prompt_field"}
GROUP_METADATA_KEY = "split_group"
_SPACE = re.compile(r"\s+")


def _normalised(value: Any) -> Any:
    if isinstance(value, str):
        return _SPACE.sub(" ", unicodedata.normalize("NFKC", value)).strip().casefold()
    if isinstance(value, Mapping):
        return {str(k): _normalised(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normalised(v) for v in value]
    return value


def prompt_sha256(prompt: Any) -> str:
    """The normalised hash of a prompt: a string, or a conversation (a list of messages)."""
    text = _normalised(prompt)
    raw = text if isinstance(text, str) else json.dumps(text, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def needs_payload(task_type: str) -> bool:
    """Whether the keys of this task type are read from the (encrypted) payload."""
    return task_type in PROMPT_FIELD


def group_keys(
    *,
    task_type: str,
    config: Mapping[str, Any],
    content_sha256: str,
    payload: Mapping[str, Any] | None = None,
    split_group: Any = None,
) -> list[str]:
    """The keys an item shares with the others of its group; the first orders the group."""
    keys = []
    field = PROMPT_FIELD.get(task_type)
    prompt = payload.get(config.get(field) or "prompt") if field and payload else None
    if prompt not in (None, "", []):
        keys.append(f"prompt:{prompt_sha256(prompt)}")
    else:
        keys.append(f"content:{content_sha256}")
    if split_group not in (None, ""):
        keys.append(f"group:{split_group}")
    return keys


def order_value(seed: int, key: str) -> int:
    """The seeded order of a group: the first 64 bits of md5("<seed>:<hash>"), <hash> the
    hex digest in its first key; for a content key this is the order the per-item split
    used (snapshots compute it in SQL then, as `order_sql_hex`)."""
    value = key.partition(":")[2]
    digest = hashlib.md5(f"{seed}:{value}".encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest[:8], "big")


def _key_value(key: str) -> int:
    """64 bits standing for a key (two keys colliding would only join two groups)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


def _quota(n: int, share: float) -> int:
    return math.floor(n * share + 0.5)


def _components(n: int, edge_item: array, edge_key: array) -> np.ndarray:
    """Group number 0..g-1 of each of n items, items sharing a key being one group."""
    keys, key_index = np.unique(np.frombuffer(edge_key, dtype=np.uint64), return_inverse=True)
    items = np.frombuffer(edge_item, dtype=np.int64)
    # Items are nodes 0..n-1 and keys n..n+k-1; an item is joined to each of its keys.
    graph = coo_matrix(
        (np.ones(len(items), dtype=np.int8), (items, n + key_index)),
        shape=(n + len(keys), n + len(keys)),
    )
    _, labels = connected_components(graph, directed=False)
    return np.unique(labels[:n], return_inverse=True)[1]


class GroupedSplitter:
    """Collects (item id, keys, stratum) in item-id order, then assigns every item a split.

    Memory is a few arrays of 8-byte numbers per item and key, not Python objects."""

    def __init__(self, *, seed: int, ratios: Mapping[str, float]):
        self.seed = seed
        self.ratios = dict(ratios)
        self.item_ids = array("q")
        self.order = array("Q")
        self.strata = array("q")
        self.edge_item = array("q")
        self.edge_key = array("Q")
        self.stratum_codes: dict[str, int] = {}
        self.split_codes: np.ndarray | None = None

    def add(
        self, item_id: int, keys: list[str], stratum: str | None, order: int | None = None
    ) -> None:
        """`order`: order_value(seed, keys[0]) when the caller has it already."""
        position = len(self.item_ids)
        if position and item_id <= self.item_ids[-1]:
            raise ValueError("items must be added in ascending id order")
        self.item_ids.append(item_id)
        self.order.append(order_value(self.seed, keys[0]) if order is None else order)
        self.strata.append(self.stratum_codes.setdefault(stratum or "", len(self.stratum_codes)))
        for key in keys:
            self.edge_item.append(position)
            self.edge_key.append(_key_value(key))

    def assign(self) -> dict[str, int]:
        """Split every added item; returns how many groups were formed."""
        n = len(self.item_ids)
        if n == 0:
            self.split_codes = np.zeros(0, dtype=np.int8)
            return {"groups": 0, "largest": 0}
        labels = _components(n, self.edge_item, self.edge_key)
        n_groups = int(labels.max()) + 1
        positions = np.arange(n)
        first = np.full(n_groups, n, dtype=np.int64)
        np.minimum.at(first, labels, positions)
        size = np.bincount(labels, minlength=n_groups)
        # A group's stratum is its most common one; ties go to the stratum named first in
        # sorted order, so the result does not depend on which label was met first.
        names = sorted(self.stratum_codes, key=self.stratum_codes.__getitem__)
        rank_of_code = np.argsort(np.argsort(np.array(names, dtype=object)))
        stratum = rank_of_code[np.frombuffer(self.strata, dtype=np.int64)]
        n_strata = len(names)
        counts = np.bincount(labels * n_strata + stratum, minlength=n_groups * n_strata)
        group_stratum = counts.reshape(n_groups, n_strata).argmax(axis=1)
        order = np.frombuffer(self.order, dtype=np.uint64)[first]
        item_ids = np.frombuffer(self.item_ids, dtype=np.int64)
        # Within its stratum, a group's place is the midpoint of its members in seeded
        # order, as a share of the stratum (0..1). Sorting all groups by that share
        # interleaves the strata in proportion (a systematic stratified sample), so each
        # split gets its share of every label while the cut below is made on the whole:
        # a stratum smaller than a group cannot round a split away.
        ranked = np.lexsort((item_ids[first], order, group_stratum))
        sizes = size[ranked]
        stratum_of = group_stratum[ranked]
        totals = np.bincount(stratum_of, weights=sizes, minlength=n_strata)
        before = np.cumsum(sizes) - sizes
        stratum_start = np.zeros(n_strata)
        starts = np.flatnonzero(np.r_[True, np.diff(stratum_of) != 0])
        stratum_start[stratum_of[starts]] = before[starts]
        share = (before - stratum_start[stratum_of] + sizes / 2) / totals[stratum_of]
        placed = ranked[np.lexsort((item_ids[first][ranked], order[ranked], share))]
        n_test = _quota(n, self.ratios["test"])
        n_val = min(_quota(n, self.ratios["validation"]), n - n_test)
        midpoint = np.cumsum(size[placed]) - size[placed] / 2
        split_of_group = np.zeros(n_groups, dtype=np.int8)  # 0 train, 1 validation, 2 test
        split_of_group[placed] = np.where(
            midpoint < n_test, 2, np.where(midpoint < n_test + n_val, 1, 0)
        )
        self.split_codes = split_of_group[labels]
        return {"groups": n_groups, "largest": int(size.max())}

    def split_lookup(self):
        """A function item id -> split name (None for an item not added), for ids asked in
        ascending order, as the members are written."""
        if self.split_codes is None:
            raise RuntimeError("call assign() first")
        ids, codes = self.item_ids, self.split_codes
        names = ("train", "validation", "test")
        cursor = 0

        def lookup(item_id: int) -> str | None:
            nonlocal cursor
            while cursor < len(ids) and ids[cursor] < item_id:
                cursor += 1
            if cursor < len(ids) and ids[cursor] == item_id:
                return names[codes[cursor]]
            return None

        return lookup


def straddling_groups(members: Iterable[tuple[int, list[str], str]]) -> list[dict[str, Any]]:
    """Groups (items sharing a key) whose items lie in more than one split: what the
    leakage check reports as prompt leaks. `members` is (item id, keys, split)."""
    item_ids, splits, edge_item, edge_key = [], [], array("q"), array("Q")
    for position, (item_id, keys, split) in enumerate(members):
        item_ids.append(item_id)
        splits.append(split)
        for key in keys:
            edge_item.append(position)
            edge_key.append(_key_value(key))
    if not item_ids:
        return []
    labels = _components(len(item_ids), edge_item, edge_key)
    groups: dict[int, list[int]] = {}
    for position, label in enumerate(labels.tolist()):
        groups.setdefault(label, []).append(position)
    leaking = []
    for positions in groups.values():
        in_splits = sorted({splits[p] for p in positions})
        if len(in_splits) > 1:
            leaking.append({"items": sorted(item_ids[p] for p in positions), "splits": in_splits})
    return sorted(leaking, key=lambda g: (-len(g["items"]), g["items"]))
