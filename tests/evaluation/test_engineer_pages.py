import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from core.models import Role
from evaluation import services
from evaluation.models import Contestant, Gate, GateRun, GenerationJob, PromptSet
from tests.conftest import ROLES
from tests.evaluation.factories import (
    base_model,
    build_campaign,
    model_version,
    prompt_rows,
    writing_snapshot,
)

pytestmark = pytest.mark.django_db

READERS = {Role.ENGINEER, Role.COMPLIANCE, Role.ADMIN}
NOT_ENGINEERS = sorted(set(ROLES) - {Role.ENGINEER})


def _url(name, project, *args):
    return reverse(f"evaluation:{name}", args=[project.pk, *args])


def _overview(project, section):
    return _url("overview", project) + f"#{section}"


@pytest.fixture
def prompt_set(project, engineer):
    return services.prompt_set_create(
        actor=engineer, project=project, name="support prompts", rows=prompt_rows(4)
    )


@pytest.fixture
def tiny(project):
    return base_model(project, "tiny-base")


@pytest.fixture
def runnable(project, engineer, tiny):
    return [
        services.contestant_create(actor=engineer, project=project, label="plain", base_model=tiny),
        services.contestant_create(
            actor=engineer,
            project=project,
            label="templated",
            base_model=tiny,
            prompt_template="Answer briefly: {prompt}",
        ),
    ]


@pytest.fixture
def judged_campaign(project, engineer, member_of):
    """A campaign in which every reviewer verdict prefers contestant 0."""
    campaign, made = build_campaign(engineer, project, prompts=24, contestants=3)
    reviewer = member_of(Role.REVIEWER, "judge")
    while (j := services.judgment_next(campaign=campaign, reviewer=reviewer)) is not None:
        best = made[0].pk
        outcome = (
            "a" if j.contestant_left_id == best else "b" if j.contestant_right_id == best else "tie"
        )
        services.judgment_submit(
            campaign=campaign, reviewer=reviewer, token=j.token, outcome=outcome
        )
    return campaign, made


def _rating_gate(engineer, project, campaign, name="ship it"):
    return services.gate_create(
        actor=engineer,
        project=project,
        name=name,
        checks=[{"kind": "rating_above_baseline", "campaign": campaign.pk}],
    )


# --- who may do what ----------------------------------------------------------------------


FORMS = [
    "prompt_set_from_snapshot",
    "contestant_create",
    "generation_start",
    "metric_runs_start",
    "gate_create",
    "gate_run",
]


@pytest.mark.parametrize("role", NOT_ENGINEERS)
@pytest.mark.parametrize("name", FORMS)
def test_only_engineers_post_the_evaluation_forms(client, project, member_of, role, name):
    client.force_login(member_of(role))

    response = client.post(_url(name, project), {"contestant-label": "x"})

    assert response.status_code == 403
    assert not Contestant.objects.exists()
    assert not PromptSet.objects.exists()
    assert not Gate.objects.exists()


def test_compliance_reads_the_overview_without_any_form(client, project, compliance):
    client.force_login(compliance)

    body = client.get(_url("overview", project)).content.decode()

    assert 'data-testid="generation-jobs"' in body
    assert 'data-testid="gate-runs"' in body
    for form in ("contestant-form", "generation-form", "gate-form", "gate-run-form"):
        assert f'data-testid="{form}"' not in body


def test_an_engineer_sees_every_form(client, project, engineer):
    client.force_login(engineer)

    body = client.get(_url("overview", project)).content.decode()

    for form in (
        "prompt-set-from-snapshot-form",
        "contestant-form",
        "generation-form",
        "gate-form",
        "gate-run-form",
    ):
        assert f'data-testid="{form}"' in body


# --- prompt set from a snapshot -----------------------------------------------------------


def test_prompt_set_from_a_snapshot(client, project, engineer):
    snapshot = writing_snapshot(project, engineer, rows=40)
    client.force_login(engineer)

    response = client.post(
        _url("prompt_set_from_snapshot", project),
        {"from_snapshot-name": "held-out", "from_snapshot-snapshot": snapshot.pk},
    )

    assert response.status_code == 302
    assert response["Location"] == _overview(project, "prompt-sets")
    prompt_set = PromptSet.objects.get(project=project, name="held-out")
    assert prompt_set.snapshot_id == snapshot.pk
    assert prompt_set.prompt_count == snapshot.members.filter(split="test").count()


