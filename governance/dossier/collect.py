"""Everything a dossier says, read from the other apps through their models and selectors.

`dossier_inputs` gathers the small facts (lineage, hashes, configs, evaluation, approvals,
the audit excerpt); their canonical hash is the build's cache key. `annotation_figures`
reads the heavy part (per-item annotations of the snapshots), which the snapshots' manifest
hashes already stand for in the key. Missing pieces are reported as missing, never filled in.
"""

import datetime
import hashlib
import math
from collections import Counter, defaultdict
from typing import Any

import numpy as np
from django.db.models import Q

from annotation.agreement import LabelTable, agreement_summary
from annotation.models import (
    Annotation,
    Dataset,
    DatasetUpload,
    GoldLabel,
    Guideline,
    Item,
    LabelSchema,
    SnapshotMember,
    answer_join,
)
from annotation.schemas import agreement_key, metric_level
from annotation.selectors import (
    SyntheticShare,
    dataset_synthetic_shares,
    pseudonym,
    settings_for,
)
from core.chain import canonical_json
from core.models import AuditCheckpoint, AuditEvent
from evaluation import selectors as evaluation_selectors
from evaluation.models import Campaign, Contestant, GateRun, MetricRun
from governance.dossier.licenses import license_check
from governance.models import (
    ApprovalPolicy,
    DossierDownload,
    SignOff,
    StageChange,
    UseDeclaration,
    default_required_signoffs,
)
from training.models import ModelVersion, TrainingJob, TrainingMetric
from training.presets import relevant_settings
from training.selectors import Lineage, model_version_lineage_full

# Bump when the dossier's layout or rendering changes, so cached builds are not reused.
DOSSIER_FORMAT = 3


def _when(value) -> str | None:
    return value.isoformat() if value is not None else None


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity; the dossier writes null for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def lineage_for(version: ModelVersion) -> Lineage:
    """The version and everything it came from, read through training's selector (which
    reads annotation's part through annotation's), as its page and API show it too."""
    return model_version_lineage_full(version=version)


def lineage_targets(lineage: Lineage) -> dict[str, list[str]]:
    """Audit target types and ids whose events belong to this lineage's excerpt."""
    version_ids = [v.pk for v in lineage.versions]
    targets = {
        "training.modelversion": version_ids,
        "training.trainingjob": [j.pk for j in lineage.jobs],
        "training.basemodel": [b.pk for b in lineage.base_models],
        "annotation.snapshot": [s.pk for s in lineage.snapshots],
        "annotation.dataset": [d.pk for d in lineage.datasets],
        "annotation.datasetupload": list(
            DatasetUpload.objects.filter(dataset__in=lineage.datasets).values_list("pk", flat=True)
        ),
        "governance.signoff": list(
            SignOff.objects.filter(model_version_id__in=version_ids).values_list("pk", flat=True)
        ),
        "governance.usedeclaration": list(
            UseDeclaration.objects.filter(model_version_id__in=version_ids).values_list(
                "pk", flat=True
            )
        ),
        "evaluation.gaterun": list(
            GateRun.objects.filter(model_version_id__in=version_ids).values_list("pk", flat=True)
        ),
    }
    return {kind: sorted(str(pk) for pk in ids) for kind, ids in targets.items() if ids}


def audit_excerpt(lineage: Lineage) -> list[dict[str, Any]]:
    """The lineage's audit events with the hashes a verifier needs, in chain order."""
    query = Q(pk__in=[])
    for kind, ids in lineage_targets(lineage).items():
        query |= Q(target_type=kind, target_id__in=ids)
    # A stage change's event targets the version it promoted or restored; the versions it
    # archived on the way find it through their StageChange rows.
    query |= Q(
        seq__in=StageChange.objects.filter(
            model_version_id__in=[v.pk for v in lineage.versions], audit_seq__isnull=False
        ).values("audit_seq")
    )
    return [
        {**event.payload(), "prev_hash": event.prev_hash, "hash": event.hash}
        for event in AuditEvent.objects.filter(query).order_by("seq")
    ]


def _version_row(v: ModelVersion) -> dict[str, Any]:
    return {
        "id": v.pk,
        "name": v.name,
        "kind": str(v.kind),
        "task": str(v.task),
        "stage": str(v.stage),
        "base_model": v.base_model_id,
        "parent": v.parent_id,
        "job": v.job_id,
        "base_weights_sha256": v.base_weights_sha256,
        "checkpoint_sha256": dict(sorted(v.checkpoint_sha256.items())),
        "metrics": _finite(v.metrics),
        "created_at": _when(v.created_at),
    }


