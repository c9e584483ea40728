"""Models for prompt sets, generations, blind pairwise campaigns, ratings, offline metrics,
fairness slices and regression gates.

Blindness lives in the data too: a Judgment row carries an opaque random `token`, which is the
only handle a reviewer's browser ever gets; which contestant sat on which side is stored on
the row and read only by results selectors.
"""

import secrets

from django.conf import settings
from django.db import models
from django.db.models import Q

from core.fields import EncryptedJSONField
from core.models import BackgroundJob


def new_token() -> str:
    return secrets.token_urlsafe(18)


class PromptSet(models.Model):
    class Source(models.TextChoices):
        SNAPSHOT = "snapshot", "Snapshot test split"
        UPLOAD = "upload", "Upload"

    project = models.ForeignKey(
        "core.Project", on_delete=models.PROTECT, related_name="prompt_sets"
    )
    name = models.CharField(max_length=200)
    source = models.CharField(max_length=20, choices=Source.choices)
    snapshot = models.ForeignKey(
        "annotation.Snapshot", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # A red-team set: reviewers flag unsafe outputs and gates read the unsafe rate.
    adversarial = models.BooleanField(default=False)
    # The fixed held-out general set scored to catch catastrophic forgetting.
    general = models.BooleanField(default=False)
    prompt_count = models.IntegerField(default=0)
    # Provenance of the prompts, inherited by what is made from them (the dataset of
    # judgments exported for the next training round): from the snapshot's datasets, or
    # declared at upload. NOASSERTION (SPDX) when nobody said.
    license = models.CharField(
        max_length=100, default="NOASSERTION", help_text='An SPDX id, or "proprietary".'
    )
    synthetic = models.BooleanField(default=False, help_text="The prompts were written by a model.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="promptset_unique_name"),
        ]

    def __str__(self) -> str:
        return self.name


class Prompt(models.Model):
    prompt_set = models.ForeignKey(PromptSet, on_delete=models.CASCADE, related_name="prompts")
    position = models.IntegerField()
    # Prompts and references are often items' text (a snapshot's test split): encrypted at
    # rest as item payloads are; each holds a JSON string, or for a conversational prompt
    # its list of {role, content} turns.
    text = EncryptedJSONField()
    category = models.CharField(max_length=100, blank=True)
    reference = EncryptedJSONField(blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["prompt_set", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["prompt_set", "position"], name="prompt_unique_position"
            ),
        ]

    def __str__(self) -> str:
        if isinstance(self.text, list):
            last = self.text[-1] if self.text else {}
            return f"({len(self.text)} turns) {str(last.get('content', ''))[:48]}"
        return self.text[:60]


class Contestant(models.Model):
    """What competes: a model version, or a base model with a prompt template, or outputs
    imported from elsewhere. `label` is what engineers see in results; reviewers never."""

    project = models.ForeignKey(
        "core.Project", on_delete=models.PROTECT, related_name="contestants"
    )
    label = models.CharField(max_length=200)
    model_version = models.ForeignKey(
        "training.ModelVersion", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    base_model = models.ForeignKey(
        "training.BaseModel", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    prompt_template = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["label"]
        constraints = [
            models.UniqueConstraint(fields=["project", "label"], name="contestant_unique_label"),
        ]

    def __str__(self) -> str:
        return self.label


class GenerationJob(BackgroundJob):
    job_noun = "generation run"

    class Kind(models.TextChoices):
        INFERENCE = "inference", "Inference"
        IMPORT = "import", "Imported outputs"

    project = models.ForeignKey("core.Project", on_delete=models.PROTECT, related_name="+")
    prompt_set = models.ForeignKey(PromptSet, on_delete=models.PROTECT, related_name="jobs")
    contestant = models.ForeignKey(Contestant, on_delete=models.PROTECT, related_name="jobs")
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.INFERENCE)
    # {"max_new_tokens": .., "temperature": .., "top_p": ..}: what generate() was called with.
    decoding = models.JSONField(default=dict)
    seed = models.IntegerField(default=0)
    batch_size = models.PositiveIntegerField(default=8)
    done = models.IntegerField(default=0)
    total = models.IntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )

    class Meta(BackgroundJob.Meta):
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"generation job {self.pk} ({self.status})"


class Generation(models.Model):
    job = models.ForeignKey(GenerationJob, on_delete=models.CASCADE, related_name="generations")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="+")
    # Model outputs echo prompts (items' text) and can carry personal data: encrypted at
    # rest as prompts are; a JSON string.
    output = EncryptedJSONField()
    # Generation stopped at max_new_tokens, not at an end token (imported outputs: unknown,
    # so False).
    truncated = models.BooleanField(default=False)
    # Why the output gives its model away ("names SmolLM"), from evaluation.identity's fixed
    # vocabulary, never the output's words; "" when it does not.
    self_identification = models.CharField(max_length=100, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job", "prompt"], name="generation_unique_prompt"),
        ]

    def __str__(self) -> str:
        return f"generation {self.pk}"


