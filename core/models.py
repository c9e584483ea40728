from typing import Any, ClassVar

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models

from core.chain import GENESIS_HASH, event_hash
from core.checkpoint import CHECKPOINT_FORMAT

# The audit log names a target by its model's label. These models moved here from `portal`
# and `governance` (issue 19); the append-only log keeps the names it has always used.
AUDIT_TARGET_TYPES = {
    "core.user": "portal.user",
    "core.project": "portal.project",
    "core.membership": "portal.membership",
    "core.apikey": "portal.apikey",
    "core.sitesettings": "portal.sitesettings",
    "core.auditevent": "governance.auditevent",
    "core.auditchainhead": "governance.auditchainhead",
    "core.auditcheckpoint": "governance.auditcheckpoint",
}


def audit_target_type(target: models.Model) -> str:
    label = target._meta.label_lower
    return AUDIT_TARGET_TYPES.get(label, label)


class User(AbstractUser):
    """The portal's account. Kept as our own model so fields can be added without a swap."""

    class Meta:
        db_table = "portal_user"


class Role(models.TextChoices):
    ANNOTATOR = "annotator", "Annotator"
    ADJUDICATOR = "adjudicator", "Adjudicator"
    REVIEWER = "reviewer", "Reviewer"
    ENGINEER = "engineer", "Engineer"
    COMPLIANCE = "compliance", "Compliance"
    ADMIN = "admin", "Admin"


class RoleSet:
    """Who may do what, named once: pages, the API, consumers and services all use these
    (`access.require(*RoleSet.OVERSIGHT)`). A new kind of permission gets a name here."""

    # Any member, whatever their role: the project itself (its page, its record in the API).
    MEMBERS = tuple(Role)
    # Read a project's data, jobs, results and lineage; follow its live events.
    OVERSIGHT = (Role.ENGINEER, Role.ADMIN, Role.COMPLIANCE)
    # The same, plus the adjudication log.
    OVERSIGHT_AND_ADJUDICATORS = (*OVERSIGHT, Role.ADJUDICATOR)
    # Everyone who works on the labels: sees schemas and guidelines.
    LABEL_READERS = (*OVERSIGHT, Role.ANNOTATOR, Role.ADJUDICATOR)
    # Read the audit log and access logs.
    AUDITORS = (Role.COMPLIANCE, Role.ADMIN)
    # Configure the project's work, browse its items, change a model version's stage.
    MANAGERS = (Role.ENGINEER, Role.ADMIN)
    # Launch and cancel jobs, upload data.
    ENGINEERS = (Role.ENGINEER,)
    # Members, policies and settings of the project itself.
    ADMINS = (Role.ADMIN,)
    # What a project's creator holds from the start: its settings and members, and the
    # engineering work of setting it up (uploads, schemas, jobs), as a project's owner may
    # in Label Studio. Labelling, review and sign-off stay roles given on purpose: they
    # carry blinding and separation-of-duty rules.
    CREATOR = (Role.ADMIN, Role.ENGINEER)
    ANNOTATORS = (Role.ANNOTATOR,)
    ADJUDICATORS = (Role.ADJUDICATOR,)
    REVIEWERS = (Role.REVIEWER,)
    COMPLIANCE = (Role.COMPLIANCE,)
    # Sign off a model version: an engineer as engineering lead, compliance as compliance
    # officer (governance's SIGNOFF_ROLE_NEEDS says which sign-off each may give).
    SIGNERS = (Role.ENGINEER, Role.COMPLIANCE)


class Project(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    archived = models.BooleanField(default=False)

    class Meta:
        db_table = "portal_project"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """One role of one user in one project; a user holding two roles has two rows."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="memberships"
    )
    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices)
    added_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "portal_membership"
        ordering = ["project_id", "user_id", "role"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "project", "role"], name="membership_unique_role"
            ),
            models.CheckConstraint(
                condition=models.Q(role__in=Role.values), name="membership_role_valid"
            ),
        ]
        indexes = [models.Index(fields=["project", "role"])]

    def __str__(self) -> str:
        return f"{self.user} as {self.role} in {self.project}"


class SiteSettings(models.Model):
    """Portal-wide switches an admin can flip at run time. One row, id 1."""

    signup_open = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "portal_sitesettings"
        verbose_name_plural = "site settings"

    def __str__(self) -> str:
        return "Site settings"


class ApiKey(models.Model):
    """A personal API key. Only the SHA-256 of the secret is stored (the secret is shown
    once, at creation); `prefix` is its visible start, so a user can tell keys apart.
    A key works until `expires_at` or `revoked_at`, whichever comes first."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="api_keys"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16)
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "portal_apikey"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "revoked_at"])]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name})"


