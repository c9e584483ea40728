"""Telemetry and feedback rows made directly, for the rollout rules to read."""

import itertools
import uuid
from datetime import timedelta

from django.utils import timezone

from serving.models import Feedback, RequestRecord
from serving.services.deployments import deployment_place
from tests.serving.factories import deployment, version

_n = itertools.count(1)


def canary_deployment(project, engineer, *, weight=10, **rules):
    """A deployment with a canary progressing at `weight` and the given rollback rules."""
    dep = deployment(
        project,
        engineer,
        rollback_rules={"window_s": 300, "min_requests": 20, **rules},
    )
    canary = version(project, stage="canary")
    return deployment_place(
        actor=engineer, deployment=dep, arm="canary", version=canary, weight=weight
    )


def requests(
    dep, arm, count, *, errors=0, latency_ms=100.0, flagged=0, fell_back=0, ago_s=10, at=None
):
    """`count` requests on `arm` made `ago_s` seconds ago: the first `errors` answered 500,
    the first `flagged` carry a guardrail flag, the first `fell_back` fell back to stable.
    `at` (a time) replaces `ago_s`."""
    at = at or timezone.now() - timedelta(seconds=ago_s)
    rows = [
        RequestRecord(
            request_id=f"req-{uuid.uuid4().hex}",
            deployment=dep,
            model_version_id=dep.canary_version_id if arm == "canary" else dep.stable_version_id,
            arm=arm,
            endpoint="chat.completions",
            status=500 if i < errors else 200,
            fell_back=i < fell_back,
            latency_ms=latency_ms + next(_n) % 5,
            guardrail_flags=[{"kind": "pii", "where": "input"}] if i < flagged else [],
            created_at=at,
        )
        for i in range(count)
    ]
    return RequestRecord.objects.bulk_create(rows)


def feedback(dep, rows, score):
    Feedback.objects.bulk_create(
        Feedback(deployment=dep, request_id=r.request_id, score=score) for r in rows
    )