def _job_row(job: TrainingJob, snapshot) -> dict[str, Any]:
    curves: dict[str, list[list[float]]] = defaultdict(list)
    for step, values in TrainingMetric.objects.filter(job=job).values_list("step", "values"):
        for name, value in sorted((values or {}).items()):
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            if numeric and math.isfinite(value):
                curves[name].append([step, value])
    return {
        "id": job.pk,
        "name": job.name,
        "kind": str(job.kind),
        "method": str(job.method),
        "status": str(job.status),
        "base_model": job.base_model_id,
        "parent_version": job.parent_version_id,
        "reward_version": job.reward_version_id,
        "snapshot": snapshot.pk if snapshot is not None else None,
        "manifest_sha256": job.manifest_sha256,
        "data": _finite(job.data),
        "config": _finite(job.config),
        # What the report and training/config.yaml show: the settings this kind and method
        # read. `config` above keeps the job's full stored record.
        "settings": _finite(
            dict(sorted(relevant_settings(job.config, kind=job.kind, method=job.method).items()))
        ),
        "seed": job.seed,
        "environment": _finite(job.environment),
        "checkpoint_sha256": dict(sorted(job.checkpoint_sha256.items())),
        "result": _finite(job.result),
        "curves": dict(sorted(curves.items())),
        "created_at": _when(job.created_at),
        "finished_at": _when(job.finished_at),
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
        "created_at": _when(d.created_at),
    }


def _snapshot_row(s) -> dict[str, Any]:
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
        "stats": _finite(s.stats),
        "created_at": _when(s.created_at),
    }


def _evaluation(lineage: Lineage) -> dict[str, Any]:
    version_ids = [lineage.version.pk]
    contestants = list(Contestant.objects.filter(model_version_id__in=version_ids).order_by("pk"))
    metric_runs = (
        MetricRun.objects.filter(contestant__in=contestants, status=MetricRun.Status.SUCCEEDED)
        .select_related("prompt_set", "contestant")
        .order_by("pk")
    )
    campaigns = Campaign.objects.filter(contestants__in=contestants).distinct().order_by("pk")
    ratings = []
    for campaign in campaigns:
        results = evaluation_selectors.campaign_results(campaign=campaign).as_dict()
        results.pop("raters", None)  # reviewer names stay in the portal
        ratings.append(
            {
                **_finite(results),
                "adversarial": campaign.prompt_set.adversarial,
                "status": campaign.status,
            }
        )
    gate_runs = GateRun.objects.filter(model_version_id__in=version_ids).select_related("gate")
    return {
        "contestants": [{"id": c.pk, "label": c.label} for c in contestants],
        "offline_metrics": [
            {
                "id": run.pk,
                "contestant": run.contestant.label,
                "prompt_set": run.prompt_set.name,
                "kind": run.kind,
                "general": run.prompt_set.general,
                "adversarial": run.prompt_set.adversarial,
                "results": _finite(run.results),
                "slices": _finite(run.slices),
                "finished_at": _when(run.finished_at),
            }
            for run in metric_runs
        ],
        "ratings": ratings,
        "gates": [
            {
                "id": run.pk,
                "gate": run.gate.name,
                "passed": run.passed,
                "results": _finite(run.results),
                "created_at": _when(run.created_at),
            }
            for run in gate_runs.order_by("created_at", "pk")
        ],
    }


def _approvals(version: ModelVersion) -> dict[str, Any]:
    policy = ApprovalPolicy.objects.filter(project_id=version.project_id).first()
    required = policy.required if policy else default_required_signoffs()
    return {
        "required": dict(sorted(required.items())),
        "policy_is_default": policy is None,
        "signoffs": [
            {
                "id": s.pk,
                "role": s.role,
                "decision": s.decision,
                "user": s.user.get_username(),
                "comment": s.comment,
                "created_at": _when(s.created_at),
            }
            for s in SignOff.objects.filter(model_version=version).select_related("user")
        ],
        "stage_changes": [
            {
                "version": c.model_version_id,
                "from": c.from_stage,
                "to": c.to_stage,
                "kind": c.kind,
                "gate_run": c.gate_run_id,
                "reason": c.reason,
                "actor": c.actor.get_username(),
                "created_at": _when(c.created_at),
            }
            for c in StageChange.objects.filter(model_version=version).select_related("actor")
        ],
    }


def _declaration(version: ModelVersion) -> dict[str, Any] | None:
    d = UseDeclaration.objects.filter(model_version=version).first()
    if d is None:
        return None
    return {
        "intended_use": d.intended_use,
        "limitations": d.limitations,
        "out_of_scope": d.out_of_scope,
        "license": d.license,
        "commercial_use": d.commercial_use,
        "updated_at": _when(d.updated_at),
    }


def _access_log(version: ModelVersion, until) -> list[dict[str, Any]]:
    downloads = DossierDownload.objects.filter(model_version=version).select_related("user")
    # No anchor event means nothing happened to this lineage yet; nothing to list either.
    downloads = downloads.filter(created_at__lte=until) if until else downloads.none()
    return [
        {
            "user": d.user.get_username(),
            "ip_address": d.ip_address,
            "dossier": d.dossier_id,
            "at": _when(d.created_at),
        }
        for d in downloads.order_by("created_at", "pk")
    ]


