from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from core.models import AuditEvent, JobStatus, Role
from tests.evaluation import factories as evaluation_factories
from tests.training.conftest import QUICK
from training import services
from training.models import TrainingJob
from training.services import execution

pytestmark = pytest.mark.django_db

ROLES = [r.value for r in Role]
READERS = {"engineer", "admin", "compliance"}


@pytest.fixture
def job(engineer, project, tiny_base_model, data_files):
    return services.training_job_create(
        actor=engineer,
        project=project,
        name="first",
        kind="sft",
        method="lora",
        base_model=tiny_base_model,
        values=QUICK,
        train_file=str(data_files["sft_train"]),
    )


@pytest.mark.parametrize("role", ROLES)
def test_only_engineers_open_the_form_and_cancel(client, member_of, project, job, role):
    client.force_login(member_of(role))

    form = client.get(reverse("training:job_new", args=[project.pk]))
    cancel = client.post(reverse("training:job_cancel", args=[project.pk, job.pk]))

    job.refresh_from_db()
    if role == "engineer":
        assert form.status_code == 200
        assert cancel.status_code == 302
        assert job.status == JobStatus.CANCELLED
    else:
        assert form.status_code == 403
        assert cancel.status_code == 403
        assert job.status == JobStatus.QUEUED


def test_outsiders_cannot_tell_the_job_exists(client, outsider, project, job):
    client.force_login(outsider)

    assert client.get(reverse("training:job", args=[project.pk, job.pk])).status_code == 404


def test_a_job_of_another_project_is_not_found(client, outsider, other_project, job):
    client.force_login(outsider)

    response = client.get(reverse("training:job", args=[other_project.pk, job.pk]))

    assert response.status_code == 404


def test_form_shows_help_text_for_every_setting(client, engineer, project, tiny_base_model):
    client.force_login(engineer)

    body = client.get(reverse("training:job_new", args=[project.pk])).content.decode()

    assert "Peak step size of AdamW" in body
    assert "LoRA rank" in body
    assert "lora-quick" in body


def test_form_launches_a_job_from_an_upload(client, engineer, project, tiny_base_model, data_files):
    client.force_login(engineer)
    with open(data_files["sft_train"], "rb") as train:
        response = client.post(
            reverse("training:job_new", args=[project.pk]),
            {
                "name": "from the form",
                "preset": "lora-quick",
                "kind": "sft",
                "method": "lora",
                "base_model": tiny_base_model.pk,
                "train_file": train,
                "max_steps": 5,
                "max_length": 64,
                "lora_target_modules": "q_proj, v_proj",
                "train_head": "on",
            },
        )

    job = TrainingJob.objects.get(name="from the form")
    assert response.status_code == 302
    assert job.config["max_steps"] == 5
    assert job.config["lora_target_modules"] == ["q_proj", "v_proj"]
    assert job.data["train"]["name"].endswith("-sft_train.jsonl")


def test_form_shows_the_reason_for_a_bad_target_module(
    client, engineer, project, tiny_base_model, data_files
):
    client.force_login(engineer)
    with open(data_files["sft_train"], "rb") as train:
        response = client.post(
            reverse("training:job_new", args=[project.pk]),
            {
                "kind": "sft",
                "method": "lora",
                "base_model": tiny_base_model.pk,
                "train_file": train,
                "lora_target_modules": "c_attn",
                "train_head": "on",
            },
        )

    assert response.status_code == 200
    assert "c_attn not found in the model" in response.content.decode()
    assert not TrainingJob.objects.exists()


def test_live_region_renders_alone_for_htmx(client, engineer, project, job):
    client.force_login(engineer)

    response = client.get(
        reverse("training:job", args=[project.pk, job.pk]) + "?part=live", HTTP_HX_REQUEST="true"
    )

    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<section id="job-live"')
    assert "echart" not in body  # the chart sits outside and updates in place


