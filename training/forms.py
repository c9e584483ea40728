"""The job form: one field per hyperparameter, built from training.presets so the form, the
API and `launch_job` share defaults, ranges and help text."""

import json
from typing import Any

from django import forms

from core.forms import OptionalText
from training import presets
from training.models import BaseModel, JobKind, JobMethod


def _field_for(name: str, spec: presets.Field) -> forms.Field:
    label = name.replace("_", " ").capitalize()
    common: dict[str, Any] = {"label": label, "help_text": spec.help, "required": False}
    if spec.choices:
        return forms.ChoiceField(
            choices=[(c, c) for c in spec.choices], initial=spec.default, **common
        )
    if spec.kind is bool:
        return forms.BooleanField(initial=spec.default, **common)
    if spec.kind is int:
        return forms.IntegerField(
            initial=spec.default, min_value=spec.minimum, max_value=spec.maximum, **common
        )
    if spec.kind is float:
        return forms.FloatField(
            initial=spec.default, min_value=spec.minimum, max_value=spec.maximum, **common
        )
    if spec.kind is list:
        return forms.CharField(initial=", ".join(spec.default), **common)
    return forms.CharField(initial=spec.default, **common)


# Which settings each section of the form shows; the rest sit under "Training".
SECTIONS = {
    "Scaling": (
        "num_processes",
        "distributed_strategy",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "effective_batch_size",
        "precision",
        "gradient_checkpointing",
    ),
    "LoRA": ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules"),
    "Partial": ("trainable_layers", "train_head"),
    "Prompt tuning": ("num_virtual_tokens",),
    "DPO": ("dpo_beta",),
    "GRPO": ("grpo_num_generations", "grpo_max_completion_length", "grpo_beta"),
}


