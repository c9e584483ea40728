"""What layers above serving plug in. Serving must move a rolled-back canary's version back
a stage, but stage changes belong to governance, which sits above it: governance registers
the function at start-up (its AppConfig.ready) and serving calls it."""

from collections.abc import Callable
from typing import Any

# (version, reason, figures) -> None; moves a canary version back to candidate, audited.
CanaryWithdraw = Callable[..., Any]
_canary_withdraw: list[CanaryWithdraw] = []


def register_canary_withdraw(fn: CanaryWithdraw) -> None:
    _canary_withdraw[:] = [fn]


def canary_withdraw(**kwargs: Any) -> None:
    """Call the registered stage move. Raises RuntimeError when governance registered
    none: a rollback must not pretend it moved the version's stage."""
    if not _canary_withdraw:
        raise RuntimeError("No stage-change service is registered for canary rollbacks.")
    _canary_withdraw[0](**kwargs)
