import json
import shutil
import tempfile
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from core.jobs import job_lock
from core.models import AuditEvent, JobStatus
from tests.evaluation import factories as evaluation_factories
from tests.training.conftest import QUICK
from training import presets, selectors, services
from training.models import ModelVersion, TrainingCheckpoint, TrainingJob
from training.services.jobs import job_workdir

pytestmark = pytest.mark.django_db


def _create(engineer, project, base, files, **overrides):
    kwargs = {
        "actor": engineer,
        "project": project,
        "name": "job",
        "kind": "sft",
        "method": "lora",
        "base_model": base,
        "values": dict(QUICK),
        "train_file": str(files["sft_train"]),
        "eval_file": str(files["sft_val"]),
    }
    kwargs.update(overrides)
    return services.training_job_create(**kwargs)


def test_base_model_registration_records_architecture_size_tokenizer_and_hash(tiny_base_model):
    assert tiny_base_model.architecture == "LlamaForCausalLM"
    assert 10_000 < tiny_base_model.parameter_count < 1_000_000
    assert tiny_base_model.tokenizer  # the tokenizer class transformers picked
    assert "im_start" in tiny_base_model.chat_template
    assert len(tiny_base_model.weights_sha256) == 64
    assert {"q_proj", "v_proj"} <= set(tiny_base_model.info["linear_modules"])
    assert tiny_base_model.info["num_layers"] == 2


def test_registering_a_directory_without_a_model_is_refused(db):
    empty = tempfile.mkdtemp(dir=settings.TRAINING_MODEL_ROOTS[0])

    with pytest.raises(ValidationError, match="no config.json"):
        services.base_model_register(
            actor=None, project=None, name="nothing", source="local", path=empty
        )


