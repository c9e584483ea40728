"""Annotation's part of a model version's lineage, as the deployment dossier records it: the
snapshots a version was trained on, the datasets their items came from, and who labelled
those items and how well they agreed. Plain JSON-ready data; the dossier reads annotation
only through these functions.

Unscoped: the caller (the dossier build) reached the snapshots through a model version it
has scoped already.
"""

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from annotation.agreement import LabelTable, Level, agreement_summary
from annotation.models import (
    Annotation,
    Dataset,
    DatasetUpload,
    GoldLabel,
    Guideline,
    Item,
    LabelSchema,
    Snapshot,
    SnapshotMember,
    answer_join,
)
from annotation.schemas import agreement_key, metric_level
from annotation.selectors import (
    SyntheticShare,
    dataset_synthetic_shares,
    pseudonym,
    settings_for,
    snapshot_sources,
)
from core.chain import canonical_json
from core.json_values import json_finite, json_time


@dataclass(frozen=True)
class AnnotationLineage:
    snapshots: list[dict[str, Any]]  # the dossier's lineage.snapshots rows, in id order
    datasets: list[dict[str, Any]]  # its lineage.datasets rows, in id order
    edges: list[tuple[str, str, str]]  # ("dataset:<pk>", "snapshot:<pk>", "items")
    # Audit target type -> ids whose events belong to the dossier's audit excerpt (an
    # upload's id is a UUID).
    audit_targets: dict[str, list[Any]]


def _snapshot_row(s: Snapshot) -> dict[str, Any]:
    return {
        "id": s.pk,
        "name": s.name,
        "version": s.version,
        "task_type": s.task_type,
        "seed": s.seed,
        "split_ratios": s.split_ratios,
        "filter": s.filter,
        "member_count": s.member_count,
        "manifest_sha256": s.manifest_sha256,
        "stats": json_finite(s.stats),
        "created_at": json_time(s.created_at),
    }


def _dataset_row(d: Dataset, share: SyntheticShare) -> dict[str, Any]:
    return {
        "id": d.pk,
        "name": d.name,
        "file_name": d.file_name,
        "file_format": d.file_format,
        "file_sha256": d.file_sha256,
        "file_bytes": d.file_bytes,
        "rows": d.row_count,
        "source_description": d.source_description,
        "license": d.license,
        "consent_basis": d.consent_basis,
        "collection_date": d.collection_date.isoformat(),
        "synthetic": d.synthetic,
        # Provenance per field: most preference data is human prompts with model answers.
        "prompt_synthetic": d.prompt_synthetic,
        "response_synthetic": d.response_synthetic,
        "synthetic_share": share.as_dict(),
        "created_at": json_time(d.created_at),
    }


def lineage_section(*, snapshot_ids: list[int]) -> AnnotationLineage:
    """The given snapshots (those a version's training jobs read) and their source
    datasets with provenance, license and synthetic share."""
    snapshots = list(Snapshot.objects.filter(pk__in=snapshot_ids).order_by("pk"))
    pairs, datasets = snapshot_sources(snapshot_ids=[s.pk for s in snapshots])
    shares = dataset_synthetic_shares(dataset_ids=[d.pk for d in datasets])
    uploads = DatasetUpload.objects.filter(dataset__in=datasets).values_list("pk", flat=True)
    return AnnotationLineage(
        snapshots=[_snapshot_row(s) for s in snapshots],
        datasets=[_dataset_row(d, shares[d.pk]) for d in datasets],
        edges=[(f"dataset:{d}", f"snapshot:{s}", "items") for s, d in pairs],
        audit_targets={
            Snapshot._meta.label_lower: [s.pk for s in snapshots],
            Dataset._meta.label_lower: [d.pk for d in datasets],
            DatasetUpload._meta.label_lower: list(uploads),
        },
    )


def snapshot_figures(
    *, snapshot_id: int, annotated_before: datetime | None = None
) -> dict[str, Any]:
    """Who labelled the snapshot's items (as pseudonyms), under which schema and guideline
    versions, how well they agreed, and how disagreements were settled. Only answers given
    before the snapshot was taken count, so the figures do not drift afterwards."""
    snapshot = Snapshot.objects.select_related("project").get(pk=snapshot_id)
    settings = settings_for(snapshot.project)
    members = SnapshotMember.objects.filter(snapshot=snapshot)
    cutoff = annotated_before or snapshot.created_at
    answers = (
        Annotation.objects.filter(
            item_id__in=members.values("item_id"), undone=False, submitted_at__lte=cutoff
        )
        .order_by("item_id", "annotator_id")
        .values_list("item_id", "annotator_id", "choice", "free_text", "schema_id", "guideline_id")
    )
    rows = [(r[0], r[1], answer_join(r[2], r[3]), *r[4:]) for r in answers]
    schemas = {
        s.pk: s for s in LabelSchema.objects.filter(pk__in={r[3] for r in rows}).order_by("pk")
    }
    guideline_versions = dict(
        Guideline.objects.filter(pk__in={r[4] for r in rows if r[4]}).values_list("pk", "version")
    )
    per_annotator = Counter(r[1] for r in rows)
    member_rows = list(members.values_list("split", "method"))
    methods = Counter(method for _, method in member_rows)
    figures: dict[str, Any] = {
        "snapshot": snapshot.pk,
        "items": len(member_rows),
        "splits": dict(sorted(Counter(split for split, _ in member_rows).items())),
        "gold_methods": dict(sorted(methods.items())),
        "annotations": len(rows),
        "annotators": len(per_annotator),
        "labels_per_annotator": sorted(
            ([pseudonym(settings, a), n] for a, n in per_annotator.items()),
            key=lambda pair: (-pair[1], pair[0]),
        ),
        "schema_versions": sorted({(schemas[r[3]].version, schemas[r[3]].task_type) for r in rows}),
        "guideline_versions": sorted(
            dict(Counter(guideline_versions.get(r[4]) for r in rows if r[4])).items()
        ),
        # As the snapshot recorded it, not as the gold label may read since.
        "adjudicated": methods[GoldLabel.Method.ADJUDICATED],
        "agreement": _agreement(rows, schemas),
    }
    figures["schema_versions"] = [list(v) for v in figures["schema_versions"]]
    figures["guideline_versions"] = [list(v) for v in figures["guideline_versions"]]
    return figures


