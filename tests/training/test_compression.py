import pytest
from django.core.exceptions import ValidationError
from django.http import Http404
from django.urls import reverse
from rest_framework.test import APIClient

from core.models import AuditEvent
from evaluation.services.compression import compression_evaluation_schedule, compression_gate
from tests.evaluation.factories import model_version
from training import hooks
from training.models import ModelVersion, TrainingJob
from training.selectors.compression import compression_family
from training.services.compression import (
    compression_job_create,
    cost_per_million_tokens,
    model_version_compression_gate_record,
)

pytestmark = pytest.mark.django_db


def _api(user):
    api = APIClient()
    api.force_authenticate(user)
    return api


def _child(parent, kind="quantize", name="child", figures=None, gate=None):
    job = TrainingJob.objects.create(
        project=parent.project,
        name=name,
        kind=kind,
        method="full",
        base_model=parent.base_model,
        parent_version=parent,
        created_by=parent.project.memberships.first().user,
        status="succeeded",
    )
    metrics = {"compression": figures or {}}
    if gate is not None:
        metrics["compression_gate"] = gate
    return ModelVersion.objects.create(
        project=parent.project,
        name=name,
        base_model=parent.base_model,
        job=job,
        parent=parent,
        kind="full",
        path=f"/models/{name}",
        base_weights_sha256="0" * 64,
        metrics=metrics,
    )


def test_compression_job_is_queued_after_commit_and_audited(
    engineer, project, django_capture_on_commit_callbacks
):
    parent = model_version(project, "sft-lora")

    with django_capture_on_commit_callbacks() as callbacks:
        job = compression_job_create(
            actor=engineer, version=parent, kind="quantize", gate_tolerance=0.02
        )

    assert job.kind == "quantize"
    assert job.parent_version == parent
    assert job.config["quantization"] == "int8_weight_only"
    assert job.config["gate_tolerance"] == 0.02
    assert len(callbacks) == 2
    assert AuditEvent.objects.get(target_id=job.pk).action == "training.compression.create"