class AuditEvent(models.Model):
    """An append-only, hash-chained record of one write.

    The database refuses UPDATE, DELETE and TRUNCATE on this table (triggers installed by
    the migrations), and `hash` covers the event's canonical JSON and the previous hash, so
    a change made with the triggers out of the way is still caught by verify_audit_log;
    a whole chain recomputed from scratch is caught by the signed AuditCheckpoints.
    """

    seq = models.BigIntegerField(unique=True)
    created_at = models.DateTimeField()
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+"
    )
    actor_username = models.CharField(max_length=150, blank=True)
    project = models.ForeignKey(
        "core.Project", on_delete=models.PROTECT, null=True, related_name="+"
    )
    action = models.CharField(max_length=100)
    target_type = models.CharField(max_length=100, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    data = models.JSONField(default=dict)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        db_table = "governance_auditevent"
        ordering = ["seq"]
        indexes = [
            models.Index(fields=["project", "seq"]),
            models.Index(fields=["target_type", "target_id"]),
            models.Index(fields=["action"]),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action}"

    def payload(self) -> dict[str, Any]:
        """The fields the hash covers, in the form they are hashed."""
        return {
            "seq": self.seq,
            "created_at": self.created_at.isoformat(),
            "actor_id": self.actor_id,
            "actor_username": self.actor_username,
            "project_id": self.project_id,
            "action": self.action,
            "target_type": self.target_type,
            "target_id": self.target_id,
            "data": self.data,
        }

    def compute_hash(self) -> str:
        return event_hash(self.prev_hash, self.payload())


class AuditChainHead(models.Model):
    """The newest event's seq and hash; its row lock serialises appends to the chain. The
    database lets it only move forward (governance 0005)."""

    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64, default=GENESIS_HASH)

    class Meta:
        db_table = "governance_auditchainhead"

    def __str__(self) -> str:
        return f"head #{self.seq}"


class AuditCheckpoint(models.Model):
    """A signed statement of the chain's size and head hash (see core.checkpoint).

    The database copy of what `audit_checkpoint_sign` also appends to a file outside the
    database; both are append-only (triggers refuse UPDATE, DELETE and TRUNCATE here too).
    """

    tree_size = models.BigIntegerField(unique=True)
    head_hash = models.CharField(max_length=64)
    timestamp = models.CharField(max_length=40)  # ISO 8601 in UTC, exactly as signed
    key_id = models.CharField(max_length=64)
    public_key = models.TextField()
    signature = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "governance_auditcheckpoint"
        ordering = ["tree_size"]

    def __str__(self) -> str:
        return f"checkpoint #{self.tree_size}"

    def entry(self) -> dict[str, Any]:
        """The checkpoint as the JSON object the file holds and the verifier reads."""
        return {
            "format": CHECKPOINT_FORMAT,
            "tree_size": self.tree_size,
            "head_hash": self.head_hash,
            "timestamp": self.timestamp,
            "key_id": self.key_id,
            "public_key": self.public_key,
            "signature": self.signature,
        }


class JobStatus(models.TextChoices):
    """The one status vocabulary of every background job (BackgroundJob)."""

    QUEUED = "queued", "Queued"
    # Only training jobs stop here: the runner checks memory, data and a smoke batch first.
    PREFLIGHT = "preflight", "Pre-flight"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


# A worker claimed the job and has not settled it.
JOB_STARTED = (JobStatus.PREFLIGHT, JobStatus.RUNNING)
JOB_ACTIVE = (JobStatus.QUEUED, *JOB_STARTED)
JOB_FINAL = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class BackgroundJob(models.Model):
    """What every kind of background job (an import, a quality check, a training job, a
    dossier build...) shares: its status and the times of its lifecycle. Only
    core.services.jobs moves a job through the lifecycle; each kind keeps its own inputs,
    results and progress fields. The housekeeping sweep finds every concrete subclass."""

    Status = JobStatus

    # How the sweep's counts and messages name one of these ("the worker running this ...").
    job_noun: ClassVar[str] = "background job"
    # The prefix of the lifecycle's audit actions (`<prefix>.lost`); "" for the model label.
    audit_prefix: ClassVar[str] = ""

    status = models.CharField(max_length=20, choices=JobStatus.choices, default=JobStatus.QUEUED)
    error = models.TextField(blank=True)
    # A person asked it to stop: a queued job never starts, a started one's worker polls this.
    cancel_requested = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # The last sign of life from its worker: the claim, each progress write, each heartbeat.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=JobStatus.values),
                name="%(class)s_status_valid",
            ),
        ]

    @property
    def is_active(self) -> bool:
        return self.status in JOB_ACTIVE

    @property
    def job_project_id(self) -> int | None:
        """The project the job's audit events belong to."""
        return getattr(self, "project_id", None)

    @classmethod
    def job_audit_prefix(cls) -> str:
        return cls.audit_prefix or cls._meta.label_lower

    @classmethod
    def heartbeat_stale_seconds(cls) -> float | None:
        """Silence after which the sweep fails a started job even while its liveness lock is
        held (a machine that vanished); None for kinds whose worker sends no heartbeats,
        where only the lock tells."""
        return None

    def lost_error(self, reason: str) -> str:
        """The error the sweep writes when it fails the job; `reason` says how its worker was
        found gone."""
        return (
            f"The worker running this {self.job_noun} {reason}; nothing it started was kept. "
            "Start it again."
        )
