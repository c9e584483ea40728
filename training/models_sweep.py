"""Hyperparameter sweeps: N trial jobs over a search space, chosen by Optuna.

Optuna's study is never stored: the sweep rebuilds an in-memory study from its trial rows
(parameters, state, value, the eval losses they reported) each time it advances, so the
portal's rows stay the one source of truth and no extra tables or files are needed. Every
trial is an ordinary TrainingJob with its full lineage.
"""

from django.conf import settings
from django.db import models


class Sweep(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    class Sampler(models.TextChoices):
        TPE = "tpe", "TPE (Bayesian)"
        RANDOM = "random", "Random"

    class Pruner(models.TextChoices):
        MEDIAN = "median", "Median stopping"
        ASHA = "asha", "Successive halving (ASHA)"
        NONE = "none", "No pruning"

    project = models.ForeignKey("core.Project", on_delete=models.PROTECT, related_name="sweeps")
    name = models.CharField(max_length=200)
    # The job whose settings every trial starts from; `base_spec` keeps what was copied.
    base_job = models.ForeignKey("training.TrainingJob", on_delete=models.PROTECT, related_name="+")
    base_spec = models.JSONField(default=dict)
    # {setting: {"type": "float"|"int"|"categorical", "low", "high", "log", "step", "choices"}}
    search_space = models.JSONField(default=dict)
    # Parameter sets tried first, in order (Optuna's enqueue_trial), e.g. known-good ones.
    initial_trials = models.JSONField(default=list, blank=True)
    sampler = models.CharField(max_length=10, choices=Sampler.choices, default=Sampler.TPE)
    pruner = models.CharField(max_length=10, choices=Pruner.choices, default=Pruner.MEDIAN)
    # n_startup_trials, n_warmup_steps (median); min_resource, reduction_factor (asha).
    pruner_settings = models.JSONField(default=dict, blank=True)
    seed = models.IntegerField(default=0)
    n_trials = models.PositiveIntegerField()
    concurrency = models.PositiveIntegerField(default=1)
    max_minutes = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    best_trial = models.ForeignKey(
        "SweepTrial", on_delete=models.SET_NULL, related_name="+", null=True, blank=True
    )
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=["running", "succeeded", "failed", "cancelled"]),
                name="sweep_status_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(n_trials__gte=1, concurrency__gte=1),
                name="sweep_counts_positive",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.RUNNING


class SweepTrial(models.Model):
    """One trial: its parameters, its job, and what Optuna needs to rebuild it."""

    class State(models.TextChoices):
        RUNNING = "running", "Running"
        COMPLETE = "complete", "Complete"
        PRUNED = "pruned", "Pruned"
        FAILED = "failed", "Failed"

    sweep = models.ForeignKey(Sweep, on_delete=models.CASCADE, related_name="trials")
    number = models.PositiveIntegerField()
    # None when the sampled settings were refused before a job existed.
    job = models.OneToOneField(
        "training.TrainingJob",
        on_delete=models.PROTECT,
        related_name="sweep_trial",
        null=True,
        blank=True,
    )
    params = models.JSONField(default=dict)
    state = models.CharField(max_length=10, choices=State.choices, default=State.RUNNING)
    value = models.FloatField(null=True, blank=True)
    # {step (as a string, JSON keys): eval loss} as the running job reported them.
    intermediate = models.JSONField(default=dict)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["sweep_id", "number"]
        constraints = [
            models.UniqueConstraint(fields=["sweep", "number"], name="sweeptrial_unique_number"),
            models.CheckConstraint(
                condition=models.Q(state__in=["running", "complete", "pruned", "failed"]),
                name="sweeptrial_state_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"trial {self.number} of sweep {self.sweep_id} ({self.state})"