class JobForm(forms.Form):
    name = forms.CharField(
        max_length=200,
        required=False,
        help_text="A name for the job; its model version is named after it.",
    )
    preset = forms.ChoiceField(
        required=False,
        choices=[("", "— none —")]
        + [(k, f"{k}: {v['description']}") for k, v in presets.PRESETS.items()],
        help_text="Fills in kind, method and settings that suit a common goal; edit them after.",
    )
    kind = forms.ChoiceField(
        # Compression kinds start from a version (CompressionForm), not from this form.
        choices=[c for c in JobKind.choices if c[0] in presets.KINDS],
        initial=JobKind.SFT,
        help_text="SFT learns from demonstrations; a reward model and DPO learn from preference "
        "pairs; GRPO optimises a policy against a trained reward model.",
    )
    method = forms.ChoiceField(
        choices=JobMethod.choices,
        initial=JobMethod.LORA,
        help_text="Which weights train: all, the last layers, a LoRA adapter or soft prompt "
        "tokens.",
    )
    base_model = forms.ChoiceField(help_text="The pretrained model the job starts from.")
    parent_version = forms.ChoiceField(
        required=False,
        help_text="Optional: start from an earlier version of this project (its adapter is "
        "merged in first). Recorded as lineage.",
    )
    reward_version = forms.ChoiceField(
        required=False, help_text="GRPO only: the reward model that scores sampled completions."
    )
    snapshot = forms.ChoiceField(
        required=False,
        help_text="An immutable snapshot of gold labels; the worker exports its train and "
        "validation splits in the format the kind needs.",
    )
    accept_leakage = forms.BooleanField(
        required=False,
        label="Accept the snapshot's leakage",
        help_text="Needed only when the snapshot's leakage check found duplicates across its "
        "splits: tick it once you have read the report. Recorded with the job and its dossier.",
    )
    train_file = forms.FileField(
        required=False,
        help_text="Or a JSONL file: SFT rows with messages (or prompt/completion); preference "
        "rows with prompt, chosen and rejected.",
    )
    eval_file = forms.FileField(
        required=False,
        help_text="Optional validation JSONL in the same format, for evaluation and the sanity "
        "check.",
    )

    def __init__(self, *args, base_models=(), versions=(), snapshots=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["base_model"].choices = [(b.pk, str(b)) for b in base_models]
        generators = [(v.pk, str(v)) for v in versions if v.task != JobKind.REWARD]
        rewards = [(v.pk, str(v)) for v in versions if v.task == JobKind.REWARD]
        self.fields["parent_version"].choices = [("", "— none —"), *generators]
        self.fields["reward_version"].choices = [("", "— none —"), *rewards]
        self.fields["snapshot"].choices = [("", "— upload a file instead —")] + [
            (s.pk, f"{s.name} v{s.version} ({s.member_count} items)") for s in snapshots
        ]
        for name, spec in presets.FIELDS.items():
            self.fields[name] = _field_for(name, spec)

    def sections(self):
        grouped = {name for names in SECTIONS.values() for name in names}
        training = [self[n] for n in presets.FIELDS if n not in grouped]
        return [("Training", training)] + [
            (title, [self[n] for n in names]) for title, names in SECTIONS.items()
        ]

    def hyperparameters(self) -> dict[str, Any]:
        """What differs from the defaults; resolve_config applies the preset underneath, so a
        preset picked without the page's script still takes effect."""
        values = {}
        for name, spec in presets.FIELDS.items():
            value = self.cleaned_data.get(name)
            if value is None or value == "":
                continue
            if spec.kind is list:
                value = presets.coerce_value(name, spec, value)
            if value != spec.default:
                values[name] = value
        return values


def presets_json() -> str:
    """Presets for the form's script, which fills the fields when one is picked."""
    data = {
        name: {"kind": p["kind"], "method": p["method"], "values": p["values"]}
        for name, p in presets.PRESETS.items()
    }
    defaults = {
        name: (", ".join(f.default) if isinstance(f.default, list) else f.default)
        for name, f in presets.FIELDS.items()
    }
    return json.dumps({"presets": data, "defaults": defaults})


class BaseModelRegisterForm(forms.Form):
    """Either form of the base-model page: the packaged default (`action=default`) or a
    model by path or hub id. The service checks every value."""

    name = OptionalText()
    source = OptionalText()
    path = forms.CharField(required=False)
    license = OptionalText()
    action = OptionalText()

    def clean_source(self) -> str:
        return self.cleaned_data["source"] or BaseModel.Source.LOCAL


class PlaygroundForm(forms.Form):
    """A prompt for two models side by side. Its values go back on the page as sent,
    whatever happens, so each is a plain text here and `clean` names the one problem."""

    prompt = forms.CharField(required=False)
    max_new_tokens = forms.CharField(required=False)
    left = OptionalText()
    right = OptionalText()

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        tokens = data.get("max_new_tokens") or "64"
        data["max_new_tokens"] = tokens
        if not data.get("prompt"):
            raise forms.ValidationError("Write a prompt.")
        if not tokens.isdigit() or not 1 <= int(tokens) <= 1024:
            raise forms.ValidationError("Max new tokens: a whole number from 1 to 1024.")
        return data


class CompressionForm(forms.Form):
    """Compress a version: merge, quantize or distill (training.services.compression)."""

    kind = forms.ChoiceField(
        choices=[(k.value, k.label) for k in (JobKind.MERGE, JobKind.QUANTIZE, JobKind.DISTILL)]
    )
    name = forms.CharField(max_length=200, required=False)
    quantization = forms.ChoiceField(
        choices=[
            ("int8_weight_only", "int8 weight-only (torchao, CPU)"),
            ("bnb_int8", "8-bit (bitsandbytes, GPU only)"),
            ("bnb_nf4", "4-bit NF4 (bitsandbytes, GPU only)"),
        ],
        required=False,
        initial="int8_weight_only",
    )
    student_base = forms.ModelChoiceField(
        queryset=BaseModel.objects.none(),
        required=False,
        help_text="Distill: the student's base model (by default the teacher's).",
    )
    method = forms.ChoiceField(
        choices=[(JobMethod.LORA, "LoRA"), (JobMethod.FULL, "Full")],
        initial=JobMethod.LORA,
        required=False,
    )
    distill_method = forms.ChoiceField(
        choices=[("sequence", "Sequence-level (SFT on the teacher's answers)"), ("gkd", "GKD")],
        initial="sequence",
        required=False,
    )
    prompts = forms.FileField(
        required=False, help_text="Distill: a JSONL file of prompts the teacher answers."
    )
    max_steps = forms.IntegerField(min_value=1, required=False, initial=100)
    gate_tolerance = forms.FloatField(
        min_value=0,
        max_value=1,
        initial=0.05,
        help_text="The largest drop in token F1 against the parent the child may show.",
    )

    def __init__(self, *args: Any, bases: Any = (), **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["student_base"].queryset = bases  # type: ignore[attr-defined]