def test_prompt_set_from_a_snapshot_with_a_taken_name_says_so(client, project, engineer):
    snapshot = writing_snapshot(project, engineer, rows=40)
    services.prompt_set_create(
        actor=engineer, project=project, name="held-out", rows=[{"prompt": "x"}]
    )
    client.force_login(engineer)

    response = client.post(
        _url("prompt_set_from_snapshot", project),
        {"from_snapshot-name": "held-out", "from_snapshot-snapshot": snapshot.pk},
    )

    assert response.status_code == 200
    assert "Name: A prompt set called &#x27;held-out&#x27; already exists." in response.text
    assert PromptSet.objects.count() == 1


def test_a_snapshot_of_another_project_is_not_a_choice(
    client, project, other_project, engineer, outsider
):
    theirs = writing_snapshot(other_project, outsider, rows=10)
    client.force_login(engineer)

    response = client.post(
        _url("prompt_set_from_snapshot", project),
        {"from_snapshot-name": "stolen", "from_snapshot-snapshot": theirs.pk},
    )

    assert response.status_code == 200
    assert "Snapshot: Select a valid choice." in response.text
    assert not PromptSet.objects.exists()


# --- contestants --------------------------------------------------------------------------


def test_add_a_base_model_contestant_with_a_template(client, project, engineer, tiny):
    client.force_login(engineer)

    response = client.post(
        _url("contestant_create", project),
        {
            "contestant-label": "tiny, briefly",
            "contestant-base_model": tiny.pk,
            "contestant-prompt_template": "Answer briefly: {prompt}",
        },
    )

    assert response.status_code == 302
    assert response["Location"] == _overview(project, "contestants")
    contestant = Contestant.objects.get(label="tiny, briefly")
    assert contestant.base_model == tiny
    assert contestant.model_version is None
    assert contestant.prompt_template == "Answer briefly: {prompt}"


def test_a_model_version_competes_under_its_registry_name(client, project, engineer):
    version = model_version(project, "support-v3")
    client.force_login(engineer)

    response = client.post(
        _url("contestant_create", project),
        {"contestant-label": "", "contestant-model_version": version.pk},
    )

    assert response.status_code == 302
    assert Contestant.objects.get(model_version=version).label == "support-v3"
    overview = client.get(_url("overview", project)).content.decode()
    assert "support-v3" in overview


def test_a_second_name_for_a_model_version_is_refused(client, project, engineer):
    version = model_version(project, "support-v3")
    client.force_login(engineer)

    response = client.post(
        _url("contestant_create", project),
        {"contestant-label": "v3", "contestant-model_version": version.pk},
    )

    assert response.status_code == 200
    assert "Label: A model version competes under its registry name" in response.text
    assert "&#x27;support-v3&#x27;" in response.text
    assert not Contestant.objects.filter(model_version=version).exists()


def test_the_api_names_a_version_contestant_as_the_registry_does(project, engineer):
    api = APIClient()
    api.force_authenticate(engineer)
    url = reverse("evaluation-api:api-contestants", args=[project.pk])
    named, renamed = model_version(project, "support-v3"), model_version(project, "support-v4")

    created = api.post(url, {"model_version": named.pk}, format="json")
    refused = api.post(url, {"label": "v4", "model_version": renamed.pk}, format="json")

    assert created.status_code == 201
    assert created.json()["label"] == "support-v3"
    assert refused.status_code == 400
    assert "support-v4" in refused.json()["label"][0]
    assert not Contestant.objects.filter(model_version=renamed).exists()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "Model version: Choose a model version or a base model."),
        (
            {"contestant-prompt_template": "no placeholder"},
            "Prompt template: The template must contain {prompt}.",
        ),
        ({"contestant-base_model": "999999"}, "Base model: Select a valid choice."),
    ],
)
def test_a_bad_contestant_is_refused_naming_the_field(
    client, project, engineer, tiny, fields, message
):
    client.force_login(engineer)
    data = {"contestant-label": "bad", **fields}
    if "contestant-base_model" not in fields and fields:
        data["contestant-base_model"] = tiny.pk

    response = client.post(_url("contestant_create", project), data)

    assert response.status_code == 200
    assert message in response.text
    assert 'data-testid="form-error"' in response.text
    assert not Contestant.objects.exists()