def test_bitsandbytes_is_refused_on_a_machine_without_a_gpu(engineer, project, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    parent = model_version(project, "sft-lora")

    with pytest.raises(ValidationError) as refused:
        compression_job_create(
            actor=engineer, version=parent, kind="quantize", quantization="bnb_nf4"
        )

    assert "GPU only" in refused.value.message_dict["quantization"][0]
    assert not TrainingJob.objects.exists()


@pytest.mark.parametrize(
    ("kind", "changes", "field"),
    [
        ("merge", {"kind": "full"}, "version"),
        ("quantize", {"task": "reward"}, "version"),
        ("distill", {}, "prompts_file"),
    ],
)
def test_compressions_that_cannot_apply_are_refused_naming_the_field(
    engineer, project, kind, changes, field
):
    parent = model_version(project, "v1")
    ModelVersion.objects.filter(pk=parent.pk).update(**changes)
    parent.refresh_from_db()

    with pytest.raises(ValidationError) as refused:
        compression_job_create(actor=engineer, version=parent, kind=kind)

    assert field in refused.value.message_dict
    assert not TrainingJob.objects.exists()


def test_gate_passes_an_unchanged_child_and_fails_one_far_worse():
    parent = [0.8, 0.9, 0.7, 1.0, 0.6, 0.9, 0.8, 0.7]

    same = compression_gate(parent_scores=parent, child_scores=parent, tolerance=0.05, alpha=0.05)
    worse = compression_gate(
        parent_scores=parent, child_scores=[s - 0.5 for s in parent], tolerance=0.05, alpha=0.05
    )

    assert same["passed"] is True
    assert same["drop"] == 0
    assert worse["passed"] is False
    assert worse["status"] == "failed"
    assert worse["drop"] == pytest.approx(0.5)
    assert worse["interval"][1] < -0.05
    assert worse["tolerance"] == 0.05


def test_cost_per_million_tokens_follows_the_price_setting(settings):
    settings.COMPRESSION_PRICE_PER_HOUR = 3.6

    assert cost_per_million_tokens(100.0) == pytest.approx(10.0)
    assert cost_per_million_tokens(0) is None


def test_evaluation_hears_of_new_versions_through_the_training_hook():
    assert compression_evaluation_schedule in hooks._version_created


def test_only_compressed_children_are_scheduled_for_evaluation(
    project, engineer, django_capture_on_commit_callbacks
):
    parent = model_version(project, "v1")
    child = _child(parent)

    with django_capture_on_commit_callbacks() as callbacks:
        compression_evaluation_schedule(parent)
        compression_evaluation_schedule(child)

    assert len(callbacks) == 1


def test_gate_record_is_stored_on_the_child_and_audited(engineer, project):
    parent = model_version(project, "v1")
    child = _child(parent)

    model_version_compression_gate_record(
        version_id=child.pk, gate={"status": "passed", "passed": True, "drop": 0.0}
    )

    child.refresh_from_db()
    assert child.metrics["compression_gate"]["passed"] is True
    assert "compression" in child.metrics
    assert AuditEvent.objects.filter(
        target_id=child.pk, action="training.model_version.compression_gate"
    ).exists()


FIGURES = {
    "parent": {"size_bytes": 4 * 2**20, "tokens_per_second": 50.0, "latency_seconds": 0.6},
    "child": {
        "size_bytes": 2**20,
        "tokens_per_second": 40.0,
        "latency_seconds": 0.8,
        "cost_per_million_tokens": 0.7,
    },
}
GATE = {
    "status": "passed",
    "passed": True,
    "parent": 0.5,
    "child": 0.48,
    "drop": 0.02,
    "interval": [-0.05, 0.01],
    "tolerance": 0.05,
}


def test_family_puts_the_parent_and_its_children_side_by_side(engineer, project):
    parent = model_version(project, "v1")
    child = _child(parent, figures=FIGURES, gate=GATE)

    for start in (parent, child):
        family = compression_family(project=project, version_id=start.pk)
        assert family.parent == parent
        assert [c.version for c in family.columns] == [parent, child]
    rows = dict(family.rows)
    assert rows["size on disk"] == ["4.00 MiB", "1.00 MiB"]
    assert rows["tokens per second"] == ["50.0", "40.0"]
    assert rows["compression gate"][1].startswith("pass: drop +0.02")
    assert family.series("size_bytes")[1] == [4 * 2**20, 2**20]


def test_family_of_another_projects_version_is_not_found(project, other_project):
    foreign = model_version(other_project, "theirs")

    with pytest.raises(Http404):
        compression_family(project=project, version_id=foreign.pk)


def test_compression_page_shows_the_table_and_launches_a_job(client, engineer, project):
    parent = model_version(project, "v1")
    _child(parent, figures=FIGURES, gate=GATE)
    client.force_login(engineer)
    url = reverse("training:version_compression", args=[project.pk, parent.pk])

    page = client.get(url)
    posted = client.post(url, {"kind": "quantize", "gate_tolerance": "0.1"})

    assert page.status_code == 200
    assert b'data-testid="compression-table"' in page.content
    assert b"1.00 MiB" in page.content
    job = TrainingJob.objects.get(kind="quantize", parent_version=parent, status="queued")
    assert posted.status_code == 302
    assert job.config["gate_tolerance"] == 0.1


def test_api_launches_a_compression_and_lists_the_family(engineer, compliance, project):
    parent = model_version(project, "sft-lora")
    url = reverse("training-api:api-model-version-compressions", args=[project.pk, parent.pk])

    created = _api(engineer).post(url, {"kind": "merge"}, format="json")
    refused = _api(engineer).post(url, {"kind": "shrink"}, format="json")
    listed = _api(compliance).get(url)

    assert created.status_code == 201
    assert TrainingJob.objects.get(kind="merge").parent_version == parent
    assert refused.status_code == 400
    assert TrainingJob.objects.count() == 1
    assert listed.status_code == 200
    assert listed.json()["versions"][0]["id"] == parent.pk


def test_job_page_of_a_compression_job_renders(client, engineer, project):
    parent = model_version(project, "v1")
    child = _child(parent, figures=FIGURES, gate=GATE)
    client.force_login(engineer)

    page = client.get(reverse("training:job", args=[project.pk, child.job.pk]))
    version_page = client.get(reverse("training:version", args=[project.pk, child.pk]))

    assert page.status_code == 200
    assert version_page.status_code == 200
    assert b'data-testid="compression-link"' in version_page.content
