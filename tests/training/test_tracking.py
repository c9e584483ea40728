import hashlib
import importlib.util
import json
import time
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse
from mlflow.tracking import MlflowClient
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from core.models import JobStatus
from portal.env import env_report_to
from tests.support import servers
from tests.training.conftest import QUICK, wait_finished
from training import selectors, services
from training.ml.events import EventWriter, GuardedReporter, reporting_callbacks
from training.models import ModelVersion
from training.services.jobs import job_workdir
from training.services.tracking import MlflowMirror, mlflow_ui_base

PORTAL = "https://portal.example.org"
MLFLOW_UI = "http://mlflow.example.org:5000"


def _sft(engineer, project, base, files, **values):
    return services.training_job_create(
        actor=engineer,
        project=project,
        name="sft-tracked",
        kind="sft",
        method="lora",
        base_model=base,
        values={**QUICK, **values},
        train_file=str(files["sft_train"]),
        eval_file=str(files["sft_val"]),
    )


def _artifact(mlflow, run_id, path, folder) -> str:
    return Path(mlflow.download_artifacts(run_id, path, str(folder))).read_text()


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_a_job_is_mirrored_to_mlflow_as_the_portal_recorded_it_with_links_both_ways(
    killable_workers, monkeypatch, tmp_path, client, engineer, project, tiny_base_model, data_files
):
    store = f"file://{tmp_path / 'mlruns'}"
    killable_workers(
        MLFLOW_TRACKING_URI=store,
        MLFLOW_ALLOW_FILE_STORE="true",
        MLFLOW_UI_URL=MLFLOW_UI,
        PORTAL_BASE_URL=PORTAL,
        TRAINING_REPORT_TO="wandb",
        WANDB_MODE="offline",
        WANDB_DIR=str(tmp_path),
    )
    job = _sft(
        engineer, project, tiny_base_model, data_files, max_steps=6, save_steps=3, eval_steps=3
    )

    job = wait_finished(job, timeout=180)

    assert job.status == JobStatus.SUCCEEDED, job.error
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow = MlflowClient(tracking_uri=store)
    run_id = job.tracking["mlflow"]["run_id"]
    run = mlflow.get_run(run_id)
    assert run.info.status == "FINISHED"
    experiment_id = run.info.experiment_id
    assert mlflow.get_experiment(experiment_id).name == f"tuning-portal/project-{project.pk}"
    assert (
        job.tracking["mlflow"]["url"] == f"{MLFLOW_UI}/#/experiments/{experiment_id}/runs/{run_id}"
    )

    params = run.data.params
    assert params["kind"] == "sft"
    assert params["method"] == "lora"
    assert params["base_model"] == tiny_base_model.name
    assert json.loads(params["learning_rate"]) == QUICK["learning_rate"]
    assert json.loads(params["max_steps"]) == 6

    # Every metric the portal stored, at the same steps with the same values.
    portal_history: dict[str, list[tuple[int, float]]] = {}
    for row in job.metrics.order_by("step", "id"):
        for name, value in row.values.items():
            portal_history.setdefault(name, []).append((row.step, value))
    assert {"loss", "eval_loss", "learning_rate"} <= set(portal_history)
    for name, history in portal_history.items():
        mirrored = sorted((m.step, m.value) for m in mlflow.get_metric_history(run_id, name))
        assert mirrored == sorted(history), name

    tags = run.data.tags
    job_path = reverse("training:job", args=[project.pk, job.pk])
    assert tags["portal.job_url"] == f"{PORTAL}{job_path}"
    assert tags["portal.job_id"] == str(job.pk)
    assert f"{PORTAL}{job_path}" in tags["mlflow.note.content"]
    assert tags["portal.base_model_sha256"] == tiny_base_model.weights_sha256
    assert tags["portal.data.train_sha256"] == job.data["train"]["sha256"]
    assert tags["portal.data.validation_sha256"] == job.data["validation"]["sha256"]
    version = ModelVersion.objects.get(job=job)
    assert tags["portal.model_version_id"] == str(version.pk)
    assert tags["portal.model_files_sha256"] == _digest(version.checkpoint_sha256)
    assert tags["portal.status"] == "succeeded"

    files = json.loads(_artifact(mlflow, run_id, "portal/model_files_sha256.json", tmp_path))
    assert files == version.checkpoint_sha256
    checkpoint = json.loads(_artifact(mlflow, run_id, "checkpoints/checkpoint-3.json", tmp_path))
    assert checkpoint == job.checkpoint_sha256["checkpoint-3"]

    # The job's page links to the run.
    client.force_login(engineer)
    page = client.get(job_path).content.decode()
    assert f'href="{MLFLOW_UI}/#/experiments/{experiment_id}/runs/{run_id}"' in page

    # W&B goes through the trainer's report_to; without wandb installed the job goes on.
    spec = json.loads((job_workdir(job) / "spec.json").read_text())
    assert spec["report_to"] == ["wandb"]
    warnings = list(job.log_lines.filter(level="warning").values_list("message", flat=True))
    if importlib.util.find_spec("wandb") is None:
        assert any(m.startswith("Not reporting to wandb") for m in warnings), warnings
    assert not any("MLflow" in m for m in warnings), warnings


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_an_unreachable_mlflow_leaves_the_job_succeeding_with_a_warning_after_it_ended(
    killable_workers, engineer, project, tiny_base_model, data_files
):
    killable_workers(
        MLFLOW_TRACKING_URI=f"http://127.0.0.1:{servers.free_port()}",
        TRAINING_MLFLOW_FLUSH_SECONDS="2",
    )
    job = _sft(engineer, project, tiny_base_model, data_files, max_steps=4, save_steps=4)

    job = wait_finished(job, timeout=180)

    assert job.status == JobStatus.SUCCEEDED, job.error
    assert ModelVersion.objects.filter(job=job).exists()
    deadline = time.monotonic() + 30
    while not (
        warning := job.log_lines.filter(level="warning", message__contains="MLflow").first()
    ):
        assert time.monotonic() < deadline, "no warning about MLflow in the job's log"
        time.sleep(0.2)
    assert "Mirroring to MLflow failed" in warning.message
    assert "the portal's record of this job is complete" in warning.message
    # The job had ended before the mirror was given up: MLflow never held it back.
    assert warning.created_at >= job.finished_at
    job.refresh_from_db()
    assert "mlflow" not in job.tracking