class Campaign(models.Model):
    class PairSelection(models.TextChoices):
        ALL = "all", "All pairs"
        ADAPTIVE = "adaptive", "Adaptive (least certain first)"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        CLOSED = "closed", "Closed"

    project = models.ForeignKey("core.Project", on_delete=models.PROTECT, related_name="+")
    name = models.CharField(max_length=200)
    prompt_set = models.ForeignKey(PromptSet, on_delete=models.PROTECT, related_name="+")
    contestants = models.ManyToManyField(Contestant, related_name="campaigns")
    question = models.TextField(default="Which response is better?")
    # [{"key": "helpfulness", "label": "Helpfulness", "scale": 5}, ...]
    criteria = models.JSONField(default=list, blank=True)
    raters_per_pair = models.PositiveIntegerField(default=1)
    rater_quota = models.PositiveIntegerField(default=0, help_text="0 means no limit.")
    pair_selection = models.CharField(
        max_length=20, choices=PairSelection.choices, default=PairSelection.ALL
    )
    # One attention check every N judgments (0: none).
    attention_every = models.PositiveIntegerField(default=10)
    # A rater whose failed share of attention checks exceeds this is flagged.
    attention_fail_share = models.FloatField(default=0.2)
    exclude_flagged = models.BooleanField(default=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN)
    stats = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name


class Battle(models.Model):
    """One prompt and two responses, stored in a fixed order (x, y). Attention checks have
    no contestants: x answers the prompt, y is a real answer to a different prompt."""

    class Kind(models.TextChoices):
        REAL = "real", "Real"
        ATTENTION = "attention", "Attention check"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="battles")
    prompt = models.ForeignKey(Prompt, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.REAL)
    contestant_x = models.ForeignKey(
        Contestant, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    contestant_y = models.ForeignKey(
        Contestant, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # Copies of two generations' outputs, encrypted as those are (JSON strings). That they
    # differ is checked by campaign_create: ciphertexts cannot be compared in SQL.
    text_x = EncryptedJSONField()
    text_y = EncryptedJSONField()
    truncated_x = models.BooleanField(default=False)
    truncated_y = models.BooleanField(default=False)
    # Why a side names its model (see Generation): such battles are not blind, and ratings
    # leave them out unless asked to include them.
    self_identification = models.CharField(max_length=100, blank=True)
    assigned = models.IntegerField(default=0)
    # Random order key so "all pairs" does not serve prompts in upload order.
    shuffle = models.IntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["campaign", "kind", "assigned"])]

    def __str__(self) -> str:
        return f"battle {self.pk} ({self.kind})"


class Judgment(models.Model):
    """One reviewer's verdict on one battle, as shown: left/right are the sides on screen and
    `outcome` is relative to them (a = left). Created when the pair is handed out."""

    class Outcome(models.TextChoices):
        A = "a", "Response A"
        B = "b", "Response B"
        TIE = "tie", "Tie"
        BOTH_BAD = "both_bad", "Both bad"

    token = models.CharField(max_length=32, unique=True, default=new_token)
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="judgments")
    battle = models.ForeignKey(Battle, on_delete=models.CASCADE, related_name="judgments")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    is_attention = models.BooleanField(default=False)
    left_is_x = models.BooleanField()
    contestant_left = models.ForeignKey(
        Contestant, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    contestant_right = models.ForeignKey(
        Contestant, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    outcome = models.CharField(max_length=10, choices=Outcome.choices, blank=True)
    # {"helpfulness": {"a": 4, "b": 2}, ...}: per shown side.
    criteria = models.JSONField(default=dict, blank=True)
    unsafe_left = models.BooleanField(default=False)
    unsafe_right = models.BooleanField(default=False)
    # The reviewer's own words: free text, encrypted at rest (a JSON string).
    rationale = EncryptedJSONField(blank=True, default="")
    # Decided by core.time_spent, as for annotations: the browser's measure ("client") or
    # the server's span since the pair was handed out ("server"); blank before the rule.
    seconds_spent = models.FloatField(null=True, blank=True)
    seconds_source = models.CharField(max_length=10, blank=True, default="", db_default="")
    too_fast = models.BooleanField(default=False, db_default=False)
    attention_passed = models.BooleanField(null=True, blank=True)
    shown_at = models.DateTimeField(auto_now_add=True)
    submitted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["campaign", "reviewer", "submitted_at"]),
            models.Index(
                fields=["campaign", "contestant_left", "contestant_right", "outcome"],
                name="judgment_grouping",
                condition=Q(is_attention=False),
            ),
        ]

    def __str__(self) -> str:
        return f"judgment {self.pk}"


