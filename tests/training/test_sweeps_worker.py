import contextlib
import os
import signal
import time

import pytest
from django.urls import reverse

from core.models import AuditEvent, JobStatus
from tests.training.conftest import QUICK, wait_finished, wait_for
from tests.training.test_faults import _poll, beat  # noqa: F401 - beat is a fixture
from training import services
from training.models import ModelVersion, Sweep, SweepTrial, TrainingJob
from training.selectors.lineage import lineage_section
from training.selectors.sweeps import sweep_param_importances, sweep_trials
from training.services.sweeps import sweep_register_best, sweeps_advance_all

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.celery]

SPACE = {
    "learning_rate": {"type": "float", "low": 1e-4, "high": 1.0, "log": True},
    "lora_r": {"type": "categorical", "choices": [4, 8]},
}
# Two sound trials for the median to stand on, then one whose learning rate is absurd: its
# first eval loss is far above theirs, so the median pruner stops it.
INITIAL = [
    {"learning_rate": 5e-3, "lora_r": 8},
    {"learning_rate": 2e-3, "lora_r": 4},
    {"learning_rate": 1.0, "lora_r": 8},
]


def base_job(engineer, project, base, files):
    job = services.training_job_create(
        actor=engineer,
        project=project,
        name="base",
        kind="sft",
        method="lora",
        base_model=base,
        values={**QUICK, "eval_steps": 3, "save_steps": 100},
        train_file=str(files["sft_train"]),
        eval_file=str(files["sft_val"]),
    )
    services.training_job_cancel(actor=engineer, job=job)  # the sweep copies its settings only
    return wait_finished(job)


def wait_sweep(sweep: Sweep, timeout: float = 600) -> Sweep:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sweep.refresh_from_db()
        if not sweep.is_active:
            return sweep
        time.sleep(0.5)
    states = list(sweep.trials.values_list("number", "state", "job__status"))
    raise AssertionError(f"sweep {sweep.pk} still {sweep.status}: {states}")


def test_a_sweep_runs_its_trials_prunes_the_hopeless_one_and_registers_the_best(
    celery_worker, client, engineer, project, tiny_base_model, data_files
):
    base = base_job(engineer, project, tiny_base_model, data_files)

    sweep = services.sweep_create(
        actor=engineer,
        project=project,
        name="lr sweep",
        base_job=base,
        search_space=SPACE,
        initial_trials=INITIAL,
        n_trials=4,
        concurrency=1,
        pruner="median",
        pruner_settings={"n_startup_trials": 2, "n_warmup_steps": 0},
    )
    assert sweep.trials.count() == 1  # the concurrency limit

    sweep = wait_sweep(sweep)

    trials = sweep_trials(sweep=sweep)
    assert sweep.status == Sweep.Status.SUCCEEDED, [(t.state, t.error) for t in trials]
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert [t.params for t in trials[:3]] == INITIAL
    assert set(trials[3].params) == set(SPACE)  # the fourth chosen by TPE
    assert trials[2].state == SweepTrial.State.PRUNED
    assert trials[0].state == trials[1].state == SweepTrial.State.COMPLETE
    assert all(t.job.sweep_trial == t for t in trials)
    assert trials[2].job.cancel_requested or trials[2].job.status == JobStatus.SUCCEEDED
    complete = [t for t in trials if t.state == SweepTrial.State.COMPLETE]
    assert sweep.best_trial == min(complete, key=lambda t: t.value)
    # Trials wait for the sweep to register the one that matters.
    assert not ModelVersion.objects.filter(job__sweep_trial__sweep=sweep).exists()
    assert sweep_param_importances(sweep=sweep, trials=trials)
    actions = set(AuditEvent.objects.filter(target_id=sweep.pk).values_list("action", flat=True))
    assert {"training.sweep.create", "training.sweep.prune", "training.sweep.succeeded"} <= actions

    version = sweep_register_best(actor=engineer, sweep=sweep)

    assert version.job_id == sweep.best_trial.job_id
    section = lineage_section(version=version)
    (job_row,) = [j for j in section.jobs if j["id"] == version.job_id]
    assert job_row["sweep"]["id"] == sweep.pk
    assert job_row["sweep"]["search_space"] == SPACE
    assert job_row["sweep"]["trial"] == sweep.best_trial.number
    assert section.audit_targets["training.sweep"] == [sweep.pk]
    client.force_login(engineer)
    page = client.get(reverse("training:version", args=[project.pk, version.pk]))
    assert b'data-testid="version-sweep"' in page.content
    assert reverse("training:sweep", args=[project.pk, sweep.pk]).encode() in page.content
    assert sweeps_advance_all() == 0  # nothing left running


def test_a_trial_lost_with_its_worker_resumes_and_the_sweep_goes_on(
    killable_workers,
    beat,  # noqa: F811
    engineer,
    project,
    tiny_base_model,
    data_files,
):
    worker = killable_workers()
    base = services.training_job_create(
        actor=engineer,
        project=project,
        name="base",
        kind="sft",
        method="lora",
        base_model=tiny_base_model,
        values={**QUICK, "max_steps": 24, "save_steps": 4, "eval_steps": 4},
        train_file=str(data_files["sft_train"]),
        eval_file=str(data_files["sft_val"]),
    )
    services.training_job_cancel(actor=engineer, job=base)
    wait_finished(base)
    sweep = services.sweep_create(
        actor=engineer,
        project=project,
        name="killed",
        base_job=base,
        search_space=SPACE,
        initial_trials=INITIAL[:2],
        n_trials=2,
        pruner="none",
    )
    lost = sweep.trials.get().job
    wait_for(lost, JobStatus.RUNNING)
    _poll(lambda: lost.checkpoints.exists(), 120, "a checkpoint")
    runner_pid = TrainingJob.objects.get(pk=lost.pk).runner_pid

    killable_workers.kill(worker)
    killable_workers()  # the other worker: it runs the dead-job sweep's resume, then trial 1
    try:
        sweep = wait_sweep(sweep, timeout=400)
    finally:
        with contextlib.suppress(ProcessLookupError, TypeError):
            os.kill(runner_pid, signal.SIGKILL)

    trials = sweep_trials(sweep=sweep)
    assert sweep.status == Sweep.Status.SUCCEEDED, [(t.state, t.error) for t in trials]
    assert [t.state for t in trials] == [SweepTrial.State.COMPLETE] * 2
    assert trials[0].job.resumed_from_id == lost.pk  # the trial went on as the resumed job
    assert TrainingJob.objects.get(pk=lost.pk).status == JobStatus.FAILED
    assert not ModelVersion.objects.filter(project=project).exists()
