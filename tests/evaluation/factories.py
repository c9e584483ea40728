"""Campaigns built through the real services: prompt sets, contestants with imported
outputs, and a campaign over them."""

from annotation.models import LabelSchema
from annotation.services.snapshots import snapshot_create
from evaluation import services
from tests.annotation.factories import DatasetFactory, gold_item
from training.models import BaseModel, ModelVersion

CATEGORIES = ("billing", "shipping")
WORDS = ["cat", "dog", "sun", "tree", "blue", "red", "fish", "bird"]


def prompt_rows(n: int) -> list[dict]:
    return [
        {
            "prompt": f"Customer question number {i}: where is my parcel?",
            "category": CATEGORIES[i % 2],
            "reference": f"Your parcel {i} is on its way and arrives tomorrow.",
            "metadata": {"language": "en" if i % 3 else "de"},
        }
        for i in range(n)
    ]


def writing_snapshot(
    project, engineer, *, rows: int = 40, split_ratios=None, name="gold", duplicate=False
):
    """A snapshot of `rows` gold-labelled writing items: instruction in, response out. With
    `duplicate` the instructions are near copies of one text (identical ones would share a
    split group), so the splits leak."""
    LabelSchema.objects.get_or_create(
        project=project,
        version=1,
        defaults={
            "task_type": "writing",
            "config": {
                "mode": "write",
                "prompt_field": "instruction",
                "response_field": "response",
            },
            "created_by": engineer,
        },
    )
    dataset = DatasetFactory(project=project)
    for i in range(rows):
        word = WORDS[i % len(WORDS)]
        instruction = (
            f"please repeat the following word back to me exactly twice in a row: cat, copy {i}"
            if duplicate
            else f"repeat {word} {i}"
        )
        gold_item(dataset, {"instruction": instruction}, {"response": f"{word} {word}"})
    return snapshot_create(
        actor=engineer, project=project, name=name, seed=1, split_ratios=split_ratios
    )


def base_model(project, name: str) -> BaseModel:
    """A base model row with no weights behind it: enough for everything but inference."""
    return BaseModel.objects.create(
        project=project,
        name=name,
        source="local",
        path=f"/models/{name}",
        architecture="LlamaForCausalLM",
        parameter_count=1000,
        tokenizer="tiny",
        weights_sha256="1" * 64,
    )


def model_version(project, name: str, stage: str = "candidate") -> ModelVersion:
    base = base_model(project, f"base-for-{name}")
    return ModelVersion.objects.create(
        project=project,
        name=name,
        base_model=base,
        kind="adapter",
        path=f"/models/{name}",
        base_weights_sha256="0" * 64,
        stage=stage,
    )


def contestant_with_outputs(engineer, project, prompt_set, label, outputs, version=None):
    contestant = services.contestant_create(
        actor=engineer,
        project=project,
        label=label,
        model_version=version,
        base_model=version.base_model if version else None,
    )
    services.generations_import(
        actor=engineer, contestant=contestant, prompt_set=prompt_set, outputs=outputs
    )
    return contestant


def build_campaign(
    engineer,
    project,
    *,
    prompts: int = 6,
    contestants: int = 3,
    raters_per_pair: int = 1,
    attention_every: int = 0,
    identical_on: tuple[int, ...] = (),
    adversarial: bool = False,
    pair_selection: str = "all",
    with_versions: bool = False,
    name: str = "Support answers, round 1",
):
    prompt_set = services.prompt_set_create(
        actor=engineer,
        project=project,
        name=f"{name} prompts",
        rows=prompt_rows(prompts),
        adversarial=adversarial,
    )
    made = []
    for c in range(contestants):
        outputs = [
            "Same shared answer." if i in identical_on else f"Answer {i} written by system {c}."
            for i in range(prompts)
        ]
        # A version competes under its registry name, so the version carries the label.
        version = model_version(project, f"Contender-Quokka-{c}") if with_versions else None
        made.append(
            contestant_with_outputs(
                engineer, project, prompt_set, f"Contender-Quokka-{c}", outputs, version
            )
        )
    campaign = services.campaign_create(
        actor=engineer,
        project=project,
        name=name,
        prompt_set=prompt_set,
        contestants=made,
        raters_per_pair=raters_per_pair,
        attention_every=attention_every,
        pair_selection=pair_selection,
    )
    return campaign, made
