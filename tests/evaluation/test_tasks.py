import tempfile
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from evaluation import services
from evaluation.models import Generation, GenerationJob, RatingsBootstrap
from tests.evaluation.factories import build_campaign, prompt_rows
from tests.training.conftest import tiny_base_model  # noqa: F401 - fixture
from training.services import base_model_register
from training.services.base_models import runner_call


def _wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_bootstrap_runs_on_a_real_worker(celery_worker, project, engineer, member_of):
    campaign, made = build_campaign(engineer, project, prompts=12, contestants=3)
    reviewer = member_of("reviewer", "w")
    while (j := services.judgment_next(campaign=campaign, reviewer=reviewer)) is not None:
        x_wins = j.battle.prompt.position % 3 != 0
        outcome = "a" if j.left_is_x == x_wins else "b"
        services.judgment_submit(
            campaign=campaign, reviewer=reviewer, token=j.token, outcome=outcome
        )

    bootstrap = services.ratings_bootstrap_start(actor=engineer, campaign=campaign)

    assert _wait_for(
        lambda: RatingsBootstrap.objects.get(pk=bootstrap.pk).status in ("succeeded", "failed")
    )
    bootstrap.refresh_from_db()
    assert bootstrap.status == "succeeded", bootstrap.error
    assert set(bootstrap.intervals) == {str(c.pk) for c in made}
    assert bootstrap.judgments == 36


@pytest.mark.django_db
def test_generation_job_records_outputs_decoding_and_seed(
    project, engineer, django_capture_on_commit_callbacks
):
    # A model of its own (its outputs are checked), under the test model root.
    tiny = Path(tempfile.mkdtemp(dir=settings.TRAINING_MODEL_ROOTS[0])) / "tiny"
    runner_call("build-tiny", str(tiny))
    base = base_model_register(
        actor=None, project=project, name="tiny", source="local", path=str(tiny)
    )
    prompt_set = services.prompt_set_create(
        actor=engineer, project=project, name="p", rows=prompt_rows(5)
    )
    contestant = services.contestant_create(
        actor=engineer,
        project=project,
        label="tiny + template",
        base_model=base,
        prompt_template="Answer briefly: {prompt}",
    )
    with django_capture_on_commit_callbacks() as callbacks:
        job = services.generation_job_start(
            actor=engineer,
            contestant=contestant,
            prompt_set=prompt_set,
            max_new_tokens=8,
            seed=7,
            batch_size=2,
        )
    assert len(callbacks) == 1

    services.prompts.generation_job_run(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == GenerationJob.Status.SUCCEEDED, job.error
    assert job.done == job.total == 5
    assert job.decoding == {"max_new_tokens": 8, "temperature": 0.0, "top_p": 1.0}
    assert job.seed == 7
    assert Generation.objects.filter(job=job).count() == 5
    # A duplicate delivery changes nothing.
    services.prompts.generation_job_run(job_id=job.pk)
    assert Generation.objects.filter(job=job).count() == 5


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_a_generation_job_started_from_the_form_succeeds_on_a_real_worker(
    celery_worker,
    client,
    project,
    engineer,
    tiny_base_model,  # noqa: F811
):
    prompt_set = services.prompt_set_create(
        actor=engineer, project=project, name="p", rows=prompt_rows(3)
    )
    contestant = services.contestant_create(
        actor=engineer,
        project=project,
        label="tiny + template",
        base_model=tiny_base_model,
        prompt_template="Answer briefly: {prompt}",
    )
    client.force_login(engineer)

    response = client.post(
        reverse("evaluation:generation_start", args=[project.pk]),
        {
            "generate-prompt_set": prompt_set.pk,
            "generate-contestants": [contestant.pk],
            "generate-max_new_tokens": "6",
            "generate-temperature": "0",
            "generate-seed": "0",
        },
    )

    assert response.status_code == 302
    job = GenerationJob.objects.get(contestant=contestant)
    assert _wait_for(
        lambda: GenerationJob.objects.get(pk=job.pk).status in ("succeeded", "failed"), 120
    )
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.SUCCEEDED, job.error
    assert job.done == job.total == 3
    assert Generation.objects.filter(job=job).count() == 3
    fragment = client.get(reverse("evaluation:generation_jobs", args=[project.pk]))
    assert 'data-testid="generation-job-status">Succeeded<' in fragment.content.decode()


@pytest.mark.django_db
def test_abandoned_generation_is_requeued_and_carries_on_after_its_answers(
    project, engineer, tiny_model_dir, django_capture_on_commit_callbacks
):
    from core.models import AuditEvent
    from evaluation.models import MetricRun

    base = base_model_register(
        actor=None, project=project, name="tiny", source="local", path=str(tiny_model_dir)
    )
    prompt_set = services.prompt_set_create(
        actor=engineer, project=project, name="p", rows=prompt_rows(4)
    )
    contestant = services.contestant_create(
        actor=engineer, project=project, label="tiny", base_model=base
    )
    job = services.generation_job_start(
        actor=engineer, contestant=contestant, prompt_set=prompt_set, max_new_tokens=4
    )
    first = prompt_set.prompts.order_by("position").first()
    # Its worker was stopped after answering one prompt.
    Generation.objects.create(job=job, prompt=first, output="kept")
    GenerationJob.objects.filter(pk=job.pk).update(status="running", done=1)
    run = services.metric_run_start(actor=engineer, contestant=contestant, prompt_set=prompt_set)

    with django_capture_on_commit_callbacks() as callbacks:
        assert services.work_requeue_abandoned(actor=engineer, project=project) == 2

    assert len(callbacks) == 2  # both tasks sent again
    assert GenerationJob.objects.get(pk=job.pk).status == "queued"
    assert MetricRun.objects.get(pk=run.pk).status == "queued"
    assert AuditEvent.objects.filter(action="evaluation.work.requeue").exists()
    services.prompts.generation_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert (job.status, job.done) == ("succeeded", 4)
    assert Generation.objects.get(job=job, prompt=first).output == "kept"
    assert Generation.objects.filter(job=job).count() == 4


@pytest.mark.django_db
def test_a_bootstrap_without_counted_judgments_stores_unbounded_limits(
    project, engineer, django_capture_on_commit_callbacks
):
    # No judgment counts (none made, or every rater excluded): the ratings are undefined.
    campaign, (winner, loser) = build_campaign(engineer, project, prompts=6, contestants=2)
    with django_capture_on_commit_callbacks():
        bootstrap = services.ratings_bootstrap_start(actor=engineer, campaign=campaign)

    services.campaigns.ratings_bootstrap_run(bootstrap_id=bootstrap.pk)

    bootstrap.refresh_from_db()
    assert bootstrap.status == "succeeded", bootstrap.error
    # JSON holds no NaN or infinity: an undefined limit is stored as null.
    assert bootstrap.intervals[str(loser.pk)] == [None, None, None]
    page = services.gate_create(
        actor=engineer,
        project=project,
        name="ship",
        checks=[{"kind": "rating_above_baseline", "campaign": campaign.pk, "min_judgments": 1}],
    )
    run = services.gate_run(actor=engineer, gate=page, candidate=winner, baseline=loser)
    assert not run.passed
    assert "judgment(s) between" in run.results[0]["reason"]
