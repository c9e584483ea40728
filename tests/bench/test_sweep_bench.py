"""Sweep overhead: the portal's time per trial beyond the trial's own job (claim to end) —
advancing the sweep, the Optuna decision, creating and queueing the next job and the
worker picking it up. Target: at most 5 s per trial."""

import time

import pytest

from core.models import JobStatus
from tests.training import conftest as training_fixtures
from tests.training.conftest import QUICK
from training import services
from training.models import Sweep

# The training tests' fixtures, shared with this folder.
tiny_base_model = training_fixtures.tiny_base_model
data_files = training_fixtures.data_files

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.celery]

TRIALS = 4
SPACE = {
    "learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    "lora_r": {"type": "categorical", "choices": [4, 8]},
}


def test_sweep_overhead_per_trial(
    celery_worker,
    engineer,
    project,
    tiny_base_model,
    data_files,
    report,
):
    base = services.training_job_create(
        actor=engineer,
        project=project,
        name="bench-base",
        kind="sft",
        method="lora",
        base_model=tiny_base_model,
        values={**QUICK, "max_steps": 6, "eval_steps": 3, "save_steps": 100},
        train_file=str(data_files["sft_train"]),
        eval_file=str(data_files["sft_val"]),
    )
    services.training_job_cancel(actor=engineer, job=base)
    while True:  # the base job only lends its settings: let its cancel settle first
        base.refresh_from_db()
        if not base.is_active:
            break
        time.sleep(0.2)

    started = time.monotonic()
    sweep = services.sweep_create(
        actor=engineer,
        project=project,
        name="bench",
        base_job=base,
        search_space=SPACE,
        n_trials=TRIALS,
        concurrency=1,
        pruner=Sweep.Pruner.NONE,
    )
    deadline = started + 900
    while sweep.is_active and time.monotonic() < deadline:
        time.sleep(0.2)
        sweep.refresh_from_db()
    total = time.monotonic() - started

    trials = list(sweep.trials.select_related("job"))
    assert sweep.status == Sweep.Status.SUCCEEDED, [(t.state, t.error) for t in trials]
    assert len(trials) == TRIALS
    assert all(t.job.status == JobStatus.SUCCEEDED for t in trials)
    own = sum((t.job.finished_at - t.job.started_at).total_seconds() for t in trials)
    overhead = (total - own) / TRIALS
    print(f"sweep_overhead_s: {overhead:.3f} s")
    print(f"sweep_trial_job_s: {own / TRIALS:.3f} s")
    report("sweep_overhead_s", overhead, "s")
    report("sweep_trial_job_s", own / TRIALS, "s")
    assert overhead <= 5.0