def _agreement(rows: Sequence[tuple[Any, ...]], schemas: dict[int, LabelSchema]) -> dict[str, Any]:
    """Krippendorff's alpha (and Fleiss' kappa for nominal answers) per measured question."""
    if not rows:
        return {}
    task_type = schemas[rows[0][3]].task_type
    level = metric_level(task_type, schemas[rows[0][3]].config)
    if level is None:
        return {"level": None, "note": f"agreement is not measured for {task_type} tasks"}
    items: dict[int, int] = {}
    annotators: dict[int, int] = {}
    item_index = np.fromiter((items.setdefault(r[0], len(items)) for r in rows), np.int64)
    annotator_index = np.fromiter(
        (annotators.setdefault(r[1], len(annotators)) for r in rows), np.int64
    )
    questions: dict[str, Any] = {}
    if level == "interval":
        criteria = sorted({c for r in rows for c in (r[2].get("ratings") or {})})
        for criterion in criteria:
            keep = [i for i, r in enumerate(rows) if criterion in (r[2].get("ratings") or {})]
            table = LabelTable(
                item=item_index[keep],
                annotator=annotator_index[keep],
                value=np.asarray([float(rows[i][2]["ratings"][criterion]) for i in keep]),
            )
            questions[criterion] = _summary(table, level)
    else:
        codes: dict[Any, int] = {}
        values = np.fromiter(
            (codes.setdefault(agreement_key(task_type, r[2]), len(codes)) for r in rows),
            np.int64,
        )
        table = LabelTable(
            item=item_index, annotator=annotator_index, value=values, n_categories=len(codes)
        )
        questions["answer"] = _summary(table, level)
    return {"level": level, "questions": questions}


def _summary(table: LabelTable, level: Level) -> dict[str, Any]:
    summary = agreement_summary(table, level)
    return json_finite(
        {k: summary[k] for k in ("level", "labels", "items", "annotators", "alpha", "fleiss")}
    )


def label_text(task_type: str, value: Any) -> str:
    """An answer as the plain words a spreadsheet cell holds: what agreement compares (the
    chosen labels, the match, the preferred response, the ratings), not its JSON."""
    if value is None:
        return ""
    try:
        key = agreement_key(task_type, value)
    except (KeyError, TypeError, ValueError):
        return canonical_json(value).decode()
    if isinstance(key, tuple):
        return "; ".join("=".join(map(str, k)) if isinstance(k, tuple) else str(k) for k in key)
    return str(key)


def snapshot_disagreement_rows(*, snapshot_id: int) -> list[list[str]]:
    """One CSV row per label given to a snapshot item whose annotators disagreed (so a
    contested item has a row for each annotator), annotators as pseudonyms, beside the gold
    label and how it was decided."""
    snapshot = Snapshot.objects.select_related("project").get(pk=snapshot_id)
    settings = settings_for(snapshot.project)
    # The contested items' ids are read first and passed as a list, not as a subquery: the
    # planner knows a list's length, while a snapshot built since the table was last
    # analysed looks empty to it, and a join planned for an empty snapshot took 22 s for
    # 100,000 items (tests/bench/test_dossier_bench.py after the 1M-item benches).
    contested = list(
        SnapshotMember.objects.filter(snapshot=snapshot)
        .exclude(method=GoldLabel.Method.UNANIMOUS)
        .values_list("item_id", flat=True)
    )
    golds = GoldLabel.objects.filter(item_id__in=contested).exclude(
        method=GoldLabel.Method.UNANIMOUS
    )
    gold_by_item = {
        item_id: (method, answer_join(choice, free_text), decided_by, reason)
        for item_id, method, choice, free_text, decided_by, reason in golds.values_list(
            "item_id", "method", "choice", "free_text", "decided_by_id", "reason"
        )
    }
    if not gold_by_item:
        return []
    labels: dict[int, list[tuple[str, Any]]] = defaultdict(list)
    for item_id, annotator_id, choice, free_text in (
        Annotation.objects.filter(
            item_id__in=list(gold_by_item), undone=False, submitted_at__lte=snapshot.created_at
        )
        .order_by("item_id", "annotator_id")
        .values_list("item_id", "annotator_id", "choice", "free_text")
    ):
        labels[item_id].append((pseudonym(settings, annotator_id), answer_join(choice, free_text)))
    external = dict(Item.objects.filter(pk__in=list(gold_by_item)).values_list("pk", "external_id"))
    task_type = snapshot.task_type
    out = []
    for item_id in sorted(gold_by_item):
        method, value, decided_by, reason = gold_by_item[item_id]
        gold = label_text(task_type, value)
        decider = pseudonym(settings, decided_by) if decided_by else ""
        for annotator, answer in sorted(labels[item_id], key=lambda p: p[0]):
            out.append(
                [
                    str(snapshot.pk),
                    str(item_id),
                    external.get(item_id, ""),
                    annotator,
                    label_text(task_type, answer),
                    gold,
                    method,
                    decider,
                    reason,
                ]
            )
    return out
