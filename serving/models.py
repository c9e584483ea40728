"""Serving: deployments of model versions behind the OpenAI-compatible gateway.

A deployment names what the gateway serves under one `model` name: a stable arm (a version
in production, or a base model before any version reached it), optionally a canary arm (a
version in canary, with a traffic weight) and a shadow arm (a copy of traffic, answered to
nobody). Engines are OpenAI-compatible upstreams (`transformers serve`, vLLM, any URL); an
EngineInstance is one upstream serving one model. Every change to a deployment is a
DeploymentDecision (the history the page and the dossier show) and an audit event.
"""

from typing import Any

from django.conf import settings
from django.db import models

from core.fields import EncryptedJSONField


class EngineKind(models.TextChoices):
    TRANSFORMERS = "transformers", "transformers serve (CPU)"
    VLLM = "vllm", "vLLM (GPU)"
    EXTERNAL = "external", "OpenAI-compatible URL"


class Arm(models.TextChoices):
    STABLE = "stable", "Stable"
    CANARY = "canary", "Canary"
    SHADOW = "shadow", "Shadow"


class Deployment(models.Model):
    class Rollout(models.TextChoices):
        # No canary placed.
        NONE = "none", "No canary"
        # The canary takes its weight and steps forward while every rule holds.
        PROGRESSING = "progressing", "Progressing"
        # An engineer paused it: the weight stays, no step forward, rules still roll back.
        PAUSED = "paused", "Paused"
        # The canary reached 100 % and every rule held: ready to promote.
        COMPLETE = "complete", "Complete"
        # Rolled back by a rule breach, or aborted by an engineer: weight 0.
        ROLLED_BACK = "rolled_back", "Rolled back"
        ABORTED = "aborted", "Aborted"

    class Logging(models.TextChoices):
        OFF = "off", "Off: no content stored"
        SAMPLED = "sampled", "A sampled percentage"
        ALL = "all", "All requests"

    project = models.ForeignKey("core.Project", on_delete=models.PROTECT, related_name="+")
    # The `model` clients name in their requests; unique across the site (the gateway
    # resolves it before it knows the project).
    name = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    engine = models.CharField(
        max_length=20, choices=EngineKind.choices, default=EngineKind.TRANSFORMERS
    )
    # Cost estimates: either price may be 0.
    price_per_1k_tokens = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    price_per_gpu_hour = models.DecimalField(max_digits=12, decimal_places=4, default=0)

    # The stable arm: a version in production, or (before one exists) a base model.
    stable_version = models.ForeignKey(
        "training.ModelVersion", on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    stable_base_model = models.ForeignKey(
        "training.BaseModel", on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    canary_version = models.ForeignKey(
        "training.ModelVersion", on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    canary_weight = models.PositiveSmallIntegerField(default=0)  # percent of traffic
    shadow_version = models.ForeignKey(
        "training.ModelVersion", on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    rollout = models.CharField(max_length=20, choices=Rollout.choices, default=Rollout.NONE)
    # The weights a progressing canary steps through, one per window in which every rule held.
    rollout_steps = models.JSONField(default=list, blank=True)
    rollout_step_at = models.DateTimeField(null=True, blank=True)

    # {"pii": "off"|"redact"|"refuse", "blocklist": [regex, ...], "blocklist_action":
    #  "refuse"|"redact", "classifier_version_id": int|None, "classifier_threshold": float}
    guardrails = models.JSONField(default=dict, blank=True)
    logging_policy = models.CharField(max_length=10, choices=Logging.choices, default=Logging.OFF)
    logging_sample_percent = models.PositiveSmallIntegerField(default=0)
    retention_days = models.PositiveIntegerField(default=30)
    # {"window_s": 300, "min_requests": 50, "error_rate": 0.05, "p95_ms": ..., "flag_rate": ...,
    #  "negative_feedback_rate": ...}: each threshold is an allowed excess of the canary over
    #  stable; a missing or null threshold is not checked.
    rollback_rules = models.JSONField(default=dict, blank=True)
    webhook_url = models.URLField(blank=True)
    # Held encrypted: a webhook secret is a credential.
    webhook_secret = EncryptedJSONField(null=True, blank=True)

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(canary_weight__lte=100), name="deployment_weight_percent"
            ),
            models.CheckConstraint(
                condition=models.Q(logging_sample_percent__lte=100),
                name="deployment_sample_percent",
            ),
            models.CheckConstraint(
                condition=~(
                    models.Q(stable_version__isnull=False)
                    & models.Q(stable_base_model__isnull=False)
                ),
                name="deployment_one_stable",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class EngineInstance(models.Model):
    """One OpenAI-compatible upstream serving one model: started and health-checked by the
    serving worker (transformers serve), or registered with its URL (vLLM, external)."""

    class Status(models.TextChoices):
        STARTING = "starting", "Starting"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"
        STOPPED = "stopped", "Stopped"

    project = models.ForeignKey("core.Project", on_delete=models.PROTECT, related_name="+")
    engine = models.CharField(max_length=20, choices=EngineKind.choices)
    model_version = models.ForeignKey(
        "training.ModelVersion", on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    base_model = models.ForeignKey(
        "training.BaseModel", on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    base_url = models.URLField(blank=True)  # ends in /v1
    # The name the upstream knows the model by (the `model` field sent upstream).
    served_model = models.CharField(max_length=500, blank=True)
    model_dir = models.CharField(max_length=500, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.STARTING)
    pid = models.IntegerField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    healthy_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(model_version__isnull=True) ^ models.Q(base_model__isnull=True),
                name="engineinstance_one_model",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.engine} {self.served_model or self.pk}"


class DeploymentKey(models.Model):
    """A gateway key: only its SHA-256 is stored (the secret is shown once); it opens this
    deployment's gateway endpoints and nothing else of the portal."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16)
    key_hash = models.CharField(max_length=64, unique=True)
    # Per-minute limits held in Redis; 0 means no limit.
    requests_per_minute = models.PositiveIntegerField(default=0)
    tokens_per_minute = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name})"


class RequestRecord(models.Model):
    """One gateway request's telemetry, written in batches off the request path. `content`
    is stored only when the deployment's logging policy selected the request, encrypted,
    and cleared after the policy's retention days."""

    request_id = models.CharField(max_length=64, unique=True)
    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="+")
    # Ids without foreign keys: telemetry must insert fast and outlive nothing it names.
    model_version_id = models.BigIntegerField(null=True, blank=True)
    key_id = models.BigIntegerField(null=True, blank=True)
    arm = models.CharField(max_length=10, choices=Arm.choices)
    endpoint = models.CharField(max_length=40)  # "chat.completions", "completions"
    stream = models.BooleanField(default=False)
    status = models.PositiveSmallIntegerField()  # the HTTP status the client got
    error = models.CharField(max_length=200, blank=True)
    # The canary failed and stable answered instead: counted against the canary.
    fell_back = models.BooleanField(default=False)
    latency_ms = models.FloatField()
    ttft_ms = models.FloatField(null=True, blank=True)
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    cost = models.FloatField(default=0)
    guardrail_flags = models.JSONField(default=list, blank=True)
    end_user = models.CharField(max_length=64, blank=True)  # a keyed hash, never the raw id
    content = EncryptedJSONField(null=True, blank=True)
    content_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["deployment", "created_at"]),
            models.Index(fields=["content_expires_at"]),
        ]

    def __str__(self) -> str:
        return self.request_id


class Feedback(models.Model):
    """An end user's judgment of one answer, sent through the gateway (`/v1/feedback`)."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="+")
    request_id = models.CharField(max_length=64, db_index=True)
    # Thumbs up = 1, down = -1, or a score in [-1, 1]; negative counts as negative feedback.
    score = models.FloatField()
    comment = EncryptedJSONField(null=True, blank=True)
    key_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["deployment", "created_at"])]

    def __str__(self) -> str:
        return f"{self.request_id}: {self.score}"


class DeploymentDecision(models.Model):
    """One change to a deployment and the figures that drove it: placements, weights,
    pauses, rollbacks and steps forward. The page and the dossier show these."""

    class Kind(models.TextChoices):
        CREATE = "create", "Created"
        PLACE = "place", "Placed"
        REWEIGHT = "reweight", "Reweighted"
        STEP = "step", "Stepped forward"
        PAUSE = "pause", "Paused"
        RESUME = "resume", "Resumed"
        ABORT = "abort", "Aborted"
        ROLLBACK = "rollback", "Rolled back automatically"
        SETTINGS = "settings", "Settings changed"

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="decisions")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    arm = models.CharField(max_length=10, choices=Arm.choices, blank=True)
    model_version = models.ForeignKey(
        "training.ModelVersion", on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    from_weight = models.PositiveSmallIntegerField(null=True, blank=True)
    to_weight = models.PositiveSmallIntegerField(null=True, blank=True)
    reason = models.TextField(blank=True)
    figures = models.JSONField(default=dict, blank=True)
    # None for the portal's own decisions (the rollback rules).
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True
    )
    audit_seq = models.BigIntegerField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.deployment_id} {self.kind}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "arm": self.arm,
            "model_version_id": self.model_version_id,
            "from_weight": self.from_weight,
            "to_weight": self.to_weight,
            "reason": self.reason,
            "figures": self.figures,
            "at": self.created_at.isoformat() if self.created_at else None,
        }
