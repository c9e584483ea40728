import pytest
from django.urls import reverse

from core.models import Role
from tests.portal.factories import ProjectFactory
from tests.training.conftest import QUICK
from training import services
from training.models import TrainingMetric
from training.selectors.compare import compare_ids, job_comparison

pytestmark = pytest.mark.django_db

ROLES = [r.value for r in Role]
READERS = {"engineer", "admin", "compliance"}


def _job(engineer, project, base, data_files, name, **values):
    job = services.training_job_create(
        actor=engineer,
        project=project,
        name=name,
        kind="sft",
        method="lora",
        base_model=base,
        values={**QUICK, **values},
        train_file=str(data_files["sft_train"]),
    )
    return job


def _log(job, *rows):
    for step, values in rows:
        TrainingMetric.objects.create(job=job, step=step, values=values)


@pytest.fixture
def two_jobs(engineer, project, tiny_base_model, data_files):
    a = _job(engineer, project, tiny_base_model, data_files, "slow", learning_rate=1e-4)
    b = _job(engineer, project, tiny_base_model, data_files, "fast", learning_rate=5e-3)
    _log(a, (1, {"loss": 2.0}), (2, {"loss": 1.8, "eval_loss": 1.9}))
    _log(b, (1, {"loss": 2.1}), (2, {"loss": 1.2}))
    return a, b


def test_comparison_marks_only_the_differing_settings(project, two_jobs):
    a, b = two_jobs

    comparison = job_comparison(project=project, job_ids=[a.pk, b.pk])
    rows = {row.name: row for row in comparison.settings}

    assert [j.pk for j in comparison.jobs] == [a.pk, b.pk]
    assert rows["learning_rate"].differs
    assert rows["learning_rate"].values == ["0.0001", "0.005"]
    assert not rows["max_steps"].differs
    assert not rows["seed"].differs
    assert comparison.differing == sum(r.differs for r in comparison.settings)


def test_comparison_overlays_curves_and_puts_final_figures_side_by_side(project, two_jobs):
    a, b = two_jobs

    comparison = job_comparison(project=project, job_ids=[a.pk, b.pk])
    finals = {row.name: row.values for row in comparison.finals}

    assert comparison.curves["loss"] == {
        f"slow #{a.pk}": [(1, 2.0), (2, 1.8)],
        f"fast #{b.pk}": [(1, 2.1), (2, 1.2)],
    }
    assert finals["final loss"] == ["1.8", "1.2"]
    assert finals["lowest eval loss"] == ["1.9", "—"]


def test_comparison_reaches_no_job_of_another_project(
    engineer, project, tiny_base_model, data_files, two_jobs
):
    other = ProjectFactory()
    stranger = _job(engineer, other, tiny_base_model, data_files, "theirs")

    comparison = job_comparison(project=project, job_ids=[two_jobs[0].pk, stranger.pk])

    assert [j.pk for j in comparison.jobs] == [two_jobs[0].pk]


def test_compare_ids_drop_junk_and_repeats():
    assert compare_ids(["3", "x", "3", "-1", "7", ""]) == [3, 7]


@pytest.mark.parametrize("role", ROLES)
def test_compare_page_is_open_to_the_job_pages_readers(client, member_of, project, two_jobs, role):
    client.force_login(member_of(role))
    url = reverse("training:job_compare", args=[project.pk])

    response = client.get(url, {"jobs": [j.pk for j in two_jobs]})

    assert response.status_code == (200 if role in READERS else 403)
    if response.status_code == 200:
        body = response.content.decode()
        assert 'data-testid="compare-settings"' in body
        assert 'data-setting="learning_rate"' in body
        assert 'data-testid="compare-eval-chart"' in body


def test_compare_page_has_no_eval_chart_when_no_job_evaluated(
    client, engineer, project, tiny_base_model, data_files
):
    a = _job(engineer, project, tiny_base_model, data_files, "a")
    b = _job(engineer, project, tiny_base_model, data_files, "b")
    _log(a, (1, {"loss": 2.0}))
    _log(b, (1, {"loss": 2.2}))
    client.force_login(engineer)

    body = client.get(
        reverse("training:job_compare", args=[project.pk]), {"jobs": [a.pk, b.pk]}
    ).content.decode()

    assert 'data-testid="compare-loss-chart"' in body
    assert 'data-testid="compare-eval-chart"' not in body


def test_job_chart_data_shows_the_eval_series_only_once_it_has_points(
    client, engineer, project, two_jobs
):
    _, job = two_jobs
    client.force_login(engineer)
    url = reverse("training:job", args=[project.pk, job.pk])

    before = client.get(url, {"part": "chart"}).json()
    _log(job, (3, {"eval_loss": 1.5}))
    after = client.get(url, {"part": "chart"}).json()

    assert [s["name"] for s in before["options"]["series"]] == ["train loss"]
    assert [s["name"] for s in after["options"]["series"]] == ["train loss", "eval loss"]
    assert before["smooth"] is True


def test_job_chart_data_is_scoped_like_the_job_page(client, member_of, project, two_jobs):
    client.force_login(member_of("annotator"))

    response = client.get(
        reverse("training:job", args=[project.pk, two_jobs[0].pk]), {"part": "chart"}
    )

    assert response.status_code == 403