def test_a_model_version_of_another_project_is_not_a_choice(
    client, project, other_project, engineer
):
    theirs = model_version(other_project, "their-v1")
    client.force_login(engineer)

    response = client.post(
        _url("contestant_create", project),
        {"contestant-label": "borrowed", "contestant-model_version": theirs.pk},
    )

    assert "Model version: Select a valid choice." in response.text
    assert not Contestant.objects.exists()


# --- generations --------------------------------------------------------------------------


def test_generate_outputs_starts_one_job_per_contestant(
    client, project, engineer, prompt_set, runnable, django_capture_on_commit_callbacks
):
    client.force_login(engineer)

    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(
            _url("generation_start", project),
            {
                "generate-prompt_set": prompt_set.pk,
                "generate-contestants": [c.pk for c in runnable],
                "generate-max_new_tokens": "64",
                "generate-temperature": "0",
                "generate-seed": "0",
            },
        )

    assert response.status_code == 302
    assert response["Location"] == _overview(project, "generations")
    jobs = GenerationJob.objects.filter(prompt_set=prompt_set).order_by("contestant__label")
    assert [j.contestant.label for j in jobs] == ["plain", "templated"]
    assert all(j.status == "queued" and j.total == 4 for j in jobs)
    assert all(j.decoding == {"max_new_tokens": 64, "temperature": 0.0, "top_p": 1.0} for j in jobs)
    assert len(callbacks) == 2


def test_score_outputs_starts_one_metric_run_per_contestant(
    client, project, engineer, prompt_set, runnable, django_capture_on_commit_callbacks
):
    from evaluation.models import MetricRun

    client.force_login(engineer)
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(
            _url("metric_runs_start", project),
            {
                "metrics-prompt_set": prompt_set.pk,
                "metrics-contestants": [c.pk for c in runnable],
                "metrics-slice_field": "language",
            },
        )

    assert response.status_code == 302
    assert response["Location"] == _overview(project, "metrics")
    runs = MetricRun.objects.filter(prompt_set=prompt_set).order_by("contestant__label")
    assert [(r.contestant.label, r.slice_field) for r in runs] == [
        ("plain", "language"),
        ("templated", "language"),
    ]
    assert len(callbacks) == 2


def test_scoring_a_prompt_set_without_references_is_refused(client, project, engineer, runnable):
    from evaluation.models import MetricRun

    bare = services.prompt_set_create(
        actor=engineer, project=project, name="bare", rows=[{"prompt": "hi"}]
    )
    client.force_login(engineer)

    response = client.post(
        _url("metric_runs_start", project),
        {"metrics-prompt_set": bare.pk, "metrics-contestants": [runnable[0].pk]},
    )

    assert response.status_code == 200
    assert "has no reference answers" in response.content.decode()
    assert not MetricRun.objects.exists()


def test_the_generate_form_defaults_to_64_greedy_tokens_with_seed_0(client, project, engineer):
    client.force_login(engineer)

    body = client.get(_url("overview", project)).content.decode()

    assert 'name="generate-max_new_tokens" value="64"' in body
    assert 'name="generate-temperature" value="0.0"' in body
    assert 'name="generate-seed" value="0"' in body


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"generate-max_new_tokens": "0"},
            "Max new tokens: Ensure this value is greater than or equal to 1.",
        ),
        ({"generate-temperature": "-1"}, "Temperature: Ensure this value is greater than"),
        ({"generate-contestants": []}, "Contestants: This field is required."),
    ],
)
def test_bad_decoding_is_refused_naming_the_field(
    client, project, engineer, prompt_set, runnable, fields, message
):
    client.force_login(engineer)
    data = {
        "generate-prompt_set": prompt_set.pk,
        "generate-contestants": [c.pk for c in runnable],
        "generate-max_new_tokens": "64",
        "generate-temperature": "0",
        "generate-seed": "0",
        **fields,
    }

    response = client.post(_url("generation_start", project), data)

    assert response.status_code == 200
    assert message in response.text
    assert not GenerationJob.objects.exists()


def test_a_contestant_without_a_model_cannot_be_generated_for(
    client, project, engineer, prompt_set
):
    imported = services.contestant_create(actor=engineer, project=project, label="imported")
    client.force_login(engineer)

    response = client.post(
        _url("generation_start", project),
        {
            "generate-prompt_set": prompt_set.pk,
            "generate-contestants": [imported.pk],
            "generate-max_new_tokens": "64",
            "generate-temperature": "0",
            "generate-seed": "0",
        },
    )

    assert "Contestants: Select a valid choice." in response.text
    assert not GenerationJob.objects.exists()


