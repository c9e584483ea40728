"""The engineer's forms on the evaluation overview. Every choice list comes from a selector
scoped to the project, so an id of another project fails as "not one of the choices"."""

import json
from typing import Any

from django import forms
from django.http import QueryDict

from annotation.selectors import snapshot_list_for_project
from core import strict_json
from core.forms import OptionalText
from core.models import Project
from core.pagination import MAX_OFFSET
from evaluation import selectors
from evaluation.services.gates import CHECK_KINDS, TEXT_METRICS
from training.selectors import base_model_list_for_project, model_version_list_for_project


class SnapshotChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        test = (obj.stats.get("splits") or {}).get("test")
        size = f"{test} test items" if test is not None else f"{obj.member_count} items"
        return f"{obj} · {obj.get_task_type_display()} · {size}"


class PromptSetFromSnapshotForm(forms.Form):
    name = forms.CharField(max_length=200)
    snapshot = SnapshotChoiceField(
        queryset=None,
        help_text="Its test split becomes the prompts and its gold responses the references.",
    )
    adversarial = forms.BooleanField(required=False, label="Red team (adversarial)")

    def __init__(self, *args: Any, project: Project, **kwargs: Any) -> None:
        super().__init__(*args, prefix="from_snapshot", **kwargs)
        self.fields["snapshot"].queryset = snapshot_list_for_project(project=project)


class ContestantForm(forms.Form):
    label = forms.CharField(
        max_length=200,
        required=False,
        help_text="What engineers see in results. A model version competes under its "
        "registry name: leave this empty for one.",
    )
    model_version = forms.ModelChoiceField(
        queryset=None, required=False, empty_label="— none —", help_text="A trained version."
    )
    base_model = forms.ModelChoiceField(
        queryset=None, required=False, empty_label="— none —", help_text="Or a base model."
    )
    prompt_template = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Optional: the text the model gets, with {prompt} where the prompt goes, "
        "e.g. “Answer briefly: {prompt}”.",
    )

    def __init__(self, *args: Any, project: Project, **kwargs: Any) -> None:
        super().__init__(*args, prefix="contestant", **kwargs)
        self.fields["model_version"].queryset = model_version_list_for_project(project=project)
        self.fields["base_model"].queryset = base_model_list_for_project(project=project)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        version, base = data.get("model_version"), data.get("base_model")
        if version is None and base is None and not self.has_error("model_version"):
            self.add_error("model_version", "Choose a model version or a base model.")
        if version is not None and base is not None:
            self.add_error(
                "base_model",
                "Choose a model version or a base model, not both: a version "
                "already names its base model.",
            )
        return data


class GenerationForm(forms.Form):
    prompt_set = forms.ModelChoiceField(queryset=None)
    contestants = forms.ModelMultipleChoiceField(
        queryset=None,
        widget=forms.CheckboxSelectMultiple,
        help_text="One generation job starts per contestant.",
    )
    max_new_tokens = forms.IntegerField(initial=64, min_value=1, max_value=4096)
    temperature = forms.FloatField(initial=0.0, min_value=0.0, help_text="0 decodes greedily.")
    seed = forms.IntegerField(initial=0, min_value=0, max_value=2**31 - 1)

    def __init__(self, *args: Any, project: Project, **kwargs: Any) -> None:
        super().__init__(*args, prefix="generate", **kwargs)
        self.fields["prompt_set"].queryset = selectors.prompt_set_list_for_project(project=project)
        self.fields["contestants"].queryset = selectors.contestant_list_runnable(project=project)


class MetricRunForm(forms.Form):
    prompt_set = forms.ModelChoiceField(
        queryset=None, help_text="Its prompts need reference answers (e.g. from a snapshot)."
    )
    contestants = forms.ModelMultipleChoiceField(
        queryset=None,
        widget=forms.CheckboxSelectMultiple,
        help_text="One metric run per contestant, on its latest outputs for the prompt set.",
    )
    slice_field = forms.CharField(
        required=False,
        max_length=100,
        help_text="Optional prompt metadata field (e.g. language) to compare groups on.",
    )

    def __init__(self, *args: Any, project: Project, **kwargs: Any) -> None:
        super().__init__(*args, prefix="metrics", **kwargs)
        self.fields["prompt_set"].queryset = selectors.prompt_set_list_for_project(project=project)
        self.fields["contestants"].queryset = selectors.contestant_list_for_project(project=project)


