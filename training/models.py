"""Base models, training jobs with their live metrics and checkpoints, and the model registry.

A job moves queued -> preflight -> running -> succeeded | failed | cancelled (the lifecycle
every background job shares: core.services.jobs); only a worker moves it forward, and a
person can only ask for a cancel, which the worker turns into a stop of its child process.
"""

from django.conf import settings
from django.db import models

from core.models import BackgroundJob
from training.models_sweep import Sweep, SweepTrial  # noqa: F401 - registered with the app


class BaseModel(models.Model):
    """A pretrained model jobs start from. `project` None means every project may use it."""

    class Source(models.TextChoices):
        PACKAGE = "package", "Packaged (PyPI)"
        LOCAL = "local", "Local directory"
        HUB = "hub", "Hub id"

    project = models.ForeignKey(
        "core.Project",
        on_delete=models.PROTECT,
        related_name="base_models",
        null=True,
        blank=True,
    )
    name = models.CharField(max_length=200)
    source = models.CharField(max_length=10, choices=Source.choices)
    # A directory in Hugging Face format (for a package, the converted safetensors cache).
    path = models.CharField(max_length=500)
    architecture = models.CharField(max_length=100)
    parameter_count = models.BigIntegerField()
    tokenizer = models.CharField(max_length=100)
    chat_template = models.TextField(blank=True)
    license = models.CharField(max_length=100, blank=True)
    weights_sha256 = models.CharField(max_length=64)
    # What validation needs without loading weights: module names, layer count, lengths.
    info = models.JSONField(default=dict)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "name"],
                name="basemodel_unique_name_per_project",
            ),
            models.UniqueConstraint(
                fields=["name"],
                condition=models.Q(project__isnull=True),
                name="basemodel_unique_global_name",
            ),
            models.CheckConstraint(
                condition=models.Q(source__in=["package", "local", "hub"]),
                name="basemodel_source_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class BaseModelRegistration(BackgroundJob):
    """Registering a base model, as a background job: reading a model (and converting the
    packaged GGUF first, about a minute on a CPU) is too long for a web request. The
    BaseModel row is written only at the end, with the registration's success, so a
    registration cut short leaves no half-registered model."""

    job_noun = "base model registration"

    # The project it was asked from (its page shows the progress); the model itself is
    # global when `packaged`, else the project's own.
    project = models.ForeignKey("core.Project", on_delete=models.PROTECT, related_name="+")
    name = models.CharField(max_length=200)
    source = models.CharField(max_length=10, choices=BaseModel.Source.choices)
    path = models.CharField(max_length=500)
    license = models.CharField(max_length=100, blank=True)
    packaged = models.BooleanField(default=False)
    # {phase, label, done, total, unit, started_at}, as a training job's.
    progress = models.JSONField(default=dict)
    base_model = models.ForeignKey(
        BaseModel, on_delete=models.PROTECT, related_name="registrations", null=True, blank=True
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True
    )

    class Meta(BackgroundJob.Meta):
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"registering {self.name} ({self.status})"


class JobKind(models.TextChoices):
    SFT = "sft", "Supervised fine-tuning"
    REWARD = "reward", "Reward model"
    DPO = "dpo", "DPO (direct preference)"
    GRPO = "grpo", "GRPO against a reward model"
    # Compression of a registered version (training/ml/compress.py); the job's parent_version
    # is the version compressed (for distill: the teacher; the student is the base model).
    MERGE = "merge", "Merge an adapter into its base"
    QUANTIZE = "quantize", "Post-training quantization"
    DISTILL = "distill", "Distillation from a teacher"


COMPRESSION_KINDS = (JobKind.MERGE, JobKind.QUANTIZE, JobKind.DISTILL)


class JobMethod(models.TextChoices):
    FULL = "full", "Full fine-tuning"
    PARTIAL = "partial", "Partial (last layers / head)"
    LORA = "lora", "LoRA adapter"
    PROMPT_TUNING = "prompt_tuning", "Prompt tuning"


# Above this share of truncated training rows the job page warns (a few long outliers don't).
TRUNCATION_WARN_SHARE = 0.05


class TrainingJob(BackgroundJob):
    job_noun = "training job"
    audit_prefix = "training.job"

    project = models.ForeignKey(
        "core.Project", on_delete=models.PROTECT, related_name="training_jobs"
    )
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=10, choices=JobKind.choices)
    method = models.CharField(max_length=20, choices=JobMethod.choices)
    base_model = models.ForeignKey(BaseModel, on_delete=models.PROTECT, related_name="jobs")
    # Train from an earlier version (e.g. DPO on top of an SFT adapter): lineage.
    parent_version = models.ForeignKey(
        "ModelVersion", on_delete=models.PROTECT, related_name="child_jobs", null=True, blank=True
    )
    # GRPO scores its completions with this reward model.
    reward_version = models.ForeignKey(
        "ModelVersion", on_delete=models.PROTECT, related_name="scored_jobs", null=True, blank=True
    )
    resumed_from = models.ForeignKey(
        "self", on_delete=models.PROTECT, related_name="resumptions", null=True, blank=True
    )
    # The immutable snapshot the job trains on (exported by the worker); None for a job
    # trained on uploaded JSONL files.
    snapshot = models.ForeignKey(
        "annotation.Snapshot",
        on_delete=models.PROTECT,
        related_name="training_jobs",
        null=True,
        blank=True,
    )
    manifest_sha256 = models.CharField(max_length=64, blank=True)
    # The JSONL files the runner reads and their hashes (export of the snapshot, or a file).
    data = models.JSONField(default=dict)
    config = models.JSONField(default=dict)
    seed = models.IntegerField(default=0)
    preflight = models.JSONField(default=dict)
    # The phase the job is in and how far it got: {phase, label, done, total, unit,
    # started_at (epoch seconds)}; the last one stays after the job ends.
    progress = models.JSONField(default=dict)
    environment = models.JSONField(default=dict)
    checkpoint_sha256 = models.JSONField(default=dict)
    result = models.JSONField(default=dict)
    # Where the job is mirrored outside the portal (which stays the source of truth):
    # {"mlflow": {run_id, experiment_id, url}, "wandb": {url}}.
    tracking = models.JSONField(default=dict)
    workdir = models.CharField(max_length=500, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    runner_pid = models.IntegerField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta(BackgroundJob.Meta):
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "status"])]
        constraints = [
            *BackgroundJob.Meta.constraints,
            models.CheckConstraint(
                condition=models.Q(kind__in=JobKind.values), name="trainingjob_kind_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(method__in=JobMethod.values), name="trainingjob_method_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"

    @classmethod
    def heartbeat_stale_seconds(cls) -> float | None:
        # The worker beats every 2 s (services.execution.HEARTBEAT_S).
        return settings.TRAINING_HEARTBEAT_STALE_SECONDS

    def lost_error(self, reason: str) -> str:
        """Unlike other kinds, a lost training job keeps its checkpoints: the sweep's hook
        (services.jobs.training_job_lost) adds which one it resumed or can resume from."""
        return f"The worker running this training job {reason}."

    @property
    def is_peft(self) -> bool:
        return self.method in (JobMethod.LORA, JobMethod.PROMPT_TUNING)

    @property
    def truncation_warning(self) -> str:
        """Set when pre-flight found more than TRUNCATION_WARN_SHARE of the training rows
        longer than max_length: the model then learns from cut-off examples, which the
        runner's one log line left easy to miss."""
        rows = int(self.preflight.get("rows") or 0)
        cut = int(self.preflight.get("rows_truncated") or 0)
        if not rows or cut / rows <= TRUNCATION_WARN_SHARE:
            return ""
        longest = self.preflight.get("max_tokens_per_row")
        limit = self.config.get("max_length")
        return (
            f"{cut} of {rows} training rows ({cut / rows:.0%}) are longer than max_length="
            f"{limit} tokens (longest {longest}) and were truncated: raise max_length or "
            "shorten the data."
        )


class TrainingMetric(models.Model):
    """One logging step of a job: loss, learning rate, eval figures... as the runner sent them."""

    job = models.ForeignKey(TrainingJob, on_delete=models.CASCADE, related_name="metrics")
    step = models.IntegerField()
    epoch = models.FloatField(null=True)
    values = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["job_id", "step", "id"]
        indexes = [models.Index(fields=["job", "step"])]

    def __str__(self) -> str:
        return f"{self.job_id}@{self.step}"


class TrainingLogLine(models.Model):
    job = models.ForeignKey(TrainingJob, on_delete=models.CASCADE, related_name="log_lines")
    level = models.CharField(max_length=10, default="info")
    message = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["job_id", "id"]

    def __str__(self) -> str:
        return self.message[:80]


class TrainingCheckpoint(models.Model):
    job = models.ForeignKey(TrainingJob, on_delete=models.CASCADE, related_name="checkpoints")
    step = models.IntegerField()
    path = models.CharField(max_length=500)
    files = models.JSONField(default=dict)  # {relative path: sha256}
    metrics = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["job_id", "step"]
        constraints = [
            models.UniqueConstraint(fields=["job", "step"], name="checkpoint_unique_step")
        ]

    def __str__(self) -> str:
        return f"{self.job_id} checkpoint {self.step}"


class ModelVersion(models.Model):
    """A trained model in the registry: an adapter over `base_model` or full weights."""

    class Kind(models.TextChoices):
        ADAPTER = "adapter", "Adapter"
        FULL = "full", "Full weights"

    class Stage(models.TextChoices):
        CANDIDATE = "candidate", "Candidate"
        CANARY = "canary", "Canary"
        PRODUCTION = "production", "Production"
        ARCHIVED = "archived", "Archived"

    project = models.ForeignKey(
        "core.Project", on_delete=models.PROTECT, related_name="model_versions"
    )
    name = models.CharField(max_length=200)
    base_model = models.ForeignKey(BaseModel, on_delete=models.PROTECT, related_name="versions")
    job = models.OneToOneField(
        TrainingJob, on_delete=models.PROTECT, related_name="model_version", null=True, blank=True
    )
    parent = models.ForeignKey(
        "self", on_delete=models.PROTECT, related_name="children", null=True, blank=True
    )
    kind = models.CharField(max_length=10, choices=Kind.choices)
    # What the weights are for: a causal LM ("sft", "dpo", "grpo") or a scorer ("reward").
    task = models.CharField(max_length=10, choices=JobKind.choices, default=JobKind.SFT)
    path = models.CharField(max_length=500)
    merged_path = models.CharField(max_length=500, blank=True)
    # An adapter fits exactly the base weights it was trained on.
    base_weights_sha256 = models.CharField(max_length=64)
    checkpoint_sha256 = models.JSONField(default=dict)
    metrics = models.JSONField(default=dict)
    stage = models.CharField(max_length=12, choices=Stage.choices, default=Stage.CANDIDATE)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="modelversion_unique_name"),
            models.CheckConstraint(
                condition=models.Q(stage__in=["candidate", "canary", "production", "archived"]),
                name="modelversion_stage_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.name