def test_the_mirror_stops_at_the_first_mlflow_error_and_says_why(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    start = {"experiment": "x", "run_name": "job #1", "params": {}, "tags": {}}
    mirror = MlflowMirror(tracking_uri=f"http://127.0.0.1:{servers.free_port()}", start=start)

    problem = mirror.close(30)

    assert "Connection" in problem
    assert mirror.run_id == ""
    queued = mirror._queue.qsize()
    mirror.metric(step=1, values={"loss": 1.0})  # after the failure: dropped, not queued
    assert mirror._queue.qsize() == queued


def test_a_mirror_sends_metrics_checkpoints_and_the_end_in_order(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    store = f"file://{tmp_path}"
    start = {
        "experiment": "e",
        "run_name": "job #2",
        "params": {f"p{i}": str(i) for i in range(150)},  # more than one batch
        "tags": {"portal.job_id": "2"},
    }
    mirror = MlflowMirror(tracking_uri=store, start=start)
    odd = {"a:b": 2.0, "flag": True, "nan": float("nan")}
    for step in range(1, 4):
        mirror.metric(step=step, values={"loss": 1 / step, **odd})
    mirror.checkpoint(step=3, files={"a.bin": "ab" * 32})
    mirror.end(
        {
            "status": "FINISHED",
            "step": 3,
            "metrics": {"quality.x": 0.5},
            "tags": {"t": "v"},
            "artifacts": {"portal/x.json": {"k": 1}},
        }
    )

    assert mirror.close(30) == ""

    mlflow = MlflowClient(tracking_uri=store)
    run = mlflow.get_run(mirror.run_id)
    assert run.info.status == "FINISHED"
    assert len(run.data.params) == 150
    assert [(m.step, m.value) for m in mlflow.get_metric_history(mirror.run_id, "loss")] == [
        (1, 1.0),
        (2, 0.5),
        (3, 1 / 3),
    ]
    # No booleans, no NaN, and a name MLflow would refuse (stopping the mirror) made valid.
    assert set(run.data.metrics) == {"loss", "a_b", "quality.x"}
    assert run.data.tags["t"] == "v"
    assert {f.path for f in mlflow.list_artifacts(mirror.run_id, "checkpoints")} == {
        "checkpoints/checkpoint-3.json"
    }


@pytest.mark.django_db
def test_the_job_page_links_only_http_runs(client, engineer, project, tiny_base_model, data_files):
    job = _sft(engineer, project, tiny_base_model, data_files)
    job.tracking = {
        "mlflow": {"run_id": "abc", "url": "javascript:alert(1)"},
        "wandb": {"url": "https://wandb.ai/team/p/runs/xyz"},
    }
    job.save(update_fields=["tracking"])

    links = selectors.job_tracking_links(job=job)

    assert [(link.tracker, link.url, link.run_id) for link in links] == [
        ("MLflow", "", "abc"),
        ("Weights & Biases", "https://wandb.ai/team/p/runs/xyz", ""),
    ]
    client.force_login(engineer)
    page = client.get(reverse("training:job", args=[project.pk, job.pk])).content.decode()
    assert "javascript:" not in page
    assert 'href="https://wandb.ai/team/p/runs/xyz"' in page
    assert "<code>abc</code>" in page


def test_the_mlflow_link_drops_credentials_of_the_tracking_uri(settings):
    settings.MLFLOW_UI_URL = ""
    settings.MLFLOW_TRACKING_URI = "https://bot:s3cret@mlflow.example.org:8443/base/"
    assert mlflow_ui_base() == "https://mlflow.example.org:8443/base"
    settings.MLFLOW_TRACKING_URI = "file:///srv/mlruns"
    assert mlflow_ui_base() == ""
    settings.MLFLOW_UI_URL = MLFLOW_UI
    assert mlflow_ui_base() == MLFLOW_UI


@pytest.mark.parametrize("value", ["mlflow", "wandb,all", "none"])
def test_report_to_refuses_mlflow_and_catch_alls(monkeypatch, value):
    monkeypatch.setenv("TRAINING_REPORT_TO", value)
    with pytest.raises(ImproperlyConfigured, match="TRAINING_REPORT_TO"):
        env_report_to("TRAINING_REPORT_TO", [])


def test_report_to_accepts_named_trackers(monkeypatch):
    monkeypatch.setenv("TRAINING_REPORT_TO", "wandb, tensorboard")
    assert env_report_to("TRAINING_REPORT_TO", []) == ["wandb", "tensorboard"]


class _Broken(TrainerCallback):
    def __init__(self):
        self.calls = 0

    def on_log(self, args, state, control, **kwargs):
        self.calls += 1
        raise ConnectionError("tracker down")


def _events(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_failing_tracker_costs_one_warning_and_is_off_for_the_rest_of_the_job(tmp_path):
    events = EventWriter(tmp_path / "events.jsonl")
    inner = _Broken()
    guarded = GuardedReporter("broken", inner, events)
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none")

    for _ in range(3):
        assert guarded.on_log(args, TrainerState(), TrainerControl(), logs={"loss": 1.0}) is None
    events.close()

    assert inner.calls == 1
    logged = _events(tmp_path / "events.jsonl")
    assert [(e["level"], e["message"]) for e in logged] == [
        (
            "warning",
            "Reporting to broken failed and is off for this job: ConnectionError: tracker down",
        )
    ]


def test_a_tracker_that_cannot_start_is_left_out_with_a_warning(tmp_path):
    events = EventWriter(tmp_path / "events.jsonl")

    callbacks = reporting_callbacks(["no-such-tracker"], events)
    events.close()

    assert callbacks == []
    (logged,) = _events(tmp_path / "events.jsonl")
    assert logged["level"] == "warning"
    assert logged["message"].startswith("Not reporting to no-such-tracker: ValueError")
