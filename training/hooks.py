"""Callbacks that apps above training register to react to its events; training never
imports them (the layers contract). Each callback runs inside the transaction of the event,
so one that starts work does it with `transaction.on_commit`."""

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from training.models import ModelVersion

VersionCallback = Callable[["ModelVersion"], None]

_version_created: list[VersionCallback] = []


def version_created_register(callback: VersionCallback) -> None:
    """Call `callback(version)` for every model version the registry creates (evaluation
    registers its automatic compression evaluation here, from its AppConfig.ready)."""
    if callback not in _version_created:
        _version_created.append(callback)


def version_created_notify(version: "ModelVersion") -> None:
    for callback in list(_version_created):
        callback(version)
