"""A "local directory" base model comes only from the configured model folders, never
from the portal's own training output, and no answer shows where anything lies on the
server."""

import json
import tempfile
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.urls import reverse
from rest_framework.test import APIClient

from core.models import AuditEvent, Role
from tests.portal.factories import MembershipFactory
from training import services
from training.models import BaseModel, ModelVersion
from training.services.base_models import scrub_paths

pytestmark = pytest.mark.django_db


@pytest.fixture
def model_root() -> Path:
    return Path(settings.TRAINING_MODEL_ROOTS[0]).resolve()


def _model_dir(parent: Path, name: str = "model") -> Path:
    folder = Path(tempfile.mkdtemp(dir=parent)) / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    return folder


def _refusal(path: str, project=None) -> str:
    with pytest.raises(ValidationError) as caught:
        services.base_model_register(
            actor=None, project=project, name="stolen", source="local", path=path
        )
    assert not BaseModel.objects.filter(name="stolen").exists()
    return caught.value.message_dict["path"][0]


def test_a_folder_outside_the_model_roots_is_refused_without_echoing_it(tmp_path):
    outside = _model_dir(tmp_path)

    message = _refusal(str(outside))

    assert "TRAINING_MODEL_ROOTS" in message
    assert str(tmp_path) not in message
    assert "/" not in message.replace("organisation/", "")


@pytest.mark.parametrize("trick", ["../", "../../", "%s/../../../"])
def test_dot_dot_out_of_a_root_is_refused(tmp_path, model_root, trick):
    outside = _model_dir(tmp_path)
    prefix = trick % model_root if "%s" in trick else ""
    relative = (prefix or trick * 8) + str(outside).lstrip("/")

    assert "TRAINING_MODEL_ROOTS" in _refusal(relative)


def test_a_symlink_out_of_a_root_is_refused(tmp_path, model_root):
    outside = _model_dir(tmp_path)
    link = Path(tempfile.mkdtemp(dir=model_root)) / "looks-local"
    link.symlink_to(outside, target_is_directory=True)

    assert "TRAINING_MODEL_ROOTS" in _refusal(str(link))


def test_a_model_folder_whose_weights_link_outside_is_refused(tmp_path, model_root):
    secret = tmp_path / "model.safetensors"
    secret.write_bytes(b"weights of another project")
    folder = _model_dir(model_root)
    (folder / "model.safetensors").symlink_to(secret)

    message = _refusal(str(folder))

    assert "links to files outside" in message
    assert str(model_root) not in message


def test_another_projects_checkpoints_are_refused_even_under_a_wide_root(
    project, other_project, engineer, settings
):
    # An operator named a wide folder that holds the portal's media (checkpoints) too.
    media = Path(settings.MEDIA_ROOT).resolve()
    checkpoint = media / "training" / "jobs" / "991" / "final"
    checkpoint.mkdir(parents=True)
    (checkpoint / "config.json").write_text("{}")
    ModelVersion.objects.create(
        project=other_project,
        name="their fine-tune",
        base_model=BaseModel.objects.create(
            project=other_project,
            name="their base",
            source="local",
            path="/x",
            architecture="LlamaForCausalLM",
            parameter_count=1,
            tokenizer="t",
            weights_sha256="a" * 64,
        ),
        kind="full",
        path=str(checkpoint),
        base_weights_sha256="a" * 64,
    )
    settings.TRAINING_MODEL_ROOTS = [str(media.parent)]

    message = _refusal(str(checkpoint), project=project)

    assert "portal's own training output" in message
    assert str(media) not in message


def test_a_registered_versions_weights_are_refused_wherever_they_lie(
    project, other_project, model_root
):
    exported = _model_dir(model_root, "merged-export")
    base = BaseModel.objects.create(
        project=other_project,
        name="their base",
        source="local",
        path="/x",
        architecture="LlamaForCausalLM",
        parameter_count=1,
        tokenizer="t",
        weights_sha256="a" * 64,
    )
    ModelVersion.objects.create(
        project=other_project,
        name="their fine-tune",
        base_model=base,
        kind="full",
        path="/elsewhere",
        merged_path=str(exported),
        base_weights_sha256="a" * 64,
    )

    assert "portal's own training output" in _refusal(str(exported), project=project)


def test_a_hub_id_cannot_name_a_server_folder(tmp_path):
    folder = _model_dir(tmp_path)
    for hub_id in (str(folder), "../../etc", "portal/settings.py", "training/ml"):
        with pytest.raises(ValidationError, match="hub id"):
            services.base_model_register(
                actor=None, project=None, name="hub", source="hub", path=hub_id
            )


