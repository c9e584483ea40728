"""The deployment pages' forms. They parse what a person types; the services decide what is
allowed (stages, weights, patterns) and their refusals come back onto these fields."""

from typing import Any

from django import forms

from serving.models import Arm, Deployment, EngineKind
from serving.services.deployments import DEFAULT_STEPS, PII_ACTIONS, RULE_KEYS

# A service names nested settings by path; the settings form has one field for each.
SETTINGS_ALIASES = {
    "guardrails": "pii",
    "guardrails.pii": "pii",
    "guardrails.blocklist": "blocklist",
    "guardrails.blocklist_action": "blocklist_action",
    "guardrails.classifier_version_id": "classifier_version",
    "guardrails.classifier_threshold": "classifier_threshold",
    "guardrails.classifier_action": "classifier_action",
    "guardrails.classifier_on": "classifier_on",
    "rollback_rules": "window_s",
    **{f"rollback_rules.{name}": name for name in RULE_KEYS},
}


def _choice_versions(versions) -> list[tuple[str, str]]:
    return [(str(v.pk), f"{v} ({v.stage})") for v in versions]


class DeploymentCreateForm(forms.Form):
    name = forms.CharField(
        max_length=100, help_text="The `model` clients send: lower-case, digits, . _ -"
    )
    engine = forms.ChoiceField(choices=EngineKind.choices, initial=EngineKind.TRANSFORMERS)
    stable = forms.ChoiceField(
        label="Stable", help_text="A version in production, or a base model before one is."
    )
    description = forms.CharField(required=False, max_length=2000, widget=forms.Textarea)
    price_per_1k_tokens = forms.DecimalField(
        min_value=0, max_digits=12, decimal_places=6, initial=0, label="Price per 1k tokens"
    )
    price_per_gpu_hour = forms.DecimalField(
        min_value=0, max_digits=12, decimal_places=4, initial=0, label="Price per GPU-hour"
    )

    def __init__(self, *args: Any, versions=(), base_models=(), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.versions = {str(v.pk): v for v in versions}
        self.base_models = {str(b.pk): b for b in base_models}
        self.fields["stable"].choices = [
            ("Production versions", [(f"v:{k}", str(v)) for k, v in self.versions.items()]),
            ("Base models", [(f"b:{k}", str(b)) for k, b in self.base_models.items()]),
        ]

    def stable_objects(self) -> dict[str, Any]:
        kind, _, pk = self.cleaned_data["stable"].partition(":")
        if kind == "v":
            return {"stable_version": self.versions[pk], "stable_base_model": None}
        return {"stable_version": None, "stable_base_model": self.base_models[pk]}


class PlaceForm(forms.Form):
    arm = forms.ChoiceField(choices=Arm.choices)
    model_version = forms.ChoiceField(
        required=False, label="Version", help_text="Empty clears the canary or shadow arm."
    )
    weight = forms.IntegerField(
        required=False, min_value=0, max_value=100, help_text="Canary only; default first step."
    )
    reason = forms.CharField(required=False, max_length=2000)

    def __init__(self, *args: Any, versions=(), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.versions = {str(v.pk): v for v in versions}
        self.fields["model_version"].choices = [("", "— none —"), *_choice_versions(versions)]

    def version(self):
        return self.versions.get(self.cleaned_data.get("model_version") or "")


class ReweightForm(forms.Form):
    weight = forms.IntegerField(min_value=0, max_value=100, label="Canary weight (%)")
    reason = forms.CharField(required=False, max_length=2000)


class RolloutForm(forms.Form):
    action = forms.ChoiceField(
        choices=[("pause", "Pause"), ("resume", "Resume"), ("abort", "Abort")]
    )
    reason = forms.CharField(required=False, max_length=2000)


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


class SettingsForm(forms.Form):
    description = forms.CharField(required=False, max_length=2000, widget=forms.Textarea)
    price_per_1k_tokens = forms.DecimalField(
        min_value=0, max_digits=12, decimal_places=6, label="Price per 1k tokens"
    )
    price_per_gpu_hour = forms.DecimalField(
        min_value=0, max_digits=12, decimal_places=4, label="Price per GPU-hour"
    )
    pii = forms.ChoiceField(choices=[(a, a) for a in PII_ACTIONS], label="PII")
    blocklist = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=100_000,
        help_text="One regular expression a line.",
    )
    blocklist_action = forms.ChoiceField(choices=[("refuse", "refuse"), ("redact", "redact")])
    classifier_version = forms.ChoiceField(
        required=False,
        label="Classifier",
        help_text="A reward model version, served by an engine of its own; empty: none.",
    )
    classifier_threshold = forms.FloatField(
        required=False,
        min_value=0,
        max_value=1,
        initial=0.5,
        help_text="Flag when 1 - P(acceptable) reaches this.",
    )
    classifier_action = forms.ChoiceField(
        required=False, choices=[("refuse", "refuse"), ("flag", "flag only")], initial="refuse"
    )
    classifier_on = forms.MultipleChoiceField(
        required=False,
        choices=[("input", "prompts"), ("output", "answers")],
        initial=["input", "output"],
        widget=forms.CheckboxSelectMultiple,
        label="Classify",
    )
    logging_policy = forms.ChoiceField(choices=Deployment.Logging.choices)
    logging_sample_percent = forms.IntegerField(min_value=0, max_value=100, initial=0)
    retention_days = forms.IntegerField(min_value=1, max_value=3650)
    window_s = forms.IntegerField(label="Rule window (s)")
    min_requests = forms.IntegerField(label="Minimum requests")
    error_rate = forms.FloatField(required=False, label="Error rate excess")
    p95_ms = forms.FloatField(required=False, label="p95 excess (ms)")
    flag_rate = forms.FloatField(required=False, label="Flag rate excess")
    negative_feedback_rate = forms.FloatField(required=False, label="Negative feedback excess")
    rollout_steps = forms.CharField(max_length=400, help_text="Percentages, e.g. 10, 25, 50, 100.")
    webhook_url = forms.URLField(required=False, max_length=200, assume_scheme="https")
    webhook_secret = forms.CharField(
        required=False,
        max_length=500,
        widget=forms.PasswordInput,
        help_text="Left empty: the secret stays as it is.",
    )

    def __init__(self, *args: Any, classifiers=(), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["classifier_version"].choices = [
            ("", "— none —"),
            *_choice_versions(classifiers),
        ]

    @classmethod
    def for_deployment(cls, deployment: Deployment, classifiers=()) -> "SettingsForm":
        guardrails = deployment.guardrails or {}
        rules = deployment.rollback_rules or {}
        steps = deployment.rollout_steps or DEFAULT_STEPS
        return cls(
            classifiers=classifiers,
            initial={
                "classifier_version": guardrails.get("classifier_version_id") or "",
                "classifier_threshold": guardrails.get("classifier_threshold", 0.5),
                "classifier_action": guardrails.get("classifier_action", "refuse"),
                "classifier_on": guardrails.get("classifier_on", ["input", "output"]),
                "description": deployment.description,
                "price_per_1k_tokens": deployment.price_per_1k_tokens,
                "price_per_gpu_hour": deployment.price_per_gpu_hour,
                "pii": guardrails.get("pii", "off"),
                "blocklist": "\n".join(guardrails.get("blocklist", [])),
                "blocklist_action": guardrails.get("blocklist_action", "refuse"),
                "logging_policy": deployment.logging_policy,
                "logging_sample_percent": deployment.logging_sample_percent,
                "retention_days": deployment.retention_days,
                **{name: rules.get(name) for name in SettingsForm.RULES},
                "rollout_steps": ", ".join(str(s) for s in steps),
                "webhook_url": deployment.webhook_url,
            },
        )

    RULES = tuple(RULE_KEYS)

    def clean_rollout_steps(self) -> list[int]:
        text = self.cleaned_data["rollout_steps"]
        try:
            return [int(part) for part in text.replace(",", " ").split()]
        except ValueError:
            raise forms.ValidationError("Whole percentages separated by commas.") from None

    def values(self, deployment: Deployment) -> dict[str, Any]:
        """What deployment_configure takes."""
        data = self.cleaned_data
        guardrails: dict[str, Any] = {
            "pii": data["pii"],
            "blocklist": _lines(data["blocklist"]),
            "blocklist_action": data["blocklist_action"],
        }
        if data.get("classifier_version"):
            # What is left empty takes the service's default (validate_guardrails).
            chosen = {
                "classifier_version_id": int(data["classifier_version"]),
                "classifier_threshold": data.get("classifier_threshold"),
                "classifier_action": data.get("classifier_action"),
                "classifier_on": data.get("classifier_on"),
            }
            guardrails |= {key: v for key, v in chosen.items() if v not in (None, "", [])}
        values: dict[str, Any] = {
            "description": data["description"],
            "price_per_1k_tokens": data["price_per_1k_tokens"],
            "price_per_gpu_hour": data["price_per_gpu_hour"],
            "guardrails": guardrails,
            "logging_policy": data["logging_policy"],
            "logging_sample_percent": data["logging_sample_percent"],
            "retention_days": data["retention_days"],
            "rollback_rules": {name: data[name] for name in self.RULES},
            "rollout_steps": data["rollout_steps"],
            "webhook_url": data["webhook_url"],
        }
        if data["webhook_secret"]:
            values["webhook_secret"] = data["webhook_secret"]
        return values


class KeyCreateForm(forms.Form):
    name = forms.CharField(max_length=100)
    expires_in_days = forms.IntegerField(
        required=False, min_value=1, max_value=3650, help_text="Empty: never expires."
    )
    requests_per_minute = forms.IntegerField(
        min_value=0, max_value=10**9, initial=0, help_text="0: no limit."
    )
    tokens_per_minute = forms.IntegerField(
        min_value=0, max_value=10**9, initial=0, help_text="0: no limit."
    )