def test_the_jobs_fragment_polls_while_a_job_may_change(
    client, project, engineer, prompt_set, runnable
):
    job = services.generation_job_start(
        actor=engineer, contestant=runnable[0], prompt_set=prompt_set
    )
    client.force_login(engineer)
    url = _url("generation_jobs", project)

    running = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    GenerationJob.objects.filter(pk=job.pk).update(status="succeeded", done=4)
    finished = client.get(url, HTTP_HX_REQUEST="true").content.decode()

    assert "<html" not in running
    assert 'hx-trigger="every 2s"' in running
    assert 'data-testid="generation-job-status">Queued<' in running
    assert 'value="0"' in running
    assert 'hx-trigger="every 2s"' not in finished
    assert 'data-testid="generation-job-status">Succeeded<' in finished
    assert "4 / 4" in finished


# --- gates --------------------------------------------------------------------------------


def _gate_post(name, rows):
    data = {
        "gate-name": name,
        "check-TOTAL_FORMS": "3",
        "check-INITIAL_FORMS": "0",
        "check-MIN_NUM_FORMS": "0",
        "check-MAX_NUM_FORMS": "10",
    }
    for n in range(3):
        row = rows[n] if n < len(rows) else {}
        data.update({f"check-{n}-{k}": v for k, v in row.items()})
    return data


def test_create_a_gate_with_a_rating_and_a_metric_check(client, project, engineer, judged_campaign):
    campaign, _ = judged_campaign
    client.force_login(engineer)

    response = client.post(
        _url("gate_create", project),
        _gate_post(
            "release",
            [
                {"kind": "rating_above_baseline", "campaign": campaign.pk},
                {
                    "kind": "metric_not_worse",
                    "prompt_set": campaign.prompt_set_id,
                    "metric": "chrf",
                    "tolerance": "1.5",
                },
            ],
        ),
    )

    assert response.status_code == 302
    assert response["Location"] == _overview(project, "gates")
    gate = Gate.objects.get(name="release")
    assert [(c["kind"], c.get("campaign"), c.get("prompt_set")) for c in gate.checks] == [
        ("rating_above_baseline", campaign.pk, None),
        ("metric_not_worse", None, campaign.prompt_set_id),
    ]
    assert gate.checks[1]["metric"] == "chrf"
    assert gate.checks[1]["tolerance"] == 1.5


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"kind": "rating_above_baseline"}], "check 1, Campaign: This check needs a campaign."),
        (
            [{}, {"kind": "unsafe_rate_below", "max": "0.1"}],
            "check 2, Campaign: This check needs a campaign.",
        ),
        ([], "Add at least one check: choose its kind."),
    ],
)
def test_a_bad_gate_is_refused_naming_the_check_and_field(client, project, engineer, rows, message):
    client.force_login(engineer)

    response = client.post(_url("gate_create", project), _gate_post("g", rows))

    assert response.status_code == 200
    assert message in response.text
    assert not Gate.objects.exists()


def test_a_gate_without_a_name_is_refused(client, project, engineer, judged_campaign):
    campaign, _ = judged_campaign
    client.force_login(engineer)

    response = client.post(
        _url("gate_create", project),
        _gate_post("", [{"kind": "rating_above_baseline", "campaign": campaign.pk}]),
    )

    assert "Name: This field is required." in response.text
    assert not Gate.objects.exists()


def test_run_a_gate_and_see_each_checks_reason(client, project, engineer, judged_campaign):
    campaign, made = judged_campaign
    gate = _rating_gate(engineer, project, campaign)
    client.force_login(engineer)

    response = client.post(
        _url("gate_run", project),
        {
            "gate_run-gate": gate.pk,
            "gate_run-candidate": made[0].pk,
            "gate_run-baseline": made[1].pk,
        },
    )

    assert response.status_code == 302
    assert response["Location"] == _overview(project, "gates")
    run = GateRun.objects.get(gate=gate)
    assert run.passed
    page = client.get(_url("overview", project)).content.decode()
    assert 'data-testid="gate-run-outcome">passed<' in page
    assert "rating_above_baseline #1: passed — rating" in page


