"""Telemetry rows made directly, at chosen times, for the charts' and the series' tests."""

import itertools
import uuid
from datetime import timedelta

from django.utils import timezone

from serving.models import RequestRecord

_n = itertools.count(1)


def record(deployment, *, arm="stable", ago_s=30.0, latency_ms=100.0, status=200, **fields):
    values = {
        "request_id": f"req-{next(_n)}-{uuid.uuid4().hex[:8]}",
        "deployment": deployment,
        "model_version_id": None,
        "arm": arm,
        "endpoint": "chat.completions",
        "status": status,
        "latency_ms": latency_ms,
        "tokens_in": 10,
        "tokens_out": 20,
        "cost": 0.001,
        "created_at": timezone.now() - timedelta(seconds=ago_s),
    }
    return RequestRecord.objects.create(**(values | fields))
