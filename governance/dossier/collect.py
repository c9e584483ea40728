"""Everything a dossier says. Each app hands over its own part of the version's lineage
through its selectors (`lineage_section`), as JSON-ready rows; this module adds governance's
own facts (declaration, approvals, the audit excerpt, the access log).

`dossier_inputs` gathers the small facts; their canonical hash is the build's cache key. The
heavy part, per-item annotation figures of the snapshots, is read at build time through
annotation's selectors; the snapshots' manifest hashes stand for it in the key. Missing
pieces are reported as missing, never filled in.
"""

import datetime
import hashlib
from typing import Any

from django.db.models import Q

from annotation.selectors import lineage as annotation_lineage
from annotation.selectors.lineage import AnnotationLineage
from core.chain import canonical_json
from core.json_values import json_time
from core.models import AuditCheckpoint, AuditEvent
from evaluation.selectors import lineage as evaluation_lineage
from evaluation.selectors.lineage import EvaluationLineage
from governance.dossier.licenses import license_check
from governance.models import (
    ApprovalPolicy,
    DossierDownload,
    SignOff,
    StageChange,
    UseDeclaration,
    default_required_signoffs,
)
from serving.selectors import lineage as serving_lineage
from training.selectors import ModelVersion
from training.selectors import lineage as training_lineage
from training.selectors.lineage import TrainingLineage

# Bump when the dossier's layout or rendering changes, so cached builds are not reused.
DOSSIER_FORMAT = 4


def lineage_targets(
    training: TrainingLineage, annotation: AnnotationLineage, evaluation: EvaluationLineage
) -> dict[str, list[str]]:
    """Audit target types and ids whose events belong to this lineage's excerpt: what each
    app names as its part, and the sign-offs and declarations of the lineage's versions."""
    version_ids = training.version_ids
    targets = {
        **training.audit_targets,
        **annotation.audit_targets,
        SignOff._meta.label_lower: list(
            SignOff.objects.filter(model_version_id__in=version_ids).values_list("pk", flat=True)
        ),
        UseDeclaration._meta.label_lower: list(
            UseDeclaration.objects.filter(model_version_id__in=version_ids).values_list(
                "pk", flat=True
            )
        ),
        **evaluation.audit_targets,
    }
    return {kind: sorted(str(pk) for pk in ids) for kind, ids in targets.items() if ids}


def audit_excerpt(targets: dict[str, list[str]], *, version_ids: list[int]) -> list[dict[str, Any]]:
    """The events of the given targets, and the stage changes of the lineage's versions
    (`version_ids`), with the hashes a verifier needs, in chain order."""
    query = Q(pk__in=[])
    for kind, ids in targets.items():
        query |= Q(target_type=kind, target_id__in=ids)
    # A stage change's event targets the version it promoted or restored; the versions it
    # archived on the way find it through their StageChange rows.
    query |= Q(
        seq__in=StageChange.objects.filter(
            model_version_id__in=version_ids, audit_seq__isnull=False
        ).values("audit_seq")
    )
    return [
        {**event.payload(), "prev_hash": event.prev_hash, "hash": event.hash}
        for event in AuditEvent.objects.filter(query).order_by("seq")
    ]


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
                "created_at": json_time(s.created_at),
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
                "actor": c.actor.get_username() if c.actor else "the portal",
                "created_at": json_time(c.created_at),
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
        "updated_at": json_time(d.updated_at),
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
            "at": json_time(d.created_at),
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


def lineage_sections(
    version: ModelVersion,
) -> tuple[TrainingLineage, AnnotationLineage, EvaluationLineage]:
    """Each app's part of the version's lineage, read through that app's own selectors."""
    training = training_lineage.lineage_section(version=version)
    annotation = annotation_lineage.lineage_section(snapshot_ids=training.snapshot_ids)
    evaluation = evaluation_lineage.lineage_section(
        model_version_id=version.pk, lineage_version_ids=training.version_ids
    )
    return training, annotation, evaluation


def dossier_inputs(version: ModelVersion, *, signing_key_id: str) -> dict[str, Any]:
    """The small facts of a dossier as JSON-ready data. Its canonical hash is the cache key:
    any change to the lineage, evaluation, approvals or their audit trail changes it."""
    training, annotation, evaluation = lineage_sections(version)
    events = audit_excerpt(
        lineage_targets(training, annotation, evaluation), version_ids=training.version_ids
    )
    anchor = {"seq": events[-1]["seq"], "hash": events[-1]["hash"]} if events else {"seq": 0}
    until = (
        AuditEvent.objects.filter(seq=anchor["seq"]).values_list("created_at", flat=True).first()
    )
    declaration = _declaration(version)
    upstream = [(f"dataset {d['name']}", d["license"]) for d in annotation.datasets] + [
        (f"base model {b['name']}", b["license"]) for b in training.base_models
    ]
    licenses = license_check(
        upstream=upstream,
        declared=declaration["license"] if declaration else None,
        commercial_use=declaration["commercial_use"] if declaration else None,
    )
    return {
        "format": DOSSIER_FORMAT,
        "signing_key_id": signing_key_id,
        "project": {"id": version.project_id, "name": version.project.name},
        "version": training.version,
        "declaration": declaration,
        "lineage": {
            "versions": training.versions,
            "jobs": training.jobs,
            "base_models": training.base_models,
            "snapshots": annotation.snapshots,
            "datasets": annotation.datasets,
            "edges": [list(e) for e in sorted(set(training.edges) | set(annotation.edges))],
        },
        "licenses": [f.as_dict() for f in licenses],
        "evaluation": evaluation.evaluation,
        "approvals": _approvals(version),
        "serving": {"deployments": serving_lineage.lineage_section(version=version).deployments},
        "audit": {
            "head": anchor,
            "as_of": _as_of(events, version),
            "events": events,
            "checkpoint": _latest_checkpoint(),
        },
        "access_log": _access_log(version, until),
    }


def inputs_sha256(inputs: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(inputs)).hexdigest()