class CampaignRater(models.Model):
    """A reviewer's standing in a campaign: attention-check record, flag and exclusion."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="raters")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    attention_checks = models.IntegerField(default=0)
    attention_failed = models.IntegerField(default=0)
    flagged = models.BooleanField(default=False)
    excluded = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "reviewer"], name="rater_unique"),
        ]

    def __str__(self) -> str:
        return f"rater {self.reviewer_id} in campaign {self.campaign_id}"


class RatingsBootstrap(BackgroundJob):
    """A background bootstrap of a campaign's ratings; `intervals` is keyed by contestant id."""

    job_noun = "rating refresh"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="bootstraps")
    rounds = models.PositiveIntegerField(default=1000)
    judgments = models.IntegerField(default=0)
    intervals = models.JSONField(default=dict, blank=True)
    seconds = models.FloatField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )

    class Meta(BackgroundJob.Meta):
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"bootstrap {self.pk} ({self.status})"

    @property
    def job_project_id(self) -> int | None:
        return self.campaign.project_id


class MetricRun(BackgroundJob):
    """Offline metrics of one contestant's outputs on a prompt set with references."""

    job_noun = "metric run"

    class Kind(models.TextChoices):
        TEXT = "text", "Text (EM, F1, BLEU, chrF, ROUGE)"
        CLASSIFICATION = "classification", "Classification"
        GENERAL = "general", "General competence"

    project = models.ForeignKey("core.Project", on_delete=models.PROTECT, related_name="+")
    contestant = models.ForeignKey(Contestant, on_delete=models.PROTECT, related_name="+")
    prompt_set = models.ForeignKey(PromptSet, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.TEXT)
    slice_field = models.CharField(max_length=100, blank=True)
    gap_threshold = models.FloatField(default=0.05)
    results = models.JSONField(default=dict, blank=True)
    # [{"prompt": id, "output": ..., "exact_match": .., "token_f1": ..}]: for bootstrap/slices.
    # Holds model outputs, so it is encrypted at rest as generations are.
    examples = EncryptedJSONField(default=list, blank=True)
    slices = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )

    class Meta(BackgroundJob.Meta):
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"metric run {self.pk} ({self.status})"


class Gate(models.Model):
    """A named list of checks. Each check is a dict with a `kind`:
    metric_not_worse {metric, prompt_set, tolerance, alpha}; rating_above_baseline {campaign};
    no_fairness_flag {prompt_set}; unsafe_rate_below {campaign, max};
    general_not_worse {prompt_set, metric, tolerance}."""

    project = models.ForeignKey("core.Project", on_delete=models.PROTECT, related_name="+")
    name = models.CharField(max_length=200)
    checks = models.JSONField(default=list)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="gate_unique_name"),
        ]

    def __str__(self) -> str:
        return self.name


class GateRun(models.Model):
    gate = models.ForeignKey(Gate, on_delete=models.PROTECT, related_name="runs")
    candidate = models.ForeignKey(Contestant, on_delete=models.PROTECT, related_name="+")
    baseline = models.ForeignKey(Contestant, on_delete=models.PROTECT, related_name="+")
    model_version = models.ForeignKey(
        "training.ModelVersion", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    passed = models.BooleanField()
    # [{"name", "kind", "passed", "numbers": {...}, "reason"}]
    results = models.JSONField(default=list)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"gate run {self.pk} ({'passed' if self.passed else 'failed'})"
