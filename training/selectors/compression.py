"""The compression comparison: a version and the children compressed from it (merge,
quantize, distill) side by side: size, peak memory, speed, latency, cost per million
tokens, quality and the gate. Scoped by project like every training read."""

from dataclasses import dataclass
from typing import Any

from django.conf import settings

from core.models import Project
from training.models import COMPRESSION_KINDS, ModelVersion, TrainingJob
from training.selectors import model_version_get

MISSING = "—"


@dataclass(frozen=True)
class CompressionColumn:
    version: ModelVersion
    role: str  # "parent" or the child's compression kind
    figures: dict[str, Any]  # the measurements (compression_figures' parent/child side)
    gate: dict[str, Any]


@dataclass(frozen=True)
class CompressionFamily:
    parent: ModelVersion
    columns: list[CompressionColumn]
    rows: list[tuple[str, list[str]]]
    jobs: list[TrainingJob]  # compression jobs of the parent still queued or running
    price: dict[str, Any]

    def series(self, key: str) -> tuple[list[str], list[float]]:
        """Column names and one measurement of each, for a bar chart (NaN where missing)."""
        values = [c.figures.get(key) for c in self.columns]
        return (
            [c.version.name for c in self.columns],
            [float(v) if isinstance(v, int | float) else float("nan") for v in values],
        )


def _mib(value: Any) -> str:
    return f"{value / 2**20:.2f} MiB" if isinstance(value, int | float) else MISSING


def _num(value: Any, fmt: str = ".3g", unit: str = "") -> str:
    return f"{value:{fmt}}{unit}" if isinstance(value, int | float) else MISSING


def _gate_text(gate: dict[str, Any]) -> str:
    if not gate:
        return MISSING
    if gate.get("passed") is None:
        return f"{gate.get('status', 'pending')}: {gate.get('reason', '')}".strip(": ")
    low, high = gate["interval"]
    return (
        f"{'pass' if gate['passed'] else 'FAIL'}: drop {gate['drop']:+.3g} "
        f"(95% CI of the change [{low:+.3g}, {high:+.3g}], tolerance {gate['tolerance']:g})"
    )


def compression_family(*, project: Project, version_id: int | str) -> CompressionFamily:
    """`version` (or, for a compressed child, its parent) and its compressed children, oldest
    first. The parent's figures are those its newest measured child took of it."""
    version = model_version_get(project=project, version_id=version_id)
    job = version.job
    if job is not None and job.kind in COMPRESSION_KINDS and version.parent is not None:
        version = version.parent
    children = list(
        ModelVersion.objects.filter(
            project=project, parent=version, job__kind__in=COMPRESSION_KINDS
        )
        .select_related("job")
        .order_by("created_at", "id")
    )
    parent_figures: dict[str, Any] = {}
    for child in reversed(children):
        parent_figures = child.metrics.get("compression", {}).get("parent") or {}
        if parent_figures:
            break
    columns = [CompressionColumn(version, "parent", parent_figures, {})]
    for child in children:
        record = child.metrics.get("compression") or {}
        columns.append(
            CompressionColumn(
                child,
                str(child.job.kind) if child.job else "child",
                record.get("child") or {},
                child.metrics.get("compression_gate") or {},
            )
        )
    rows = [
        ("compression", [c.role for c in columns]),
        ("size on disk", [_mib(c.figures.get("size_bytes")) for c in columns]),
        (
            "peak memory (load + generate)",
            [_mib(c.figures.get("peak_memory_bytes")) for c in columns],
        ),
        ("tokens per second", [_num(c.figures.get("tokens_per_second"), ".1f") for c in columns]),
        (
            "latency per request",
            [_num(c.figures.get("latency_seconds"), ".3f", " s") for c in columns],
        ),
        (
            "cost per 1M tokens",
            [_num(c.figures.get("cost_per_million_tokens"), ".4g") for c in columns],
        ),
        (
            "quality (gate metric)",
            [_num(c.gate.get("child"), ".4f") if c.gate else MISSING for c in columns],
        ),
        (
            "quality of the parent",
            [_num(c.gate.get("parent"), ".4f") if c.gate else MISSING for c in columns],
        ),
        ("compression gate", [_gate_text(c.gate) for c in columns]),
    ]
    running = list(
        TrainingJob.objects.filter(
            project=project, parent_version=version, kind__in=COMPRESSION_KINDS
        )
        .exclude(model_version__isnull=False)
        .order_by("-created_at")[:20]
    )
    return CompressionFamily(
        parent=version,
        columns=columns,
        rows=rows,
        jobs=running,
        price={
            "per_hour": settings.COMPRESSION_PRICE_PER_HOUR,
            "unit": settings.COMPRESSION_PRICE_UNIT,
        },
    )