@pytest.mark.parametrize("role", ROLES)
def test_api_only_engineers_create_and_cancel(
    client, member_of, project, job, tiny_base_model, role
):
    client.force_login(member_of(role))
    base = f"/api/v1/projects/{project.pk}/fine_tuning/jobs/"

    listing = client.get(base)
    created = client.post(
        base,
        {"model": tiny_base_model.pk, "kind": "sft", "method": "lora"},
        content_type="application/json",
    )
    cancel = client.post(f"{base}{job.pk}/cancel/")

    assert listing.status_code == (200 if role in READERS else 403)
    if role == "engineer":
        assert created.status_code == 400  # no training file: the reason is named
        assert "training_file" in created.json()
        assert cancel.status_code == 200
        assert cancel.json()["status"] == "cancelled"
    else:
        assert created.status_code == 403
        assert cancel.status_code == 403


def test_api_job_lifecycle_through_file_upload(
    client, engineer, project, tiny_base_model, data_files
):
    client.force_login(engineer)
    base = f"/api/v1/projects/{project.pk}/"
    with open(data_files["sft_train"], "rb") as handle:
        uploaded = client.post(base + "fine_tuning/files/", {"file": handle}).json()

    created = client.post(
        base + "fine_tuning/jobs/",
        {
            "model": tiny_base_model.pk,
            "training_file": uploaded["id"],
            "hyperparameters": {"max_steps": 3},
        },
        content_type="application/json",
    )
    job_id = created.json()["id"]
    detail = client.get(f"{base}fine_tuning/jobs/{job_id}/").json()
    events = client.get(f"{base}fine_tuning/jobs/{job_id}/events/").json()
    checkpoints = client.get(f"{base}fine_tuning/jobs/{job_id}/checkpoints/").json()

    assert created.status_code == 201
    assert detail["object"] == "fine_tuning.job"
    assert detail["status"] == "queued"
    assert detail["hyperparameters"]["max_steps"] == 3
    assert events == {"object": "list", "data": []}
    assert checkpoints == {"object": "list", "data": []}


def test_api_events_page_forward_with_a_cursor_per_kind(client, engineer, project, job):
    logs = [job.log_lines.create(message=f"line {i}") for i in range(3)]
    metrics = [job.metrics.create(step=i, values={"loss": 1.0 / (i + 1)}) for i in range(3)]
    client.force_login(engineer)
    url = f"/api/v1/projects/{project.pk}/fine_tuning/jobs/{job.pk}/events/"

    both = client.get(url, {"after": [f"log-{logs[1].pk}", f"metric-{metrics[0].pk}"]})
    one = client.get(url, {"after": f"log-{logs[1].pk}"})

    assert [e["id"] for e in both.json()["data"]] == [
        f"log-{logs[2].pk}",
        f"metric-{metrics[1].pk}",
        f"metric-{metrics[2].pk}",
    ]
    # One cursor alone pages only its own kind, as before.
    assert {e["id"] for e in one.json()["data"]} == {
        f"log-{logs[2].pk}",
        *(f"metric-{m.pk}" for m in metrics),
    }


def test_api_refuses_a_file_id_of_another_project(
    client, engineer, project, other_project, tiny_base_model, data_files
):
    with open(data_files["sft_train"], "rb") as handle:
        stored = services.training_file_store(project=other_project, upload=handle, name="x.jsonl")
    client.force_login(engineer)

    response = client.post(
        f"/api/v1/projects/{project.pk}/fine_tuning/jobs/",
        {"model": tiny_base_model.pk, "training_file": stored["id"]},
        content_type="application/json",
    )

    assert response.status_code == 400
    assert not TrainingJob.objects.exists()


def test_opening_the_jobs_page_changes_no_job(client, engineer, project, job):
    # A running job whose worker is gone: only the beat sweep may fail it, not a page view.
    TrainingJob.objects.filter(pk=job.pk).update(
        status=JobStatus.RUNNING, heartbeat_at=timezone.now() - timedelta(minutes=10)
    )
    client.force_login(engineer)

    assert client.get(reverse("training:jobs", args=[project.pk])).status_code == 200

    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING


# --- playground ---------------------------------------------------------------------------


def _playground_post(client, project, left, right, prompt="repeat cat"):
    return client.post(
        reverse("training:playground", args=[project.pk]),
        {"prompt": prompt, "max_new_tokens": "8", "left": left, "right": right},
    )


def test_the_playground_is_audited_and_queues_both_generations_after_commit(
    client, engineer, project, django_capture_on_commit_callbacks
):
    base = evaluation_factories.base_model(project, "tiny-left")
    version = evaluation_factories.model_version(project, "tuned")
    client.force_login(engineer)

    with django_capture_on_commit_callbacks() as callbacks:
        response = _playground_post(client, project, f"b{base.pk}", f"v{version.pk}")

    assert response.status_code == 200
    assert len(callbacks) == 2  # one generation per side, sent only after commit
    event = AuditEvent.objects.get(action="training.playground.generate")
    assert (event.actor_id, event.project_id) == (engineer.pk, project.pk)
    assert event.data["models"] == [
        {"base_model": base.pk, "model_version": None},
        {"base_model": version.base_model_id, "model_version": version.pk},
    ]
    assert event.data["max_new_tokens"] == 8
    assert "repeat cat" not in str(event.data)  # the prompt only by its hash
    for task_id in event.data["tasks"]:
        assert reverse("training:playground_result", args=[project.pk, task_id]) in (
            response.content.decode()
        )


@pytest.mark.parametrize("role", sorted(set(ROLES) - {"engineer"}))
def test_only_engineers_may_generate_in_the_playground(
    client, member_of, project, role, django_capture_on_commit_callbacks
):
    base = evaluation_factories.base_model(project, "tiny-left")
    client.force_login(member_of(role))

    with django_capture_on_commit_callbacks() as callbacks:
        response = _playground_post(client, project, f"b{base.pk}", f"b{base.pk}")

    assert response.status_code == 403
    assert callbacks == []
    assert not AuditEvent.objects.filter(action="training.playground.generate").exists()


def test_a_stranger_cannot_generate_in_the_playground(
    client, outsider, project, django_capture_on_commit_callbacks
):
    base = evaluation_factories.base_model(project, "tiny-left")
    client.force_login(outsider)

    with django_capture_on_commit_callbacks() as callbacks:
        response = _playground_post(client, project, f"b{base.pk}", f"b{base.pk}")

    assert response.status_code == 404
    assert callbacks == []
    assert not AuditEvent.objects.filter(action="training.playground.generate").exists()


def test_a_model_of_another_project_is_not_found_in_the_playground(
    client, engineer, project, other_project, django_capture_on_commit_callbacks
):
    mine = evaluation_factories.base_model(project, "tiny-left")
    theirs = evaluation_factories.base_model(other_project, "their-model")
    client.force_login(engineer)

    with django_capture_on_commit_callbacks() as callbacks:
        response = _playground_post(client, project, f"b{mine.pk}", f"b{theirs.pk}")

    assert response.status_code == 404
    assert callbacks == []
    assert not AuditEvent.objects.filter(action="training.playground.generate").exists()


@pytest.mark.parametrize(("truncated", "warned"), [(30, True), (2, False)])
def test_job_page_warns_when_preflight_truncated_many_rows(
    client, engineer, project, job, tmp_path, truncated, warned
):
    follower = execution.Follower(job, tmp_path / "events.jsonl")
    follower.handle(
        {
            "type": "preflight",
            "figures": {"rows": 100, "rows_truncated": truncated, "max_tokens_per_row": 900},
        }
    )
    client.force_login(engineer)

    html = client.get(reverse("training:job", args=[project.pk, job.pk])).content.decode()

    assert ('data-testid="truncation-warning"' in html) is warned
    if warned:
        assert f"{truncated} of 100 training rows ({truncated}%)" in html
