"""Datasets and their provenance, items, label schemas and guidelines, leases,
annotations, and the gold labels that agreement or adjudication produce."""

import secrets
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from governance.fields import EncryptedJSONField

# An answer (annotations, gold labels, snapshot members) is stored in two columns:
# `choice`, plain jsonb, holds only what the label schema fixes (class names from its
# choices, match / no_match / unsure, the index or ranking of responses, 1-5 scores on the
# schema's criteria), so agreement, stratified splits and label counts run in SQL or over
# plain values; `free_text`, encrypted at rest like item payloads, holds whatever an
# annotator or adjudicator writes themselves (written and edited responses, a preference's
# reason), which can carry personal data. An answer without free text has free_text NULL
# and costs no decryption.
FREE_TEXT_KEYS = ("response", "steps", "reason")


def answer_split(value: dict | None) -> tuple[dict | None, dict | None]:
    """(choice, free_text) of an answer; either is None when it has no such part."""
    if value is None:
        return None, None
    choice = {k: v for k, v in value.items() if k not in FREE_TEXT_KEYS}
    text = {k: v for k, v in value.items() if k in FREE_TEXT_KEYS}
    return choice or None, text or None


def answer_join(choice: dict | None, free_text: dict | None) -> dict | None:
    """The answer `answer_split` split (key order aside; hashes use canonical JSON)."""
    if choice is None and free_text is None:
        return None
    return {**(choice or {}), **(free_text or {})}


def _answer_property() -> property:
    """`value` (or `label`) as one dict over the `choice` and `free_text` columns. Setting
    it splits it; Django's constructors accept a property as a keyword, so
    `GoldLabel(value=...)` and `objects.create(value=...)` work as with one column."""

    def get(obj) -> dict | None:
        return answer_join(obj.choice, obj.free_text)

    def put(obj, value: dict | None) -> None:
        obj.choice, obj.free_text = answer_split(value)

    return property(get, put)


