from django.conf import settings
from django.db import models

from core.models import BackgroundJob


class SignOffRole(models.TextChoices):
    """Who signs: each maps to the project role the signer must hold (services.py)."""

    ENGINEERING_LEAD = "engineering_lead", "Engineering lead"
    COMPLIANCE = "compliance", "Compliance officer"


def default_required_signoffs() -> dict[str, int]:
    return {SignOffRole.ENGINEERING_LEAD.value: 1, SignOffRole.COMPLIANCE.value: 1}


class ApprovalPolicy(models.Model):
    """How many sign-offs of each role a model version needs before canary or production."""

    project = models.OneToOneField(
        "core.Project", on_delete=models.PROTECT, related_name="approval_policy"
    )
    required = models.JSONField(default=default_required_signoffs)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"approval policy of project {self.project_id}"


class SignOff(models.Model):
    """One person's recorded decision on one model version. A person signs a version once,
    so one user holding two roles cannot meet two requirements alone."""

    class Decision(models.TextChoices):
        APPROVE = "approve", "Approve"
        REJECT = "reject", "Reject"

    project = models.ForeignKey("core.Project", on_delete=models.PROTECT, related_name="+")
    model_version = models.ForeignKey(
        "training.ModelVersion", on_delete=models.PROTECT, related_name="signoffs"
    )
    role = models.CharField(max_length=30, choices=SignOffRole.choices)
    decision = models.CharField(max_length=10, choices=Decision.choices)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    comment = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["model_version", "user"], name="signoff_once_per_user"),
            models.CheckConstraint(condition=~models.Q(comment=""), name="signoff_has_comment"),
            models.CheckConstraint(
                condition=models.Q(role__in=SignOffRole.values), name="signoff_role_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_decision_display()} by {self.user_id} as {self.role}"


class StageChange(models.Model):
    """The history rollback reads: which version held which stage, and since when."""

    class Kind(models.TextChoices):
        PROMOTE = "promote", "Promotion"
        ARCHIVE = "archive", "Archived by a newer production version"
        ROLLBACK = "rollback", "Rollback"
        # A canary the deployment's rollback rules took off traffic goes back to candidate.
        WITHDRAW = "withdraw", "Canary withdrawn by its rollback rules"

    project = models.ForeignKey("core.Project", on_delete=models.PROTECT, related_name="+")
    model_version = models.ForeignKey(
        "training.ModelVersion", on_delete=models.PROTECT, related_name="stage_changes"
    )
    from_stage = models.CharField(max_length=12)
    to_stage = models.CharField(max_length=12)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    gate_run_id = models.BigIntegerField(null=True, blank=True)
    reason = models.TextField(blank=True)
    # None for the portal's own changes (a canary withdrawn by its deployment's rules).
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True
    )
    # The one audit event that recorded the change (its seq). A promotion to production
    # also archives the version that held it: that version's dossier finds the event here,
    # since the event's target is the promoted version.
    audit_seq = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["project", "to_stage", "created_at"])]

    def __str__(self) -> str:
        return f"version {self.model_version_id}: {self.from_stage} -> {self.to_stage}"


class Dossier(BackgroundJob):
    """One build of a model version's dossier. Builds are cached by `inputs_sha256`: a
    request whose inputs hash the same as a finished build gets that build."""

    job_noun = "dossier build"

    project = models.ForeignKey("core.Project", on_delete=models.PROTECT, related_name="+")
    model_version = models.ForeignKey(
        "training.ModelVersion", on_delete=models.PROTECT, related_name="dossiers"
    )
    inputs_sha256 = models.CharField(max_length=64)
    progress = models.PositiveSmallIntegerField(default=0)
    step = models.CharField(max_length=200, blank=True)
    file_path = models.CharField(max_length=500, blank=True)
    bundle_sha256 = models.CharField(max_length=64, blank=True)
    bundle_bytes = models.BigIntegerField(default=0)
    warnings = models.JSONField(default=list, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )

    class Meta(BackgroundJob.Meta):
        ordering = ["-created_at", "-id"]
        constraints = [
            *BackgroundJob.Meta.constraints,
            models.UniqueConstraint(
                fields=["model_version", "inputs_sha256"],
                condition=~models.Q(status="failed"),
                name="dossier_one_live_build_per_inputs",
            ),
        ]

    def __str__(self) -> str:
        return f"dossier {self.pk} of version {self.model_version_id} ({self.status})"

    @property
    def file_name(self) -> str:
        return f"dossier-v{self.model_version_id}-{self.inputs_sha256[:12]}.zip"


class DossierDownload(models.Model):
    """The access log: who fetched which dossier, when and from where."""

    project = models.ForeignKey("core.Project", on_delete=models.PROTECT, related_name="+")
    dossier = models.ForeignKey(Dossier, on_delete=models.PROTECT, related_name="downloads")
    model_version = models.ForeignKey(
        "training.ModelVersion", on_delete=models.PROTECT, related_name="+"
    )
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "created_at"])]

    def __str__(self) -> str:
        return f"download of dossier {self.dossier_id} by {self.user_id}"


class UseDeclaration(models.Model):
    """What a model version is for, as its engineers declare it: the dossier's intended-use
    section and the license check read this."""

    project = models.ForeignKey("core.Project", on_delete=models.PROTECT, related_name="+")
    model_version = models.OneToOneField(
        "training.ModelVersion", on_delete=models.PROTECT, related_name="use_declaration"
    )
    intended_use = models.TextField()
    limitations = models.TextField(blank=True)
    out_of_scope = models.TextField(blank=True)
    license = models.CharField(max_length=100, help_text='An SPDX id, or "proprietary".')
    commercial_use = models.BooleanField(default=False)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"use declaration of version {self.model_version_id}"


class PublishedKey(models.Model):
    """A public key this portal has signed with, kept after the key is replaced so that
    what it signed still verifies: published without log-in at
    /.well-known/dossier-keys.json. `valid_until` is set when a newer key of the same
    purpose was first used; the private key is never stored."""

    class Purpose(models.TextChoices):
        DOSSIER = "dossier", "Dossier signatures"
        AUDIT_CHECKPOINT = "audit-checkpoint", "Audit checkpoints"

    purpose = models.CharField(max_length=20, choices=Purpose.choices)
    key_id = models.CharField(max_length=64, help_text="sha256 of the raw public key, hex")
    public_key_pem = models.TextField()
    valid_from = models.DateTimeField()
    valid_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["purpose", "-valid_from", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["purpose", "key_id"], name="published_key_once_per_purpose"
            ),
            models.UniqueConstraint(
                fields=["purpose"],
                condition=models.Q(valid_until__isnull=True),
                name="published_key_one_current_per_purpose",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.purpose} key {self.key_id[:16]}"
