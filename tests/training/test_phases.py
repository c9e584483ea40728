import json
import re
import time

import pytest
from django.urls import reverse

from core.models import JobStatus
from tests.training.conftest import QUICK
from training import services
from training.models import TrainingJob
from training.services.execution import training_job_execute
from training.services.jobs import job_workdir

# The task body runs here (the runner is still a real child process); no broker needed.
pytestmark = pytest.mark.django_db

# Every phase a LoRA SFT job with a validation split goes through, in order.
PHASES = [
    "preparing_data",
    "loading_model",
    "tokenising",
    "smoke_run",
    "preparing_trainer",
    "training",
    "evaluating",
    "saving_checkpoint",
    "saving_model",
    "sanity_check",
    "registering",
]


def _phase_events(job) -> list[dict]:
    lines = (job_workdir(job) / "events.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["type"] == "phase"]


def test_every_phase_of_a_job_is_announced_with_its_progress_and_estimated(
    engineer, project, tiny_base_model, data_files
):
    job = services.training_job_create(
        actor=engineer,
        project=project,
        name="phased",
        kind="sft",
        method="lora",
        base_model=tiny_base_model,
        values={**QUICK, "eval_steps": 6},
        train_file=str(data_files["sft_train"]),
        eval_file=str(data_files["sft_val"]),
    )

    training_job_execute(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.error
    events = _phase_events(job)
    started = [e["phase"] for e in events if e.get("label")]
    # The worker's own phases (data, registering) are not in the runner's file.
    runner_phases = [p for p in PHASES if p not in ("preparing_data", "registering")]
    assert [p for p in dict.fromkeys(started)] == runner_phases
    sanity = [e for e in events if e["phase"] == "sanity_check"]
    assert sanity[0]["total"] == 16 * 2  # the tuned model, then the frozen base, on 16 rows
    assert sanity[-1]["done"] == sanity[-1]["total"]
    training = [e for e in events if e["phase"] == "training"]
    assert training[0]["total"] == QUICK["max_steps"]
    assert max(e["done"] for e in training) == QUICK["max_steps"]
    log = "\n".join(job.log_lines.values_list("message", flat=True))
    assert "Preparing the training data" in log
    assert "Scoring the tuned model on 16 validation rows, then the frozen base" in log
    assert "Registering the model version" in log
    assert job.progress["phase"] == "registering"
    assert job.progress["done"] == job.progress["total"] == 1
    estimate = job.preflight["estimate_seconds"]
    assert set(estimate) == {
        "preflight",
        "training",
        "checkpoints",
        "evaluation",
        "final_save",
        "sanity_check",
    }
    assert estimate["sanity_check"] > 0
    assert estimate["evaluation"] > 0  # two evaluations, at steps 6 and 12
    assert job.preflight["estimated_seconds"] == pytest.approx(sum(estimate.values()))


def test_the_job_page_says_which_phase_runs_and_how_far_it_got(
    client, engineer, project, tiny_base_model, data_files
):
    job = services.training_job_create(
        actor=engineer,
        project=project,
        name="checking",
        kind="sft",
        method="lora",
        base_model=tiny_base_model,
        values=QUICK,
        train_file=str(data_files["sft_train"]),
    )
    TrainingJob.objects.filter(pk=job.pk).update(
        status=JobStatus.RUNNING,
        progress={
            "phase": "sanity_check",
            "label": "Sanity check: the tuned model against the frozen base",
            "unit": "rows scored",
            "started_at": time.time() - 130,
            "done": 12,
            "total": 32,
        },
        preflight={
            "estimated_seconds": 200.0,
            "estimate_seconds": {"preflight": 20.0, "training": 100.0, "sanity_check": 80.0},
        },
    )
    client.force_login(engineer)

    live = client.get(
        reverse("training:job", args=[project.pk, job.pk]) + "?part=live", HTTP_HX_REQUEST="true"
    ).content.decode()

    assert "Now: <strong>Sanity check: the tuned model against the frozen base</strong>" in live
    assert "12 of 32 rows scored" in live
    assert re.search(r"\(for 13\d s\)", live)  # the phase began 130 s ago
    assert "Sanity check (tuned vs frozen base): 80 s" in live
    assert "200 s in all" in live
    api = client.get(f"/api/v1/projects/{project.pk}/fine_tuning/jobs/{job.pk}/").json()
    assert api["progress"]["phase"] == "sanity_check"
    assert (api["progress"]["done"], api["progress"]["total"]) == (12, 32)


@pytest.mark.parametrize(
    ("backend", "polls"),
    [
        ("channels.layers.InMemoryChannelLayer", True),  # the embedded default
        ("channels_redis.core.RedisChannelLayer", False),
    ],
)
def test_pages_poll_a_running_job_only_where_the_workers_pushes_cannot_reach(
    client, settings, engineer, project, tiny_base_model, data_files, backend, polls
):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": backend}}
    job = services.training_job_create(
        actor=engineer,
        project=project,
        name="watched",
        kind="sft",
        method="lora",
        base_model=tiny_base_model,
        values=QUICK,
        train_file=str(data_files["sft_train"]),
    )
    client.force_login(engineer)

    page = client.get(reverse("training:job", args=[project.pk, job.pk])).content.decode()
    listing = client.get(reverse("training:jobs", args=[project.pk])).content.decode()
    TrainingJob.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED)
    finished = client.get(reverse("training:job", args=[project.pk, job.pk])).content.decode()

    assert ('hx-trigger="training-refresh, every 2s"' in page) is polls
    assert ("?part=log" in page) is polls
    assert ('hx-trigger="training-jobs-refresh, every 3s"' in listing) is polls
    assert "every 2s" not in finished  # a finished job is not polled
