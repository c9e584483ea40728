"""Values made ready for JSON the same way wherever a record leaves the portal (the dossier's
sections are built by several apps and must agree byte for byte)."""

import datetime
import math
from typing import Any


def json_finite(value: Any) -> Any:
    """`value` with NaN and infinities as None, which JSON has no words for, and tuples
    as lists; dicts and lists are copied, everything else is returned as is."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_finite(v) for v in value]
    return value


def json_time(value: datetime.datetime | datetime.date | None) -> str | None:
    return value.isoformat() if value is not None else None
