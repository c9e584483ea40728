"""Text generation from a base model or a model version, for evaluation and the playground.

Runs on a Celery worker (or any process that may load torch), never in a web process: the
runner module loads the model lazily and keeps it cached between calls.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError

from training import runner
from training.models import BaseModel, ModelVersion


@dataclass(frozen=True)
class Completion:
    text: str
    # Stopped at max_new_tokens rather than at an end token: the answer was cut.
    truncated: bool


def generate(
    *,
    base_model: BaseModel,
    model_version: ModelVersion | None = None,
    prompts: Sequence[str | list[dict]],
    max_new_tokens: int = 128,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    prompt_template: str | None = None,
) -> list[str]:
    """One completion per prompt, in order: generate_completions' texts."""
    completions = generate_completions(
        base_model=base_model,
        model_version=model_version,
        prompts=prompts,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        prompt_template=prompt_template,
    )
    return [c.text for c in completions]


def generate_completions(
    *,
    base_model: BaseModel,
    model_version: ModelVersion | None = None,
    prompts: Sequence[str | list[dict]],
    max_new_tokens: int = 128,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    prompt_template: str | None = None,
) -> list[Completion]:
    """One completion per prompt, in order, each saying whether it was cut at
    max_new_tokens. Greedy when temperature is 0.

    `prompt_template` is text with a `{prompt}` placeholder; without one, prompts are sent
    through the model's chat template: text as a user turn, a conversation (a list of
    {role, content} turns) as its turns.
    """
    adapter_path = full_path = None
    if model_version is not None:
        if model_version.task == "reward":
            raise ValidationError("A reward model scores text; it does not generate.")
        if model_version.base_weights_sha256 != base_model.weights_sha256:
            raise ValidationError(
                f"{model_version.name} was trained on other weights than {base_model.name}."
            )
        if model_version.kind == ModelVersion.Kind.ADAPTER:
            adapter_path = model_version.path
        else:
            full_path = model_version.path
    if not prompts:
        return []
    generated = runner.generate_completions(
        base_path=base_model.path,
        adapter_path=adapter_path,
        full_path=full_path,
        prompts=list(prompts),
        max_new_tokens=int(max_new_tokens),
        temperature=float(temperature),
        top_p=float(top_p),
        seed=int(seed),
        prompt_template=prompt_template,
    )
    return [Completion(text=text, truncated=cut) for text, cut in generated]


def generate_by_ids(
    *, base_model_id: int, model_version_id: int | None, prompts: list[str], **options: Any
) -> list[str]:
    base_model = BaseModel.objects.get(pk=base_model_id)
    version = ModelVersion.objects.get(pk=model_version_id) if model_version_id else None
    return generate(base_model=base_model, model_version=version, prompts=prompts, **options)
