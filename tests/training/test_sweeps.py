import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from core.models import AuditEvent, JobStatus, Membership, Role
from tests.training.conftest import QUICK
from training import services
from training.models import Sweep, SweepTrial, TrainingJob
from training.services.sweeps import sweeps_advance_all

pytestmark = pytest.mark.django_db

SPACE = {
    "learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    "lora_r": {"type": "categorical", "choices": [4, 8]},
}


def _api(user):
    api = APIClient()
    api.force_authenticate(user)
    return api


@pytest.fixture
def base_job(engineer, project, tiny_base_model, data_files):
    return services.training_job_create(
        actor=engineer,
        project=project,
        name="base",
        kind="sft",
        method="lora",
        base_model=tiny_base_model,
        values={**QUICK, "eval_steps": 3},
        train_file=str(data_files["sft_train"]),
        eval_file=str(data_files["sft_val"]),
    )


def _body(base_job, **changes):
    return {"base_job": base_job.pk, "search_space": SPACE, "n_trials": 3, **changes}


def _sweeps(project):
    return reverse("training-api:api-sweeps", args=[project.pk])


def test_creating_a_sweep_queues_trials_up_to_the_concurrency_limit(
    project, engineer, base_job, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        response = _api(engineer).post(
            _sweeps(project), _body(base_job, concurrency=2, seed=7), format="json"
        )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "running"
    assert [t["number"] for t in body["trials"]] == [0, 1]
    sweep = Sweep.objects.get(pk=body["id"])
    jobs = [t.job for t in sweep.trials.order_by("number")]
    assert all(j.status == JobStatus.QUEUED for j in jobs)
    for trial, job in zip(sweep.trials.order_by("number"), jobs, strict=True):
        assert 1e-4 <= trial.params["learning_rate"] <= 1e-2
        assert job.config["learning_rate"] == trial.params["learning_rate"]
        assert job.config["lora_r"] == trial.params["lora_r"]
        assert job.config["eval_steps"] == 3  # the rest copied from the base job
    assert jobs[0].config != jobs[1].config  # the sampler drew two different points
    assert len(callbacks) >= 2  # each trial job is sent to the worker after commit
    assert AuditEvent.objects.filter(action="training.sweep.create", target_id=sweep.pk).exists()


def test_the_same_seed_draws_the_same_trials(project, engineer, base_job):
    first = services.sweep_create(
        actor=engineer,
        project=project,
        name="a",
        base_job=base_job,
        search_space=SPACE,
        n_trials=2,
        concurrency=2,
        seed=3,
    )
    second = services.sweep_create(
        actor=engineer,
        project=project,
        name="b",
        base_job=base_job,
        search_space=SPACE,
        n_trials=2,
        concurrency=2,
        seed=3,
    )

    def params(sweep):
        return [t.params for t in sweep.trials.order_by("number")]

    assert params(first) == params(second)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"search_space": {"lerning_rate": SPACE["learning_rate"]}}, "search_space"),
        (
            {"search_space": {"learning_rate": {"type": "float", "low": 1e-4, "high": 5.0}}},
            "search_space",
        ),
        ({"search_space": {"lora_r": {"type": "normal"}}}, "search_space"),
        ({"initial_trials": [{"warmup_ratio": 0.1}]}, "initial_trials"),
        ({"n_trials": 0}, "n_trials"),
        ({"concurrency": 4}, "concurrency"),
        ({"pruner_settings": {"patience": 3}}, "pruner_settings"),
    ],
)
def test_a_sweep_the_service_refuses_is_a_400_naming_the_field_and_leaves_nothing(
    project, engineer, base_job, changes, field
):
    response = _api(engineer).post(_sweeps(project), _body(base_job, **changes), format="json")

    assert response.status_code == 400
    assert field in response.json(), response.json()
    assert not Sweep.objects.exists()
    assert TrainingJob.objects.count() == 1


def test_a_base_job_without_validation_data_is_refused(
    project, engineer, tiny_base_model, data_files
):
    job = services.training_job_create(
        actor=engineer,
        project=project,
        name="no-eval",
        kind="sft",
        method="lora",
        base_model=tiny_base_model,
        values=QUICK,
        train_file=str(data_files["sft_train"]),
    )

    response = _api(engineer).post(_sweeps(project), _body(job), format="json")

    assert response.status_code == 400
    assert "validation" in response.json()["base_job"][0]
    assert not Sweep.objects.exists()


def test_another_projects_job_cannot_be_a_sweeps_base(other_project, member_of, base_job):
    outsider = member_of(Role.ENGINEER)  # an engineer of `project`, posting to its own
    Membership.objects.create(project=other_project, user=outsider, role=Role.ENGINEER)

    response = _api(outsider).post(_sweeps(other_project), _body(base_job), format="json")

    assert response.status_code == 400
    assert response.json()["base_job"] == ["No such training job."]
    assert not Sweep.objects.exists()


