"""Deployments and the versions they serve, made directly: these tests are about serving,
not about how a version reached its stage (tests/governance covers that)."""

import itertools
import json

from serving.models import EngineInstance, EngineKind
from serving.services.deployments import deployment_create
from training.models import BaseModel, JobKind, ModelVersion

_n = itertools.count(1)


def base_model(project=None, *, path="/models/base") -> BaseModel:
    n = next(_n)
    return BaseModel.objects.create(
        project=project,
        name=f"base-{n}",
        source="local",
        path=path,
        architecture="LlamaForCausalLM",
        parameter_count=1000,
        tokenizer="char",
    )


def version(project, *, stage="candidate", base=None, name=None) -> ModelVersion:
    base = base or base_model(project)
    return ModelVersion.objects.create(
        project=project,
        name=name or f"v-{next(_n)}",
        base_model=base,
        kind="full",
        path=f"/models/v{next(_n)}",
        base_weights_sha256="0" * 64,
        stage=stage,
    )


def engine(*, model_version=None, base=None, url, kind=EngineKind.EXTERNAL, served="m"):
    project_id = (model_version or base).project_id
    return EngineInstance.objects.create(
        project_id=project_id,
        engine=kind,
        model_version=model_version,
        base_model=base,
        base_url=url,
        served_model=served,
        status=EngineInstance.Status.READY,
    )


def deployment(project, actor, *, name=None, stable=None, base=None, **settings):
    if stable is None and base is None:
        stable = version(project, stage="production")
    return deployment_create(
        actor=actor,
        project=project,
        name=name or f"dep-{next(_n)}",
        engine=EngineKind.EXTERNAL,
        stable_version=stable,
        stable_base_model=base,
        settings=settings,
    )


def reward_version(project, folder, **fields) -> ModelVersion:
    """A reward model version (a classifier) whose weights folder holds a config."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"architectures": ["LlamaForSeq"]}))
    base = version(project).base_model
    return ModelVersion.objects.create(
        project=project,
        name=fields.pop("name", "safety-rm"),
        base_model=base,
        kind=fields.pop("kind", ModelVersion.Kind.FULL),
        task=fields.pop("task", JobKind.REWARD),
        path=str(folder),
        base_weights_sha256="0" * 64,
        **fields,
    )
