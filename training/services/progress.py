"""The phase a background job is in and how far it got, as the job page shows it."""

import time
from typing import Any


def progress_next(
    current: dict[str, Any],
    phase: str,
    *,
    label: str | None = None,
    done: int = 0,
    total: int | None = None,
    unit: str = "",
    at: float | None = None,
) -> dict[str, Any]:
    """`current` moved on: to a new phase when `label` is given (or the phase differs),
    else to further progress in the same one. Shape: {phase, label, done, total, unit,
    started_at (epoch seconds)}."""
    if label is not None or current.get("phase") != phase:
        progress = {
            "phase": phase,
            "label": label or phase.replace("_", " ").capitalize(),
            "unit": unit,
            "started_at": at or time.time(),
        }
    else:
        progress = dict(current)
    progress.update(done=done, total=total)
    return progress


def phase_event_fields(event: dict[str, Any]) -> dict[str, Any]:
    """The progress_next keywords a runner's `phase` event carries (all but its phase)."""
    return {
        "label": event.get("label"),
        "done": event.get("done", 0),
        "total": event.get("total"),
        "unit": event.get("unit", ""),
        "at": event.get("time"),
    }