class Dataset(models.Model):
    class Status(models.TextChoices):
        READY = "ready", "Ready"
        ARCHIVED = "archived", "Archived"

    class Format(models.TextChoices):
        JSONL = "jsonl", "JSON Lines"
        CSV = "csv", "CSV"
        LABEL_STUDIO = "labelstudio", "Label Studio JSON export"

    project = models.ForeignKey("portal.Project", on_delete=models.PROTECT, related_name="datasets")
    name = models.CharField(max_length=200)
    file_name = models.CharField(max_length=255)
    file_format = models.CharField(max_length=20, choices=Format.choices)
    file_sha256 = models.CharField(max_length=64)
    file_bytes = models.BigIntegerField()
    row_count = models.IntegerField(default=0)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.READY)
    # Provenance, required at upload (Datasheets for Datasets: collection and licensing).
    source_description = models.TextField()
    license = models.CharField(max_length=100, help_text='An SPDX id, or "proprietary".')
    consent_basis = models.CharField(max_length=200)
    collection_date = models.DateField()
    synthetic = models.BooleanField(default=False)
    # A curated version (redacted, deduplicated, chunked...) points at the dataset it was
    # made from; the original is archived, never changed.
    derived_from = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="derived_versions"
    )
    derivation = models.CharField(max_length=30, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "file_sha256"], name="dataset_unique_file_per_project"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class DatasetUpload(models.Model):
    """One attempt to import a file. A failed attempt keeps only its error; the file and
    any rows it produced are gone."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Importing"
        SUCCEEDED = "succeeded", "Imported"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey("portal.Project", on_delete=models.PROTECT, related_name="+")
    file_name = models.CharField(max_length=255)
    stored_path = models.CharField(max_length=500, blank=True)
    file_bytes = models.BigIntegerField(default=0)
    options = models.JSONField(default=dict)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    rows_done = models.IntegerField(default=0)
    error = models.TextField(blank=True)
    dataset = models.ForeignKey(
        Dataset, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.file_name} ({self.status})"


class TaskType(models.TextChoices):
    CLASSIFICATION = "classification", "Classification"
    ENTITY_MATCHING = "entity_matching", "Entity matching"
    WRITING = "writing", "Instruction and response writing"
    PREFERENCE = "preference", "Preference"
    RATING = "rating", "Rating on criteria"


class LabelSchema(models.Model):
    """A version of a project's labelling task. New versions never rewrite old ones, so
    each annotation keeps the exact schema it was made under."""

    project = models.ForeignKey(
        "portal.Project", on_delete=models.PROTECT, related_name="label_schemas"
    )
    version = models.PositiveIntegerField()
    task_type = models.CharField(max_length=30, choices=TaskType.choices)
    config = models.JSONField(default=dict)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["project", "version"], name="schema_unique_version"),
        ]

    def __str__(self) -> str:
        return f"{self.get_task_type_display()} v{self.version}"


class Guideline(models.Model):
    project = models.ForeignKey(
        "portal.Project", on_delete=models.PROTECT, related_name="guidelines"
    )
    version = models.PositiveIntegerField()
    markdown = models.TextField()
    # [{"title": ..., "payload": {...}, "answer": {...}, "why": "..."}]
    examples = models.JSONField(default=list, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["project", "version"], name="guideline_unique_version"),
        ]

    def __str__(self) -> str:
        return f"guideline v{self.version}"


def _new_salt() -> str:
    return secrets.token_hex(16)


class AnnotationSettings(models.Model):
    """How a project's stages run; one row per project."""

    class Order(models.TextChoices):
        SEQUENTIAL = "sequential", "Sequential"
        RANDOM = "random", "Random (seeded)"
        PRIORITY = "priority", "By priority score"

    class Rule(models.TextChoices):
        UNANIMOUS = "unanimous", "Unanimous"
        MAJORITY = "majority", "Majority (at least m of k)"

    project = models.OneToOneField(
        "portal.Project", on_delete=models.PROTECT, related_name="annotation_settings"
    )
    labels_per_item = models.PositiveSmallIntegerField(default=2)
    agreement_rule = models.CharField(max_length=20, choices=Rule.choices, default=Rule.UNANIMOUS)
    majority_min = models.PositiveSmallIntegerField(default=2)
    order = models.CharField(max_length=20, choices=Order.choices, default=Order.SEQUENTIAL)
    random_seed = models.IntegerField(default=0)
    lease_seconds = models.PositiveIntegerField(default=600)
    gold_rate = models.FloatField(default=0.0)
    # Keys the stable annotator pseudonyms shown to adjudicators and in dossiers; secret, so
    # a pseudonym cannot be turned back into a user id by hashing every id.
    pseudonym_salt = models.CharField(max_length=32, default=_new_salt, editable=False)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(labels_per_item__gte=1), name="settings_k_min"),
            models.CheckConstraint(
                condition=Q(majority_min__lte=models.F("labels_per_item")), name="settings_m_le_k"
            ),
            models.CheckConstraint(
                condition=Q(gold_rate__gte=0) & Q(gold_rate__lte=1), name="settings_gold_rate_range"
            ),
        ]

    def __str__(self) -> str:
        return f"annotation settings of project {self.project_id}"


class Item(models.Model):
    class State(models.TextChoices):
        OPEN = "open", "Being labelled"
        DISPUTED = "disputed", "Waiting for adjudication"
        RESOLVED = "resolved", "Gold label set"

    project = models.ForeignKey("portal.Project", on_delete=models.PROTECT, related_name="+")
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="items")
    row_number = models.IntegerField()
    external_id = models.CharField(max_length=200, blank=True)
    payload = EncryptedJSONField()
    content_hash = models.CharField(max_length=64)
    metadata = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=20, choices=State.choices, default=State.OPEN)
    priority = models.FloatField(default=0.0)
    random_key = models.BigIntegerField(default=0)
    # Active leases plus submitted annotations: the k-limit is checked against this.
    assigned_count = models.PositiveSmallIntegerField(default=0)
    label_count = models.PositiveSmallIntegerField(default=0)
    is_gold = models.BooleanField(default=False)
    gold_answer = EncryptedJSONField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(
                fields=["project", "id"],
                condition=Q(state="open", is_gold=False),
                name="item_queue_sequential",
            ),
            models.Index(
                fields=["project", "random_key"],
                condition=Q(state="open", is_gold=False),
                name="item_queue_random",
            ),
            models.Index(
                models.F("project"),
                models.F("priority").desc(),
                models.F("id"),
                condition=Q(state="open", is_gold=False),
                name="item_queue_priority",
            ),
            models.Index(fields=["project", "id"], condition=Q(is_gold=True), name="item_gold"),
            models.Index(fields=["project", "state"], name="item_project_state"),
            models.Index(fields=["dataset", "row_number"], name="item_dataset_row"),
        ]

    def __str__(self) -> str:
        return f"item {self.pk} ({self.state})"


