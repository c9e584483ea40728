import io

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from tests.training.conftest import QUICK
from training import services
from training.models import TrainingJob

pytestmark = pytest.mark.django_db


def _jobs_url(project) -> str:
    return f"/api/v1/projects/{project.pk}/fine_tuning/jobs/"


def _yaml(project, engineer, data_files, extra: str = "") -> str:
    return (
        f"project: {project.slug}\nuser: {engineer.username}\nbase_model: tiny-llama\n"
        f"kind: sft\nmethod: lora\ntrain_file: {data_files['sft_train']}\n"
        "hyperparameters: {max_steps: 3, max_length: 64, lora_target_modules: [q_proj]}\n" + extra
    )


def test_launch_job_refuses_a_key_it_does_not_know_naming_it(
    engineer, project, tiny_base_model, data_files, tmp_path
):
    config = tmp_path / "job.yaml"
    config.write_text(_yaml(project, engineer, data_files, "num_processes: 2\nnmae: typo\n"))

    with pytest.raises(CommandError) as refused:
        call_command("launch_job", str(config), "--inline", stdout=io.StringIO())

    message = str(refused.value)
    assert "num_processes: unknown key" in message
    assert "nmae: unknown key. Did you mean name?" in message
    assert not TrainingJob.objects.exists()


def test_launch_job_refuses_an_unknown_setting_under_hyperparameters(
    engineer, project, tiny_base_model, data_files, tmp_path
):
    config = tmp_path / "job.yaml"
    config.write_text(
        _yaml(project, engineer, data_files).replace("max_steps: 3", "max_steps: 3, max_step: 9")
    )

    with pytest.raises(CommandError, match="max_step: unknown setting. Did you mean max_steps"):
        call_command("launch_job", str(config), "--inline", stdout=io.StringIO())

    assert not TrainingJob.objects.exists()


def test_the_service_names_an_unknown_setting_and_a_context_length_error_together(
    engineer, project, tiny_base_model, data_files
):
    values = {**QUICK, "tensor_parallel": 2, "max_length": 100_000}

    with pytest.raises(ValidationError) as refused:
        services.training_job_create(
            actor=engineer,
            project=project,
            name="both",
            kind="sft",
            method="lora",
            base_model=tiny_base_model,
            values=values,
            train_file=str(data_files["sft_train"]),
            eval_file=str(data_files["sft_train"].with_name("missing.jsonl")),
        )

    errors = refused.value.message_dict
    assert errors["tensor_parallel"] == ["unknown setting."]
    assert "exceeds the model's context of 512" in errors["max_length"][0]
    assert "does not exist" in errors["eval_file"][0]
    assert not TrainingJob.objects.exists()


def test_api_answers_an_unknown_setting_and_a_context_length_error_in_one_400(
    client, engineer, project, tiny_base_model
):
    client.force_login(engineer)

    response = client.post(
        _jobs_url(project),
        {
            "model": tiny_base_model.pk,
            "training_file": "file-0123456789abcdef",
            "hyperparameters": {"no_such_setting": 1, "max_length": 100_000},
        },
        content_type="application/json",
    )

    assert response.status_code == 400
    body = response.json()
    assert body["no_such_setting"] == ["unknown setting."]
    assert "exceeds the model's context of 512" in body["max_length"][0]
    assert "No uploaded file file-0123456789abcdef" in body["training_file"][0]
    assert all(isinstance(messages, list) for messages in body.values())
    assert not TrainingJob.objects.exists()


def test_api_refuses_a_body_field_it_does_not_know_with_the_settings_errors(
    client, engineer, project, tiny_base_model
):
    client.force_login(engineer)

    response = client.post(
        _jobs_url(project),
        {
            "model": tiny_base_model.pk,
            "num_processes": 2,
            "hyperparamters": {"max_steps": 3},
            "kind": "sft",
            "hyperparameters": {"max_length": 100_000},
        },
        content_type="application/json",
    )

    assert response.status_code == 400
    body = response.json()
    assert body["num_processes"][0].startswith("Unknown field")
    assert "Did you mean hyperparameters?" in body["hyperparamters"][0]
    assert "exceeds the model's context" in body["max_length"][0]
    assert not TrainingJob.objects.exists()


def test_api_names_a_missing_base_model_and_version_as_fields_not_a_404(
    client, engineer, project, tiny_base_model
):
    client.force_login(engineer)

    response = client.post(
        _jobs_url(project),
        {"model": 999_999, "parent_version": 999_999, "snapshot": 999_999},
        content_type="application/json",
    )

    assert response.status_code == 400
    body = response.json()
    assert set(body) >= {"model", "parent_version", "snapshot"}
    assert not TrainingJob.objects.exists()


def test_other_endpoints_answer_400s_in_the_same_shape(client, admin, project):
    client.force_login(admin)

    unknown_user = client.post(
        f"/api/v1/projects/{project.pk}/memberships/",
        {"username": "nobody-here", "role": "annotator"},
        content_type="application/json",
    )
    malformed = client.post(
        f"/api/v1/projects/{project.pk}/memberships/", "{oops", content_type="application/json"
    )

    assert unknown_user.status_code == 400
    assert unknown_user.json() == {"username": ["No active account has that username."]}
    assert malformed.status_code == 400
    (message,) = malformed.json()["detail"]
    assert message.startswith("JSON parse error - ")


def test_field_lists_flattens_every_shape_drf_and_services_produce():
    from core.api_errors import field_lists

    assert field_lists("one") == {"detail": ["one"]}
    assert field_lists(["one", "two"]) == {"detail": ["one", "two"]}
    assert field_lists({"a": "x", "__all__": ["y"], "non_field_errors": ["z"]}) == {
        "a": ["x"],
        "detail": ["y", "z"],
    }
    assert field_lists({"hyperparameters": {"lr": ["bad"]}}) == {"hyperparameters.lr": ["bad"]}
    assert field_lists({"items": [{}, {"text": ["empty"]}]}) == {"items.1.text": ["empty"]}