def test_create_enqueues_only_after_commit_and_audits(
    engineer, project, tiny_base_model, data_files, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        job = _create(engineer, project, tiny_base_model, data_files)

    assert job.status == JobStatus.QUEUED
    assert len(callbacks) == 2  # the Celery task and the push
    assert job.config["lora_r"] == QUICK["lora_r"]
    assert job.config["lr_scheduler_type"] == "cosine"  # a default filled in
    assert len(job.data["train"]["sha256"]) == 64
    assert len(job.manifest_sha256) == 64
    assert AuditEvent.objects.filter(action="training.job.create", target_id=str(job.pk)).exists()


def test_preflight_rejects_a_lora_target_module_the_model_lacks(
    engineer, project, tiny_base_model, data_files
):
    values = {**QUICK, "lora_target_modules": ["q_proj", "c_attn"]}

    with pytest.raises(ValidationError) as caught:
        _create(engineer, project, tiny_base_model, data_files, values=values)

    message = caught.value.message_dict["lora_target_modules"][0]
    assert "c_attn not found in the model" in message
    assert "q_proj" in message  # the modules it does have are listed
    assert not TrainingJob.objects.exists()


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"max_length": 100_000}, "max_length"),
        ({"learning_rate": -1}, "learning_rate"),
        ({"trainable_layers": 9}, "trainable_layers"),
        ({"lr_scheduler_type": "zigzag"}, "lr_scheduler_type"),
        ({"no_such_setting": 1}, "no_such_setting"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(
    engineer, project, tiny_base_model, data_files, values, field
):
    with pytest.raises(ValidationError) as caught:
        _create(engineer, project, tiny_base_model, data_files, method="partial", values=values)

    assert field in caught.value.message_dict
    assert not TrainingJob.objects.exists()


def test_grpo_needs_a_reward_model(engineer, project, tiny_base_model, data_files):
    with pytest.raises(ValidationError) as caught:
        _create(engineer, project, tiny_base_model, data_files, kind="grpo")

    assert "reward_version" in caught.value.message_dict


def test_a_missing_training_file_is_named(engineer, project, tiny_base_model, data_files):
    with pytest.raises(ValidationError, match="does not exist"):
        _create(engineer, project, tiny_base_model, data_files, train_file="/nope/x.jsonl")


def test_cancelling_a_queued_job_cancels_it_at_once(engineer, project, tiny_base_model, data_files):
    job = _create(engineer, project, tiny_base_model, data_files)

    services.training_job_cancel(actor=engineer, job=job)

    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert job.cancel_requested
    with pytest.raises(ValidationError, match="nothing to cancel"):
        services.training_job_cancel(actor=engineer, job=job)


def test_running_jobs_without_heartbeat_are_marked_failed_and_resumable(
    engineer, project, tiny_base_model, data_files, tmp_path
):
    job = _create(engineer, project, tiny_base_model, data_files)
    fresh = _create(engineer, project, tiny_base_model, data_files)
    TrainingJob.objects.filter(pk=job.pk).update(
        status=JobStatus.RUNNING, heartbeat_at=timezone.now() - timedelta(minutes=10)
    )
    TrainingJob.objects.filter(pk=fresh.pk).update(
        status=JobStatus.RUNNING, heartbeat_at=timezone.now()
    )
    checkpoint = tmp_path / "checkpoint-6"
    checkpoint.mkdir()
    TrainingCheckpoint.objects.create(job=job, step=6, path=str(checkpoint), files={})

    # Both locks are held, as by a live worker (`fresh`) and by a machine that vanished but
    # whose connection the server has not dropped yet (`job`): heartbeats tell them apart.
    with job_lock(TrainingJob, fresh.pk) as fresh_held, job_lock(TrainingJob, job.pk) as held:
        assert fresh_held
        assert held
        assert services.training_jobs_sweep_stale(project=project) == 1

    job.refresh_from_db()
    fresh.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert "heartbeats" in job.error
    assert "step 6" in job.error
    assert fresh.status == JobStatus.RUNNING
    resumed = services.training_job_resume(actor=engineer, job=job)
    assert resumed.resumed_from == job
    assert resumed.data["resume_from_checkpoint"] == str(checkpoint)


def test_a_running_job_whose_worker_process_is_gone_is_failed_before_its_heartbeat_stales(
    engineer, project, tiny_base_model, data_files
):
    job = _create(engineer, project, tiny_base_model, data_files)
    # Its last heartbeat is 20 s old: well short of the 90 s stale limit, but long enough
    # past the worker's 2 s beat, and no process holds its lock.
    TrainingJob.objects.filter(pk=job.pk).update(
        status=JobStatus.RUNNING, heartbeat_at=timezone.now() - timedelta(seconds=20)
    )

    assert services.training_jobs_sweep_stale(project=project) == 1

    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert "process is gone" in job.error
    assert AuditEvent.objects.filter(target_id=str(job.pk), action="training.job.lost").exists()


def test_a_free_lock_is_not_enough_while_the_worker_still_sends_heartbeats(
    engineer, project, tiny_base_model, data_files
):
    # The worker lives but its lock connection dropped (a database restart).
    job = _create(engineer, project, tiny_base_model, data_files)
    TrainingJob.objects.filter(pk=job.pk).update(
        status=JobStatus.RUNNING, heartbeat_at=timezone.now()
    )

    assert services.training_jobs_sweep_stale(project=project) == 0

    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING


def _lost_with_checkpoint(job, folder):
    TrainingJob.objects.filter(pk=job.pk).update(
        status=JobStatus.RUNNING, heartbeat_at=timezone.now() - timedelta(seconds=20)
    )
    folder.mkdir()
    (folder / "adapter_model.safetensors").write_bytes(b"weights")
    TrainingCheckpoint.objects.create(
        job=job, step=4, path=str(folder), files={"adapter_model.safetensors": "sha"}
    )


def test_the_beat_sweep_resumes_a_lost_job_from_its_checkpoint_once(
    engineer, project, tiny_base_model, data_files, tmp_path
):
    job = _create(engineer, project, tiny_base_model, data_files)
    _lost_with_checkpoint(job, tmp_path / "checkpoint-4")

    assert services.training_jobs_sweep_stale(requeue=True) == 1

    resumed = TrainingJob.objects.get(resumed_from=job)
    assert resumed.status == JobStatus.QUEUED
    assert resumed.created_by == engineer
    assert resumed.data["resume_from_checkpoint"] == str(tmp_path / "checkpoint-4")
    assert resumed.data["automatic_resume"] is True
    assert AuditEvent.objects.get(target_id=str(resumed.pk), action="training.job.requeue")

    _lost_with_checkpoint(resumed, tmp_path / "again")

    assert services.training_jobs_sweep_stale(requeue=True) == 1
    resumed.refresh_from_db()
    assert resumed.status == JobStatus.FAILED
    assert not TrainingJob.objects.filter(resumed_from=resumed).exists()  # once only


def test_a_checkpoint_missing_a_file_is_not_resumed_from(
    engineer, project, tiny_base_model, data_files, tmp_path
):
    job = _create(engineer, project, tiny_base_model, data_files)
    _lost_with_checkpoint(job, tmp_path / "checkpoint-4")
    (tmp_path / "checkpoint-4" / "adapter_model.safetensors").unlink()

    assert services.training_jobs_sweep_stale(requeue=True) == 1

    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert "Not resumed: The job saved no intact checkpoint" in job.error
    assert not TrainingJob.objects.filter(resumed_from=job).exists()


def test_the_sweep_resumes_from_a_checkpoint_the_dead_worker_never_recorded(
    engineer, project, tiny_base_model, data_files, settings, tmp_path
):
    # The worker recorded checkpoint-4 and died; its runner went on, saved 8 and 12 (its
    # event file says so) and rotated 4 away before it noticed it was orphaned.
    settings.MEDIA_ROOT = str(tmp_path / "media")
    job = _create(engineer, project, tiny_base_model, data_files)
    folder = job_workdir(job) / "checkpoints"
    folder.mkdir(parents=True)
    _lost_with_checkpoint(job, folder / "checkpoint-4")
    shutil.rmtree(folder / "checkpoint-4")
    lines = []
    for step in (8, 12):
        (folder / f"checkpoint-{step}").mkdir()
        (folder / f"checkpoint-{step}" / "adapter_model.safetensors").write_bytes(b"w")
        event = {"type": "checkpoint", "step": step, "path": str(folder / f"checkpoint-{step}")}
        lines.append(json.dumps({**event, "files": {"adapter_model.safetensors": "h"}}))
    lines.append('{"type": "metric", "step": 13, "val')  # cut short by the kill
    (job_workdir(job) / "events.jsonl").write_text("\n".join(lines))

    assert services.training_jobs_sweep_stale(requeue=True) == 1

    resumed = TrainingJob.objects.get(resumed_from=job)
    assert resumed.data["resume_from_checkpoint"] == str(folder / "checkpoint-12")
    job.refresh_from_db()
    assert sorted(job.checkpoints.values_list("step", flat=True)) == [4, 8, 12]
    assert job.checkpoint_sha256["checkpoint-12"] == {"adapter_model.safetensors": "h"}
    assert job.error.endswith(
        f"Resumed automatically from the checkpoint at step 12 as job #{resumed.pk}."
    )


def test_a_lost_job_not_requeued_says_which_checkpoint_it_can_resume_from(
    engineer, project, tiny_base_model, data_files, tmp_path
):
    job = _create(engineer, project, tiny_base_model, data_files)
    _lost_with_checkpoint(job, tmp_path / "checkpoint-4")

    assert services.training_jobs_sweep_stale(project=project) == 1

    job.refresh_from_db()
    assert job.error.endswith("Resumable from the checkpoint at step 4.")
    assert not TrainingJob.objects.filter(resumed_from=job).exists()


def test_training_offers_no_way_to_change_a_versions_stage():
    # Stage changes are governance's, behind the gate and sign-off checks.
    from training.services import registry

    assert not [n for n in dir(services) + dir(registry) if "stage" in n.lower()]


def test_compatibility_matrix_matches_adapters_to_base_weights(project, tiny_base_model):
    other = services.base_model_register(
        actor=None,
        project=project,
        name="same weights, other name",
        source="local",
        path=tiny_base_model.path,
    )
    ModelVersion.objects.create(
        project=project,
        name="fits",
        base_model=tiny_base_model,
        kind="adapter",
        path="/x",
        base_weights_sha256=tiny_base_model.weights_sha256,
    )
    ModelVersion.objects.create(
        project=project,
        name="foreign",
        base_model=tiny_base_model,
        kind="adapter",
        path="/y",
        base_weights_sha256="0" * 64,
    )

    matrix = selectors.compatibility_matrix(project=project)

    rows = {v.name: fits for v, fits in matrix.rows}
    assert [b.pk for b in matrix.base_models] == [other.pk, tiny_base_model.pk]
    assert rows == {"fits": [True, True], "foreign": [False, False]}


def test_presets_fill_their_values_and_every_field_has_help_text():
    config = presets.resolve_config(kind="sft", method="lora", values={}, preset="lora-thorough")

    assert config["num_train_epochs"] == 3.0
    assert config["early_stopping_patience"] == 3
    assert all(field.help for field in presets.FIELDS.values())


def test_the_playground_refuses_a_model_of_another_project(
    engineer, project, other_project, django_capture_on_commit_callbacks
):
    theirs = evaluation_factories.base_model(other_project, "their-model")

    with django_capture_on_commit_callbacks() as callbacks, pytest.raises(ValidationError):
        services.playground_generate(
            actor=engineer,
            project=project,
            prompt="repeat cat",
            max_new_tokens=8,
            models=[(theirs, None)],
        )

    assert callbacks == []
    assert not AuditEvent.objects.filter(action="training.playground.generate").exists()


@pytest.mark.parametrize(("prompt", "max_new_tokens"), [("  ", 8), ("hi", 0), ("hi", 1025)])
def test_the_playground_refuses_an_empty_prompt_or_a_token_count_out_of_range(
    engineer, project, prompt, max_new_tokens
):
    base = evaluation_factories.base_model(project, "tiny-left")

    with pytest.raises(ValidationError):
        services.playground_generate(
            actor=engineer,
            project=project,
            prompt=prompt,
            max_new_tokens=max_new_tokens,
            models=[(base, None)],
        )

    assert not AuditEvent.objects.filter(action="training.playground.generate").exists()
