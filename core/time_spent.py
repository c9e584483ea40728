"""One rule for the time a person spent on an answer, for the annotation queue and the
blind review alike: what is recorded, where it came from, and whether it was too fast to
have read what was shown.

The browser measures from showing the item to submitting it (it knows when the page was
drawn); the server knows when it handed the item out. A browser can only under-state that
span (a page drawn late, a tab left idle is still the server's time), so its measure is
kept when it lies between 0 and the server's span plus CLAIM_SLACK_S (clocks, network);
anything else (missing, negative, not a number, longer than the item was out) is replaced
by the server's span, and the record says which was kept.

Reading time is estimated at READING_WPM words a minute (a typical adult silent reading
rate for non-fiction is about 240; Brysbaert 2019). An answer is flagged as too fast when
it took under 1/FAST_FACTOR of that (faster than 1,000 words a minute, beyond skimming)
or under FLOOR_S: seen, but not read. Pure functions; no Django.
"""

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

CLAIM_SLACK_S = 5.0
READING_WPM = 250
FAST_FACTOR = 4
FLOOR_S = 1.0
CLIENT, SERVER = "client", "server"
_WORD = re.compile(r"\w+", re.UNICODE)

RULE = (
    "Time spent is the browser's own measure when it lies between 0 and the time since the "
    f"server handed the item out plus {CLAIM_SLACK_S:g} s; otherwise (none given, or longer "
    "than the item was out) it is the server's time from hand-out to answer. An answer is "
    f"flagged too fast when it took under 1/{FAST_FACTOR} of the reading time of what was "
    f"shown at {READING_WPM} words a minute, or under {FLOOR_S:g} s."
)


@dataclass(frozen=True)
class TimeSpent:
    seconds: float  # what is recorded
    source: str  # CLIENT: the browser's measure was kept; SERVER: the server's span
    server_seconds: float
    claimed_seconds: float | None
    words: int
    min_seconds: float  # below this the answer is too fast to have read what was shown
    too_fast: bool

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rule": RULE}


def words_in(value: Any) -> int:
    """Words in every string inside a JSON value (a payload, a prompt and its responses)."""
    if isinstance(value, str):
        return len(_WORD.findall(value))
    if isinstance(value, Mapping):
        return sum(words_in(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(words_in(v) for v in value)
    return 0


def min_reading_seconds(words: int) -> float:
    """The shortest time in which `words` can have been read: see the module docstring."""
    return max(FLOOR_S, words * 60.0 / READING_WPM / FAST_FACTOR)


def time_spent_decide(
    *, claimed: float | None, handed_out_at: datetime, answered_at: datetime, shown: Any
) -> TimeSpent:
    """The time to record for an answer given at `answered_at` on an item handed out at
    `handed_out_at`, the browser claiming `claimed` seconds, `shown` being what the
    person had to read."""
    server = max(0.0, (answered_at - handed_out_at).total_seconds())
    if (
        not isinstance(claimed, int | float)
        or isinstance(claimed, bool)
        or not math.isfinite(claimed)
    ):
        claimed = None
    plausible = claimed is not None and 0 <= claimed <= server + CLAIM_SLACK_S
    seconds = float(claimed) if claimed is not None and plausible else server
    words = words_in(shown)
    floor = min_reading_seconds(words)
    return TimeSpent(
        seconds=seconds,
        source=CLIENT if plausible else SERVER,
        server_seconds=server,
        claimed_seconds=None if claimed is None else float(claimed),
        words=words,
        min_seconds=round(floor, 2),
        too_fast=seconds < floor,
    )
