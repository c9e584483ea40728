"""Post-training int8 weight-only quantization (torchao) of the packaged SmolLM2-135M, run
as the portal runs it (a compression job through the runner): how long it takes, and the
child's size and CPU generation speed relative to the fp32 parent."""

import pytest

from core.models import JobStatus
from training import services
from training.models import ModelVersion, TrainingJob
from training.services.compression import compression_job_create
from training.services.execution import training_job_execute


@pytest.fixture
def smollm_version(db, project) -> ModelVersion:
    base = services.base_model_ensure_default()
    # The converted base itself, registered as a full-weights version to compress.
    return ModelVersion.objects.create(
        project=project,
        name="smollm2-135m",
        base_model=base,
        kind=ModelVersion.Kind.FULL,
        path=base.path,
        base_weights_sha256=base.weights_sha256,
    )


def test_quantize_135m(smollm_version, engineer, report):
    job = compression_job_create(actor=engineer, version=smollm_version, kind="quantize")
    TrainingJob.objects.filter(pk=job.pk).update(status=JobStatus.QUEUED)
    training_job_execute(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.error
    figures = ModelVersion.objects.get(job=job).metrics["compression"]

    report("quantize_135m_s", job.result["metrics"]["quantize_seconds"], "s")
    report("int8_size_ratio", figures["ratios"]["size_bytes"], "x")
    report("int8_tokens_per_s_ratio", figures["ratios"]["tokens_per_second"], "x")
    report("fp32_tokens_per_s", figures["parent"]["tokens_per_second"], "tokens/s")
    report("int8_tokens_per_s", figures["child"]["tokens_per_second"], "tokens/s")
    report("int8_peak_memory_ratio", figures["ratios"]["peak_memory_bytes"] or 0.0, "x")
    assert figures["ratios"]["size_bytes"] < 0.5