class Lease(models.Model):
    """An exclusive, expiring claim on an item: by an annotator (stage 1) or an
    adjudicator (stage 3)."""

    class Kind(models.TextChoices):
        LABEL = "label", "Label"
        ADJUDICATE = "adjudicate", "Adjudicate"

    class State(models.TextChoices):
        ACTIVE = "active", "Active"
        SUBMITTED = "submitted", "Submitted"
        SKIPPED = "skipped", "Skipped"
        EXPIRED = "expired", "Expired"

    project = models.ForeignKey("portal.Project", on_delete=models.PROTECT, related_name="+")
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="leases")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.LABEL)
    state = models.CharField(max_length=20, choices=State.choices, default=State.ACTIVE)
    # What the annotator was shown: the answer is stored under these versions.
    schema = models.ForeignKey(
        "LabelSchema", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    guideline = models.ForeignKey(
        "Guideline", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    # Encrypted: the annotator's own words (they may quote the item); NULL when not skipped.
    skip_reason = EncryptedJSONField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["project", "expires_at"],
                condition=Q(state="active"),
                name="lease_active_expiry",
            ),
            models.Index(
                fields=["annotator", "project", "kind"],
                condition=Q(state="active"),
                name="lease_active_by_user",
            ),
            models.Index(fields=["item", "annotator"], name="lease_item_user"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["item", "annotator"],
                condition=Q(state="active"),
                name="lease_one_active_per_user_item",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} lease {self.pk} ({self.state})"


class Annotation(models.Model):
    project = models.ForeignKey("portal.Project", on_delete=models.PROTECT, related_name="+")
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="annotations")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    # Plain: schema choices only. Encrypted: what the annotator wrote (see FREE_TEXT_KEYS).
    choice = models.JSONField(null=True, blank=True)
    free_text = EncryptedJSONField(null=True, blank=True)
    value = _answer_property()
    schema = models.ForeignKey(LabelSchema, on_delete=models.PROTECT, related_name="+")
    guideline = models.ForeignKey(Guideline, on_delete=models.PROTECT, null=True, related_name="+")
    # The client's id for this submission: a retried or double-clicked submit stores one row.
    submission_id = models.UUIDField(unique=True)
    lease = models.ForeignKey(Lease, on_delete=models.PROTECT, related_name="+")
    started_at = models.DateTimeField()
    submitted_at = models.DateTimeField()
    # Decided by portal.time_spent (one rule with the blind review): the browser's measure
    # ("client") or the server's span since the lease ("server"); blank: recorded before
    # the rule was stated. too_fast: under the reading time of what was shown.
    seconds_spent = models.FloatField()
    seconds_source = models.CharField(max_length=10, blank=True, default="", db_default="")
    too_fast = models.BooleanField(default=False, db_default=False)
    undone = models.BooleanField(default=False)

    class Meta:
        indexes = [
            models.Index(fields=["project", "submitted_at"], name="annotation_project_time"),
            models.Index(fields=["annotator", "submitted_at"], name="annotation_user_time"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["item", "annotator"],
                condition=Q(undone=False),
                name="annotation_one_per_user_item",
            ),
        ]

    def __str__(self) -> str:
        return f"answer {self.pk} on item {self.item_id}"