def test_a_folder_is_registered_by_its_name_under_the_root(tiny_model_dir, model_root, project):
    relative = tiny_model_dir.resolve().relative_to(model_root)

    base = services.base_model_register(
        actor=None, project=project, name="by name", source="local", path=str(relative)
    )

    assert base.path == str(tiny_model_dir.resolve())
    event = AuditEvent.objects.get(action="training.base_model.register", target_id=str(base.pk))
    assert event.data["path"] == str(relative)


def test_the_page_refuses_an_outside_path_without_showing_it(client, project, engineer, tmp_path):
    outside = _model_dir(tmp_path)
    client.force_login(engineer)

    response = client.post(
        reverse("training:base_models", args=[project.pk]),
        {"name": "stolen", "source": "local", "path": str(outside)},
    )

    assert response.status_code == 200
    body = response.content.decode()
    assert "TRAINING_MODEL_ROOTS" in body
    assert str(tmp_path) not in body
    assert not BaseModel.objects.filter(name="stolen").exists()


def test_api_base_model_and_version_answers_hold_no_server_path(project, engineer, tiny_model_dir):
    base = services.base_model_register(
        actor=engineer, project=project, name="tiny", source="local", path=str(tiny_model_dir)
    )
    media = Path(settings.MEDIA_ROOT).resolve()
    ModelVersion.objects.create(
        project=project,
        name="v1",
        base_model=base,
        kind="adapter",
        path=str(media / "training" / "jobs" / "7" / "final"),
        merged_path=str(media / "training" / "jobs" / "7" / "merged"),
        base_weights_sha256=base.weights_sha256,
    )
    MembershipFactory(project=project, user=engineer, role=Role.ADMIN)
    api = APIClient()
    api.force_authenticate(engineer)

    bodies = [
        api.get(reverse(f"training-api:{name}", args=[project.pk])).content.decode()
        for name in ("api-base-models", "api-model-versions", "api-jobs")
    ]
    bodies.append(api.get(reverse("api-audit-events", args=[project.pk])).content.decode())
    pages = [
        api.get(reverse(f"training:{name}", args=[project.pk])).content.decode()
        for name in ("base_models", "versions")
    ]

    for body in bodies + pages:
        for secret in (str(tiny_model_dir.resolve().parent), str(media), str(settings.BASE_DIR)):
            assert secret not in body
    versions = json.loads(bodies[1])
    assert versions[0]["path"] == "training/jobs/7/final"


def test_a_version_page_names_its_weights_relative_to_the_media_folder(
    client, project, engineer, tiny_model_dir
):
    base = services.base_model_register(
        actor=None, project=project, name="tiny", source="local", path=str(tiny_model_dir)
    )
    media = Path(settings.MEDIA_ROOT).resolve()
    version = ModelVersion.objects.create(
        project=project,
        name="v1",
        base_model=base,
        kind="adapter",
        path=str(media / "training" / "jobs" / "7" / "final"),
        base_weights_sha256=base.weights_sha256,
    )
    client.force_login(engineer)

    body = client.get(reverse("training:version", args=[project.pk, version.pk])).content.decode()

    assert "training/jobs/7/final" in body
    assert str(media) not in body


def test_a_base_model_row_outside_the_roots_cannot_start_a_job(project, engineer, tmp_path):
    legacy = BaseModel.objects.create(
        project=project,
        name="registered before roots",
        source="local",
        path=str(_model_dir(tmp_path)),
        architecture="LlamaForCausalLM",
        parameter_count=1,
        tokenizer="t",
        weights_sha256="a" * 64,
    )
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')

    with pytest.raises(ValidationError) as caught:
        services.training_job_create(
            actor=engineer,
            project=project,
            name="steal",
            kind="sft",
            method="lora",
            base_model=legacy,
            train_file=str(rows),
        )

    assert "TRAINING_MODEL_ROOTS" in caught.value.message_dict["base_model"][0]
    assert str(tmp_path) not in str(caught.value)


def test_runner_errors_show_paths_relative_to_their_folder():
    media = Path(settings.MEDIA_ROOT).resolve()
    text = f"OSError: {media}/training/jobs/3/final/x.bin and /etc/passwd; see https://hf.co/a/b"

    shown = scrub_paths(text)

    assert shown == "OSError: training/jobs/3/final/x.bin and passwd; see https://hf.co/a/b"
