"""The sweep form: a base job, the search space and initial trials as JSON, the budget."""

import json
from typing import Any

from django import forms

from training.models import Sweep

EXAMPLE_SPACE = {
    "learning_rate": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True},
    "lora_r": {"type": "categorical", "choices": [8, 16, 32]},
}


def _json(value: str, kind: type, message: str) -> Any:
    try:
        found = json.loads(value or ("[]" if kind is list else "{}"))
    except json.JSONDecodeError as error:
        raise forms.ValidationError(f"Not JSON: {error}") from None
    if not isinstance(found, kind):
        raise forms.ValidationError(message)
    return found


class SweepForm(forms.Form):
    name = forms.CharField(max_length=200, required=False)
    base_job = forms.IntegerField()
    search_space = forms.CharField(widget=forms.Textarea(attrs={"rows": 6}))
    initial_trials = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    n_trials = forms.IntegerField(min_value=1, initial=8)
    concurrency = forms.IntegerField(min_value=1, initial=1)
    max_minutes = forms.IntegerField(min_value=1, required=False)
    sampler = forms.ChoiceField(choices=Sweep.Sampler.choices, initial=Sweep.Sampler.TPE)
    pruner = forms.ChoiceField(choices=Sweep.Pruner.choices, initial=Sweep.Pruner.MEDIAN)
    seed = forms.IntegerField(initial=0)

    def clean_search_space(self) -> dict[str, Any]:
        return _json(self.cleaned_data["search_space"], dict, "Give an object of settings.")

    def clean_initial_trials(self) -> list[Any]:
        return _json(self.cleaned_data["initial_trials"], list, "Give a list of objects.")