def _latest_checkpoint() -> dict[str, Any] | None:
    """The newest signed checkpoint of the whole audit chain: a reader who keeps the dossier
    can later hold the portal's log to it (verify_audit_log --checkpoint)."""
    row = AuditCheckpoint.objects.order_by("-tree_size").first()
    return row.entry() if row else None


def _as_of(events: list[dict[str, Any]], version: ModelVersion) -> str:
    """When the state the dossier describes was reached: the time of the newest audit event
    of the lineage (sign-offs, gate runs and stage changes included), rounded up to the
    second because a PDF date holds whole seconds. Builds are reproducible, so the dossier
    carries this time rather than the moment it was typeset."""
    moment = (
        datetime.datetime.fromisoformat(events[-1]["created_at"]) if events else version.created_at
    )
    if moment.microsecond:
        moment = moment.replace(microsecond=0) + datetime.timedelta(seconds=1)
    return moment.isoformat()


def dossier_inputs(version: ModelVersion, *, signing_key_id: str) -> tuple[dict[str, Any], Lineage]:
    """The small facts of a dossier as JSON-ready data. Its canonical hash is the cache key:
    any change to the lineage, evaluation, approvals or their audit trail changes it."""
    lineage = lineage_for(version)
    events = audit_excerpt(lineage)
    anchor = {"seq": events[-1]["seq"], "hash": events[-1]["hash"]} if events else {"seq": 0}
    until = (
        AuditEvent.objects.filter(seq=anchor["seq"]).values_list("created_at", flat=True).first()
    )
    declaration = _declaration(version)
    shares = dataset_synthetic_shares(dataset_ids=[d.pk for d in lineage.datasets])
    upstream = [(f"dataset {d.name}", d.license) for d in lineage.datasets] + [
        (f"base model {b.name}", b.license) for b in lineage.base_models
    ]
    licenses = license_check(
        upstream=upstream,
        declared=declaration["license"] if declaration else None,
        commercial_use=declaration["commercial_use"] if declaration else None,
    )
    inputs = {
        "format": DOSSIER_FORMAT,
        "signing_key_id": signing_key_id,
        "project": {"id": version.project_id, "name": version.project.name},
        "version": _version_row(version),
        "declaration": declaration,
        "lineage": {
            "versions": [_version_row(v) for v in lineage.versions],
            "jobs": [_job_row(j, lineage.snapshot_by_job.get(j.pk)) for j in lineage.jobs],
            "base_models": [
                {
                    "id": b.pk,
                    "name": b.name,
                    "source": b.source,
                    "architecture": b.architecture,
                    "parameter_count": b.parameter_count,
                    "license": b.license,
                    "weights_sha256": b.weights_sha256,
                }
                for b in lineage.base_models
            ],
            "snapshots": [_snapshot_row(s) for s in lineage.snapshots],
            "datasets": [_dataset_row(d, shares[d.pk]) for d in lineage.datasets],
            "edges": [list(e) for e in lineage.edges],
        },
        "licenses": [f.as_dict() for f in licenses],
        "evaluation": _evaluation(lineage),
        "approvals": _approvals(version),
        "audit": {
            "head": anchor,
            "as_of": _as_of(events, version),
            "events": events,
            "checkpoint": _latest_checkpoint(),
        },
        "access_log": _access_log(version, until),
    }
    return inputs, lineage


def inputs_sha256(inputs: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(inputs)).hexdigest()


def annotation_figures(snapshot, *, annotated_before=None) -> dict[str, Any]:
    """Who labelled the snapshot's items (as pseudonyms), under which schema and guideline
    versions, how well they agreed, and how disagreements were settled. Only answers given
    before the snapshot was taken count, so the figures do not drift afterwards."""
    project = snapshot.project
    settings = settings_for(project)
    members = SnapshotMember.objects.filter(snapshot=snapshot)
    cutoff = annotated_before or snapshot.created_at
    rows = list(
        Annotation.objects.filter(
            item_id__in=members.values("item_id"), undone=False, submitted_at__lte=cutoff
        )
        .order_by("item_id", "annotator_id")
        .values_list("item_id", "annotator_id", "choice", "free_text", "schema_id", "guideline_id")
    )
    rows = [(r[0], r[1], answer_join(r[2], r[3]), *r[4:]) for r in rows]
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


def _agreement(rows, schemas) -> dict[str, Any]:
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


def _summary(table: LabelTable, level: str) -> dict[str, Any]:
    summary = agreement_summary(table, level)
    return _finite(
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


def disagreement_rows(snapshot) -> list[list[str]]:
    """One CSV row per label given to a snapshot item whose annotators disagreed (so a
    contested item has a row for each annotator), annotators as pseudonyms, beside the gold
    label and how it was decided."""
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