@pytest.mark.parametrize("role", [Role.COMPLIANCE, Role.ADMIN, Role.REVIEWER, Role.ANNOTATOR])
def test_only_engineers_start_sweeps_and_a_refusal_leaves_no_trace(
    project, member_of, base_job, role
):
    response = _api(member_of(role)).post(_sweeps(project), _body(base_job), format="json")

    assert response.status_code == 403
    assert not Sweep.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="training.sweep").exists()


@pytest.mark.parametrize("role", [Role.COMPLIANCE, Role.ADMIN])
def test_oversight_reads_a_sweep_but_cannot_register_its_best(
    project, engineer, member_of, base_job, role
):
    sweep = services.sweep_create(
        actor=engineer,
        project=project,
        name="s",
        base_job=base_job,
        search_space=SPACE,
        n_trials=2,
    )
    reader = _api(member_of(role))

    detail = reader.get(reverse("training-api:api-sweep", args=[project.pk, sweep.pk]))
    register = reader.post(
        reverse("training-api:api-sweep-register-best", args=[project.pk, sweep.pk])
    )

    assert detail.status_code == 200
    assert detail.json()["trials"][0]["state"] == "running"
    assert register.status_code == 403
    assert not AuditEvent.objects.filter(action="training.sweep.register_best").exists()


def test_registering_before_any_trial_completed_is_refused(project, engineer, base_job):
    sweep = services.sweep_create(
        actor=engineer,
        project=project,
        name="s",
        base_job=base_job,
        search_space=SPACE,
        n_trials=2,
    )

    response = _api(engineer).post(
        reverse("training-api:api-sweep-register-best", args=[project.pk, sweep.pk])
    )

    assert response.status_code == 400
    assert "no completed trial" in json.dumps(response.json())


def test_the_pages_start_a_sweep_show_it_live_and_cancel_it(client, project, engineer, base_job):
    client.force_login(engineer)
    listing = reverse("training:sweeps", args=[project.pk])

    form = client.get(listing)
    created = client.post(
        listing,
        {
            "name": "page sweep",
            "base_job": base_job.pk,
            "search_space": json.dumps(SPACE),
            "initial_trials": json.dumps([{"learning_rate": 1e-3, "lora_r": 4}]),
            "n_trials": 2,
            "concurrency": 1,
            "sampler": "tpe",
            "pruner": "median",
            "seed": 0,
        },
    )

    assert form.status_code == 200
    assert b'data-testid="sweep-form"' in form.content
    sweep = Sweep.objects.get(name="page sweep")
    assert created.status_code == 302
    assert created["Location"] == reverse("training:sweep", args=[project.pk, sweep.pk])
    live = client.get(created["Location"] + "?part=live", HTTP_HX_REQUEST="true")
    assert live.status_code == 200
    assert b'id="sweep-live"' in live.content
    assert b"<html" not in live.content
    assert b'data-state="running"' in live.content
    chart = client.get(created["Location"] + "?part=chart").json()
    assert [a["name"] for a in chart["options"]["parallelAxis"]] == [
        "learning_rate",
        "lora_r",
        "eval_loss",
    ]

    client.post(reverse("training:sweep_cancel", args=[project.pk, sweep.pk]))

    sweep.refresh_from_db()
    assert sweep.status == Sweep.Status.CANCELLED
    trial = sweep.trials.get()
    trial.job.refresh_from_db()
    assert trial.job.status == JobStatus.CANCELLED  # queued: cancelled at once
    services.sweep_advance(sweep_id=sweep.pk)
    assert SweepTrial.objects.get(pk=trial.pk).state == SweepTrial.State.FAILED


def test_the_page_refuses_a_bad_search_space_with_the_reason(client, project, engineer, base_job):
    client.force_login(engineer)

    response = client.post(
        reverse("training:sweeps", args=[project.pk]),
        {
            "base_job": base_job.pk,
            "search_space": "{not json",
            "n_trials": 2,
            "concurrency": 1,
            "sampler": "tpe",
            "pruner": "median",
            "seed": 0,
        },
    )

    assert response.status_code == 200
    assert b'data-testid="sweep-error"' in response.content
    assert b"Not JSON" in response.content
    assert not Sweep.objects.exists()


def test_a_sweep_past_its_time_budget_stops_its_trials_and_ends(project, engineer, base_job):
    sweep = services.sweep_create(
        actor=engineer,
        project=project,
        name="s",
        base_job=base_job,
        search_space=SPACE,
        n_trials=5,
        max_minutes=1,
    )
    Sweep.objects.filter(pk=sweep.pk).update(created_at=timezone.now() - timedelta(minutes=2))

    sweeps_advance_all()  # the beat: the running trial's job is asked to stop
    sweeps_advance_all()  # and once it has, the sweep ends

    sweep.refresh_from_db()
    trial = sweep.trials.get()
    assert trial.job.status == JobStatus.CANCELLED
    assert trial.state == SweepTrial.State.FAILED
    assert sweep.status == Sweep.Status.FAILED  # no trial completed within the budget
    assert sweep.trials.count() == 1  # none started past it
    assert AuditEvent.objects.filter(action="training.sweep.failed", target_id=sweep.pk).exists()