def test_a_gate_run_against_itself_is_refused(client, project, engineer, judged_campaign):
    campaign, made = judged_campaign
    gate = _rating_gate(engineer, project, campaign)
    client.force_login(engineer)

    response = client.post(
        _url("gate_run", project),
        {
            "gate_run-gate": gate.pk,
            "gate_run-candidate": made[0].pk,
            "gate_run-baseline": made[0].pk,
        },
    )

    assert response.status_code == 200
    assert "Baseline: Choose a baseline other than the candidate." in response.text
    assert not GateRun.objects.exists()


# --- API ----------------------------------------------------------------------------------


def _api(user):
    api = APIClient()
    api.force_authenticate(user)
    return api


def test_api_starts_a_generation_job(
    project, engineer, prompt_set, runnable, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        response = _api(engineer).post(
            reverse("evaluation-api:api-generation-jobs", args=[project.pk]),
            {"prompt_set": prompt_set.pk, "contestant": runnable[1].pk, "max_new_tokens": 32},
            format="json",
        )

    assert response.status_code == 201, response.content
    data = response.json()
    assert data["status"] == "queued"
    assert data["contestant_label"] == "templated"
    assert data["decoding"] == {"max_new_tokens": 32, "temperature": 0.0, "top_p": 1.0}
    assert (data["done"], data["total"]) == (0, 4)
    assert len(callbacks) == 1


def test_api_refuses_bad_decoding_naming_the_field(project, engineer, prompt_set, runnable):
    response = _api(engineer).post(
        reverse("evaluation-api:api-generation-jobs", args=[project.pk]),
        {"prompt_set": prompt_set.pk, "contestant": runnable[0].pk, "max_new_tokens": 0},
        format="json",
    )

    assert response.status_code == 400
    assert "max_new_tokens" in response.json()
    assert not GenerationJob.objects.exists()


def test_api_refuses_a_contestant_without_a_model(project, engineer, prompt_set):
    imported = services.contestant_create(actor=engineer, project=project, label="imported")

    response = _api(engineer).post(
        reverse("evaluation-api:api-generation-jobs", args=[project.pk]),
        {"prompt_set": prompt_set.pk, "contestant": imported.pk},
        format="json",
    )

    assert response.status_code == 400
    assert "contestant" in response.json()


@pytest.mark.parametrize("role", ROLES)
def test_api_generation_jobs_by_role(project, engineer, prompt_set, runnable, member_of, role):
    job = services.generation_job_start(
        actor=engineer, contestant=runnable[0], prompt_set=prompt_set
    )
    api = _api(member_of(role))
    listing = api.get(reverse("evaluation-api:api-generation-jobs", args=[project.pk]))
    detail = api.get(reverse("evaluation-api:api-generation-job", args=[project.pk, job.pk]))
    create = api.post(
        reverse("evaluation-api:api-generation-jobs", args=[project.pk]),
        {"prompt_set": prompt_set.pk, "contestant": runnable[1].pk},
        format="json",
    )

    assert listing.status_code == detail.status_code == (200 if role in READERS else 403)
    assert create.status_code == (201 if role == Role.ENGINEER else 403)
    if role in READERS:
        assert listing.json()["count"] >= 1
        assert listing.json()["results"][-1]["id"] == job.pk
        assert detail.json()["contestant_label"] == "plain"
    if role != Role.ENGINEER:
        assert GenerationJob.objects.count() == 1


def test_api_hides_other_projects_jobs(project, other_project, engineer, outsider):
    theirs_set = services.prompt_set_create(
        actor=outsider, project=other_project, name="theirs", rows=prompt_rows(2)
    )
    theirs = services.contestant_create(
        actor=outsider,
        project=other_project,
        label="theirs",
        base_model=base_model(other_project, "their-base"),
    )
    job = services.generation_job_start(actor=outsider, contestant=theirs, prompt_set=theirs_set)
    api = _api(engineer)

    detail = api.get(reverse("evaluation-api:api-generation-job", args=[project.pk, job.pk]))
    listing = api.get(reverse("evaluation-api:api-generation-jobs", args=[project.pk]))
    create = api.post(
        reverse("evaluation-api:api-generation-jobs", args=[project.pk]),
        {"prompt_set": theirs_set.pk, "contestant": theirs.pk},
        format="json",
    )

    assert detail.status_code == 404
    assert listing.json()["count"] == 0
    assert create.status_code == 404
    assert GenerationJob.objects.count() == 1
