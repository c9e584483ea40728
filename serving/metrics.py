"""The gateway's Prometheus metrics, counted by `telemetry_record` as each request finishes
and served at `/metrics` (serving/views_metrics.py).

Labels are `deployment` (the deployment's id: names could change, ids do not; the
`portal_gateway_deployment_info` series maps each id to its name for PromQL joins),
`version` (the model version's id, or "base" for a base model on the stable arm) and `arm`.
A request is an error when the client got a 5xx, or when the canary failed and stable
answered instead (counted against the canary, as the rollback rules count it).

With several server processes (uvicorn --workers), set PROMETHEUS_MULTIPROC_DIR to an
empty directory, the same for every process, before they start and emptied at each
start: prometheus-client then keeps each process's values in files there and `/metrics`
adds them up (its multiprocess mode). Without it each process serves its own values.
"""

from typing import Any

from prometheus_client import Counter, Histogram

LABELS = ("deployment", "version", "arm")

# Gateway answers: from a few ms (refusals, cache) to minutes (long generations).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

REQUESTS = Counter("portal_gateway_requests", "Requests the gateway answered.", LABELS)
ERRORS = Counter(
    "portal_gateway_errors",
    "Requests answered with a 5xx, or by stable after the canary failed.",
    LABELS,
)
GUARDRAIL_FLAGGED = Counter(
    "portal_gateway_guardrail_flagged_requests",
    "Requests with at least one guardrail flag (input or output).",
    LABELS,
)
INPUT_TOKENS = Counter("portal_gateway_input_tokens", "Prompt tokens.", LABELS)
OUTPUT_TOKENS = Counter("portal_gateway_output_tokens", "Completion tokens.", LABELS)
DURATION = Histogram(
    "portal_gateway_request_duration_seconds",
    "Time from the request's arrival to its last byte.",
    LABELS,
    buckets=LATENCY_BUCKETS,
)
TTFT = Histogram(
    "portal_gateway_time_to_first_token_seconds",
    "Time from the request's arrival to its first token (streamed and plain answers).",
    LABELS,
    buckets=TTFT_BUCKETS,
)
TELEMETRY_DROPPED = Counter(
    "portal_telemetry_dropped_records",
    "Request records never written: the buffer was full, or the database refused a batch.",
    ("reason",),
)


def request_observe(fields: dict[str, Any]) -> None:
    """Count one finished request (a RequestRecord's fields). In-memory (or, in
    multiprocess mode, a memory-mapped file): safe on the request path."""
    version = fields.get("model_version_id")
    labels = (
        str(fields.get("deployment_id", "")),
        "base" if version is None else str(version),
        fields.get("arm", ""),
    )
    requests, errors, flagged, tokens_in, tokens_out, duration, ttft = _children(labels)
    requests.inc()
    if fields.get("status", 200) >= 500 or fields.get("fell_back"):
        errors.inc()
    if fields.get("guardrail_flags"):
        flagged.inc()
    if count := fields.get("tokens_in"):
        tokens_in.inc(count)
    if count := fields.get("tokens_out"):
        tokens_out.inc(count)
    duration.observe(fields.get("latency_ms", 0) / 1000)
    if (ttft_ms := fields.get("ttft_ms")) is not None:
        ttft.observe(ttft_ms / 1000)


_METRICS = (REQUESTS, ERRORS, GUARDRAIL_FLAGGED, INPUT_TOKENS, OUTPUT_TOKENS, DURATION, TTFT)
_by_labels: dict[tuple[str, str, str], tuple[Any, ...]] = {}


def _children(labels: tuple[str, str, str]) -> tuple[Any, ...]:
    """Each metric's child for these labels, looked up once per label set."""
    found = _by_labels.get(labels)
    if found is None:
        found = _by_labels.setdefault(labels, tuple(m.labels(*labels) for m in _METRICS))
    return found


def telemetry_dropped(reason: str, count: int = 1) -> None:
    TELEMETRY_DROPPED.labels(reason).inc(count)