class GoldLabel(models.Model):
    class Method(models.TextChoices):
        UNANIMOUS = "unanimous", "Unanimous"
        MAJORITY = "majority", "Majority"
        ADJUDICATED = "adjudicated", "Adjudicated"
        LABEL_MODEL = "label_model", "Label model (Dawid-Skene)"
        EVALUATION = "evaluation", "Pairwise evaluation judgment"

    project = models.ForeignKey("portal.Project", on_delete=models.PROTECT, related_name="+")
    item = models.OneToOneField(Item, on_delete=models.PROTECT, related_name="gold_label")
    # Plain: schema choices only. Encrypted: a written or edited response, a reason.
    choice = models.JSONField(null=True, blank=True)
    free_text = EncryptedJSONField(null=True, blank=True)
    value = _answer_property()
    method = models.CharField(max_length=20, choices=Method.choices)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # Encrypted: the adjudicator's own words, which often quote the item.
    reason = EncryptedJSONField(blank=True, default="")
    annotation_ids = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["project", "method"], name="gold_project_method")]

    def __str__(self) -> str:
        return f"gold label of item {self.item_id} ({self.method})"


class Snapshot(models.Model):
    """A frozen, versioned set of gold-labelled items. The database refuses UPDATE and
    DELETE on this table and on its members (migration 0003), so every field is final."""

    project = models.ForeignKey(
        "portal.Project", on_delete=models.PROTECT, related_name="snapshots"
    )
    name = models.CharField(max_length=200)
    version = models.PositiveIntegerField()
    task_type = models.CharField(max_length=30, choices=TaskType.choices)
    seed = models.IntegerField()
    split_ratios = models.JSONField()
    filter = models.JSONField(default=dict)
    member_count = models.IntegerField()
    manifest_sha256 = models.CharField(max_length=64)
    stats = models.JSONField(default=dict)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["project", "name", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "name", "version"], name="snapshot_unique_version"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class SnapshotMember(models.Model):
    class Split(models.TextChoices):
        TRAIN = "train", "Train"
        VALIDATION = "validation", "Validation"
        TEST = "test", "Test"

    snapshot = models.ForeignKey(Snapshot, on_delete=models.PROTECT, related_name="members")
    position = models.IntegerField()
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="+")
    content_hash = models.CharField(max_length=64)
    # The gold label as frozen: plain schema choices, encrypted free text. The database lets
    # an UPDATE change free_text only, to another Fernet token (key rotation); the
    # snapshot's manifest hash covers the whole label, so any other change is caught.
    choice = models.JSONField(null=True, blank=True)
    free_text = EncryptedJSONField(null=True, blank=True)
    label = _answer_property()
    method = models.CharField(max_length=20)
    split = models.CharField(max_length=10, choices=Split.choices)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["snapshot", "position"], name="snapshot_member_unique_position"
            ),
        ]
        indexes = [models.Index(fields=["snapshot", "split", "position"], name="member_split")]

    def __str__(self) -> str:
        return f"member {self.position} of snapshot {self.snapshot_id}"


class PiiRule(models.Model):
    """A project's own PII pattern, scanned beside the built-in recognizers."""

    project = models.ForeignKey("portal.Project", on_delete=models.PROTECT, related_name="+")
    name = models.CharField(max_length=40, help_text="Upper-case; the placeholder is [NAME].")
    pattern = models.CharField(max_length=500)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="pii_rule_unique_name"),
        ]

    def __str__(self) -> str:
        return self.name


class QualityCheck(models.Model):
    """One run of a data check over a dataset, a whole project or a snapshot; a worker
    fills in progress and the result."""

    class Kind(models.TextChoices):
        DUPLICATES = "duplicates", "Exact and near duplicates"
        PII = "pii", "Personal data (PII)"
        DISTRIBUTIONS = "distributions", "Distributions"
        LEAKAGE = "leakage", "Leakage between splits"
        SYNTHETIC = "synthetic", "Synthetic vs real"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Done"
        FAILED = "failed", "Failed"

    project = models.ForeignKey("portal.Project", on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    dataset = models.ForeignKey(
        Dataset, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    snapshot = models.ForeignKey(
        Snapshot, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    params = models.JSONField(default=dict)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    done = models.IntegerField(default=0)
    total = models.IntegerField(default=0)
    result = models.JSONField(default=dict)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["project", "kind", "-created_at"], name="check_latest")]

    def __str__(self) -> str:
        return f"{self.kind} check {self.pk} ({self.status})"