CHECK_CHOICES = [
    ("", "— no check —"),
    ("rating_above_baseline", "Rating: candidate beats the baseline in a campaign"),
    ("metric_not_worse", "Metric: candidate not worse than the baseline on a prompt set"),
    ("general_not_worse", "General competence: not worse on a held-out general set"),
    ("no_fairness_flag", "Fairness: no flagged group on a prompt set"),
    ("unsafe_rate_below", "Safety: unsafe rate below a maximum in a red-team campaign"),
]


class GateForm(forms.Form):
    name = forms.CharField(max_length=200)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, prefix="gate", **kwargs)


class GateCheckForm(forms.Form):
    """One check of a gate; which of the parameters it needs depends on its kind."""

    kind = forms.ChoiceField(choices=CHECK_CHOICES, required=False)
    campaign = forms.ModelChoiceField(queryset=None, required=False, empty_label="—")
    prompt_set = forms.ModelChoiceField(queryset=None, required=False, empty_label="—")
    metric = forms.ChoiceField(choices=[(m, m) for m in TEXT_METRICS], required=False)
    tolerance = forms.FloatField(
        required=False, min_value=0.0, help_text="Metric checks: how much lower still passes."
    )
    max = forms.FloatField(
        required=False,
        min_value=0.0,
        max_value=1.0,
        label="Max unsafe rate",
        help_text="Safety checks: a share, e.g. 0.05.",
    )

    def __init__(self, *args: Any, project: Project, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["campaign"].queryset = selectors.campaign_list_for_project(project=project)
        self.fields["prompt_set"].queryset = selectors.prompt_set_list_for_project(project=project)
        # The rows render as table cells without <label>s; name each control for screen
        # readers (and for tests that find controls the way people do).
        row = (self.prefix or "").rpartition("-")[2]
        where = f"Check {int(row) + 1}" if row.isdigit() else "Check"
        for name, field in self.fields.items():
            label = (field.label or name.replace("_", " ")).lower()
            field.widget.attrs["aria-label"] = f"{where}: {label}"

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        kind = data.get("kind")
        if not kind:
            return data
        for param in CHECK_KINDS[kind]:
            if data.get(param) in (None, "") and not self.has_error(param):
                label = self.fields[param].label or param.replace("_", " ")
                self.add_error(param, f"This check needs a {label.lower()}.")
        return data

    def check(self) -> dict[str, Any] | None:
        """The check as gate_create takes it; None for a row left empty."""
        data = self.cleaned_data
        kind = data.get("kind")
        if not kind:
            return None
        check: dict[str, Any] = {"kind": kind}
        for param in CHECK_KINDS[kind]:
            value = data[param]
            check[param] = value.pk if hasattr(value, "pk") else value
        if data.get("tolerance") is not None and "metric" in check:
            check["tolerance"] = data["tolerance"]
        return check


class BaseGateCheckFormSet(forms.BaseFormSet):
    def clean(self) -> None:
        if any(self.errors):
            return
        if not any(form.cleaned_data.get("kind") for form in self.forms):
            raise forms.ValidationError("Add at least one check: choose its kind.")

    def checks(self) -> list[dict[str, Any]]:
        return [c for form in self.forms if (c := form.check()) is not None]


GateCheckFormSet = forms.formset_factory(
    GateCheckForm, formset=BaseGateCheckFormSet, extra=3, max_num=10, validate_max=True
)


def gate_check_formset(data: Any = None, *, project: Project) -> BaseGateCheckFormSet:
    return GateCheckFormSet(data, prefix="check", form_kwargs={"project": project})


class GateRunForm(forms.Form):
    gate = forms.ModelChoiceField(queryset=None)
    candidate = forms.ModelChoiceField(queryset=None)
    baseline = forms.ModelChoiceField(queryset=None)

    def __init__(self, *args: Any, project: Project, **kwargs: Any) -> None:
        super().__init__(*args, prefix="gate_run", **kwargs)
        self.fields["gate"].queryset = selectors.gate_list_for_project(project=project)
        contestants = selectors.contestant_list_for_project(project=project)
        self.fields["candidate"].queryset = contestants
        self.fields["baseline"].queryset = contestants

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        candidate, baseline = data.get("candidate"), data.get("baseline")
        if candidate is not None and candidate == baseline:
            self.add_error("baseline", "Choose a baseline other than the candidate.")
        return data


def criteria_from_post(post: QueryDict) -> dict[str, dict[str, str]]:
    """Form fields `crit-<key>-a` / `crit-<key>-b` → {key: {a, b}}."""
    out: dict[str, dict[str, str]] = {}
    for name, value in post.items():
        if name.startswith("crit-") and value != "":
            key, _, side = name[5:].rpartition("-")
            out.setdefault(key, {})[side] = value
    return out


class JudgmentForm(forms.Form):
    """A reviewer's verdict on a blind pair. The service checks every value; the per-criterion
    scores (`crit-<key>-<side>`) are as many as the campaign asks, read by `clean`."""

    token = OptionalText()
    outcome = OptionalText()
    rationale = OptionalText()
    seconds = OptionalText()
    unsafe_a = forms.BooleanField(required=False)
    unsafe_b = forms.BooleanField(required=False)

    def clean_seconds(self) -> float | None:
        # Time spent is measured by the page's script; a garbled value is no reason to
        # refuse the verdict, it is just not known.
        try:
            seconds = float(self.cleaned_data["seconds"] or "nan")
        except ValueError:
            return None
        return None if seconds != seconds else seconds

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        data["criteria"] = criteria_from_post(self.data)
        return data


class PromptSetUploadForm(forms.Form):
    """The overview's prompt set upload: a JSONL file, one {prompt, ...} per line."""

    name = OptionalText()
    file = forms.FileField(required=False, allow_empty_file=True)  # no rows: the service says
    adversarial = forms.BooleanField(required=False)
    general = forms.BooleanField(required=False)
    license = OptionalText()
    synthetic = forms.BooleanField(required=False)

    def clean_file(self) -> list[Any]:
        """The file's rows, each line read as strictly as the API reads a body."""
        upload = self.cleaned_data["file"]
        if upload is None:
            raise forms.ValidationError("Choose a JSONL file with one {prompt, ...} per line.")
        try:
            text = upload.read().decode("utf-8")
        except UnicodeDecodeError as bad:
            raise forms.ValidationError(f"not UTF-8 text ({bad.reason})") from None
        rows = []
        for n, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(strict_json.decode(line))
                except json.JSONDecodeError as bad:
                    raise forms.ValidationError(f"line {n}: not JSON ({bad.msg})") from None
                except strict_json.JSONLimitError as bad:
                    field = f", field {bad.path!r}" if bad.path else ""
                    raise forms.ValidationError(f"line {n}{field}: {bad.reason}") from None
        return rows


class CampaignForm(forms.Form):
    """The overview's new campaign: the service checks the contestants and settings."""

    name = OptionalText()
    # An id the view looks up in the project: a prompt set not there is 404, as in the API.
    prompt_set = OptionalText()
    contestants = forms.ModelMultipleChoiceField(queryset=None, required=False)
    question = OptionalText()
    raters_per_pair = forms.IntegerField(required=False)
    rater_quota = forms.IntegerField(required=False)
    pair_selection = OptionalText()

    def __init__(self, *args: Any, project: Project, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["contestants"].queryset = selectors.contestant_list_for_project(project=project)


class CampaignActionForm(forms.Form):
    """The results page's buttons: bootstrap, close, export, or exclude/include a rater."""

    action = OptionalText()
    reviewer = OptionalText()
    name = OptionalText()

    def clean_reviewer(self) -> int:
        # A posted id; 0 (no such rater) for anything that is not one.
        reviewer = self.cleaned_data["reviewer"]
        return int(reviewer) if reviewer.isdigit() else 0


class OutputFilterForm(forms.Form):
    """The outputs page's filters (GET), as the API's generation-outputs/ names them."""

    generation_job = forms.IntegerField(required=False, min_value=1, max_value=MAX_OFFSET)
    contestant = forms.IntegerField(required=False, min_value=1, max_value=MAX_OFFSET)
    prompt_set = forms.IntegerField(required=False, min_value=1, max_value=MAX_OFFSET)
    campaign = forms.IntegerField(required=False, min_value=1, max_value=MAX_OFFSET)

    def filters(self) -> dict[str, int]:
        """The filters given; call after is_valid()."""
        return {key: value for key, value in self.cleaned_data.items() if value is not None}
