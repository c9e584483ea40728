import pytest
from django.urls import reverse

from core.selectors import api_key_hash
from serving.models import Deployment, DeploymentDecision, DeploymentKey
from serving.services.deployments import deployment_place
from tests.serving.factories import base_model, deployment, reward_version, version
from tests.serving.telemetry_rows import record

pytestmark = pytest.mark.django_db


def _url(name, dep, **kwargs):
    return reverse(
        f"serving:{name}", kwargs={"project_id": dep.project_id, "deployment_id": dep.pk, **kwargs}
    )


@pytest.fixture
def canary_deployment(project, engineer):
    dep = deployment(project, engineer, name="chat")
    canary = version(project, stage="canary", name="tuned")
    return deployment_place(actor=engineer, deployment=dep, arm="canary", version=canary)


def test_the_list_shows_the_projects_deployments_and_offers_creation_to_managers(
    client, project, engineer, compliance, other_project, outsider
):
    deployment(project, engineer, name="chat")
    deployment(other_project, outsider, name="theirs")
    url = reverse("serving:deployments", kwargs={"project_id": project.pk})

    client.force_login(engineer)
    page = client.get(url).content.decode()
    client.force_login(compliance)
    read_only = client.get(url).content.decode()

    assert "chat" in page
    assert "theirs" not in page
    assert 'data-testid="new-deployment"' in page
    assert "chat" in read_only
    assert 'data-testid="new-deployment"' not in read_only


def test_an_engineer_creates_a_deployment_serving_a_base_model(client, project, engineer):
    base = base_model(project)
    client.force_login(engineer)

    response = client.post(
        reverse("serving:deployment_create", kwargs={"project_id": project.pk}),
        {
            "name": "support-bot",
            "engine": "transformers",
            "stable": f"b:{base.pk}",
            "price_per_1k_tokens": "0.002",
            "price_per_gpu_hour": "0",
        },
    )

    made = Deployment.objects.get(name="support-bot")
    assert response.status_code == 302
    assert response["Location"] == _url("deployment", made)
    assert made.stable_base_model == base
    assert str(made.price_per_1k_tokens) == "0.002000"


def test_a_refused_name_is_shown_on_its_field_and_nothing_is_made(client, project, engineer):
    base = base_model(project)
    client.force_login(engineer)

    response = client.post(
        reverse("serving:deployment_create", kwargs={"project_id": project.pk}),
        {
            "name": "Not A Slug!",
            "engine": "transformers",
            "stable": f"b:{base.pk}",
            "price_per_1k_tokens": "0",
            "price_per_gpu_hour": "0",
        },
    )

    assert response.status_code == 200
    assert "name" in response.context["form"].errors
    assert "Lower-case letters" in response.content.decode()
    assert not Deployment.objects.exists()


def test_the_page_shows_arms_charts_keys_and_history(client, project, engineer, canary_deployment):
    client.force_login(engineer)

    response = client.get(_url("deployment", canary_deployment))

    body = response.content.decode()
    assert response.status_code == 200
    assert 'data-testid="canary-weight">10 %' in body
    assert 'data-testid="stable-share">90 %' in body
    for key in ("rps", "latency", "errors", "flags", "tokens", "cost"):
        assert f'data-chart-key="{key}"' in body
    assert [d.kind for d in response.context["decisions"]] == ["place", "create"]


def test_the_chart_data_puts_canary_beside_stable(client, project, engineer, canary_deployment):
    record(canary_deployment, arm="stable", latency_ms=100)
    record(canary_deployment, arm="canary", latency_ms=300, status=500)
    client.force_login(engineer)

    data = client.get(_url("deployment", canary_deployment), {"part": "charts"}).json()

    charts = data["charts"]
    assert [s["name"] for s in charts["rps"]["options"]["series"]] == ["stable", "canary"]
    assert [s["name"] for s in charts["latency"]["options"]["series"]] == [
        "stable p50",
        "stable p95",
        "canary p50",
        "canary p95",
    ]
    errors = {s["name"]: s["data"][0][1] for s in charts["errors"]["options"]["series"]}
    assert errors == {"stable": 0.0, "canary": 100.0}
    assert charts["rps"]["options"]["xAxis"]["type"] == "time"


def test_the_arms_region_renders_alone_for_htmx(client, project, engineer, canary_deployment):
    client.force_login(engineer)

    response = client.get(
        _url("deployment", canary_deployment), {"part": "arms"}, HTTP_HX_REQUEST="true"
    )

    body = response.content.decode()
    assert body.lstrip().startswith('<section class="card" id="arms"')
    assert "Decision history" not in body


def test_a_version_in_the_wrong_stage_is_refused_on_its_field(client, project, engineer):
    dep = deployment(project, engineer)
    candidate = version(project, stage="candidate")
    client.force_login(engineer)

    response = client.post(
        _url("deployment_place", dep), {"arm": "canary", "model_version": candidate.pk}
    )

    assert response.status_code == 400
    assert "model_version" in response.context["place_form"].errors
    dep.refresh_from_db()
    assert dep.canary_version is None


def test_an_engineer_pauses_the_rollout(client, project, engineer, canary_deployment):
    client.force_login(engineer)

    response = client.post(
        _url("deployment_rollout", canary_deployment), {"action": "pause", "reason": "look"}
    )

    canary_deployment.refresh_from_db()
    assert response.status_code == 302
    assert canary_deployment.rollout == Deployment.Rollout.PAUSED
    assert canary_deployment.decisions.first().reason == "look"


def test_reweighting_without_a_canary_names_the_weight(client, project, engineer):
    dep = deployment(project, engineer)
    client.force_login(engineer)

    response = client.post(_url("deployment_reweight", dep), {"weight": 50})

    assert response.status_code == 400
    assert response.context["reweight_form"].errors["weight"] == ["No canary is placed."]


def _settings(**changes):
    values = {
        "description": "",
        "price_per_1k_tokens": "0",
        "price_per_gpu_hour": "0",
        "pii": "redact",
        "blocklist": "secret\\d+",
        "blocklist_action": "refuse",
        "logging_policy": "sampled",
        "logging_sample_percent": "5",
        "retention_days": "7",
        "window_s": "120",
        "min_requests": "20",
        "error_rate": "0.1",
        "p95_ms": "",
        "flag_rate": "",
        "negative_feedback_rate": "",
        "rollout_steps": "5, 50, 100",
        "webhook_url": "https://hooks.example/roll",
        "webhook_secret": "s3cret",
    }
    return values | changes


def test_settings_are_saved_through_the_service(client, project, engineer):
    dep = deployment(project, engineer)
    client.force_login(engineer)

    response = client.post(_url("deployment_settings", dep), _settings())

    dep.refresh_from_db()
    assert response.status_code == 302
    assert dep.guardrails["pii"] == "redact"
    assert dep.guardrails["blocklist"] == ["secret\\d+"]
    assert dep.rollback_rules == {"window_s": 120, "min_requests": 20, "error_rate": 0.1}
    assert dep.rollout_steps == [5, 50, 100]
    assert dep.webhook_secret == "s3cret"
    assert dep.decisions.first().figures["webhook_secret"] == "(set)"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"rollout_steps": "50, 10"}, "rollout_steps"),
        ({"error_rate": "7"}, "error_rate"),
        ({"window_s": "5"}, "window_s"),
    ],
)
def test_refused_settings_name_their_field_and_change_nothing(
    client, project, engineer, changes, field
):
    dep = deployment(project, engineer)
    client.force_login(engineer)

    response = client.post(_url("deployment_settings", dep), _settings(**changes))

    assert response.status_code == 400
    assert field in response.context["settings_form"].errors
    dep.refresh_from_db()
    assert dep.rollout_steps == [10, 25, 50, 100]


def test_a_bad_blocklist_pattern_is_named(client, project, engineer):
    dep = deployment(project, engineer)
    client.force_login(engineer)

    response = client.post(_url("deployment_settings", dep), _settings(blocklist="ok\n(unclosed"))

    assert response.status_code == 400
    assert "guardrails.blocklist[1]" in response.content.decode()


def test_a_new_key_shows_its_secret_once_with_the_lines_to_paste(client, project, engineer):
    dep = deployment(project, engineer, name="chat")
    client.force_login(engineer)

    created = client.post(
        _url("deployment_key_create", dep),
        {"name": "ci", "requests_per_minute": 60, "tokens_per_minute": 0},
    )
    later = client.get(_url("deployment", dep))

    secret = created.context["new_secret"]
    key = DeploymentKey.objects.get()
    assert key.key_hash == api_key_hash(secret)
    body = created.content.decode()
    assert "export OPENAI_BASE_URL=http://testserver/v1" in body
    assert f"export OPENAI_API_KEY={secret}" in body
    assert created["Cache-Control"] == "no-store"
    assert secret not in later.content.decode()
    assert key.prefix in later.content.decode()


def test_revoking_a_key(client, project, engineer):
    dep = deployment(project, engineer)
    client.force_login(engineer)
    client.post(
        _url("deployment_key_create", dep),
        {"name": "ci", "requests_per_minute": 0, "tokens_per_minute": 0},
    )
    key = DeploymentKey.objects.get()

    response = client.post(_url("deployment_key_revoke", dep, key_id=key.pk))

    key.refresh_from_db()
    assert response.status_code == 302
    assert key.revoked_at is not None


def test_another_projects_deployment_and_key_are_not_found(
    client, project, engineer, other_project, outsider
):
    theirs = deployment(other_project, outsider)
    key = DeploymentKey.objects.create(
        deployment=theirs, name="k", prefix="sk-tp-x", key_hash="h", created_by=outsider
    )
    mine = deployment(project, engineer)
    client.force_login(engineer)
    url = reverse(
        "serving:deployment", kwargs={"project_id": project.pk, "deployment_id": theirs.pk}
    )
    revoke = reverse(
        "serving:deployment_key_revoke",
        kwargs={"project_id": project.pk, "deployment_id": mine.pk, "key_id": key.pk},
    )

    assert client.get(url).status_code == 404
    assert client.post(revoke).status_code == 404
    key.refresh_from_db()
    assert key.revoked_at is None


def test_compliance_reads_but_cannot_pause(
    client, project, engineer, compliance, canary_deployment
):
    client.force_login(compliance)

    page = client.get(_url("deployment", canary_deployment))
    refused = client.post(_url("deployment_rollout", canary_deployment), {"action": "abort"})

    assert page.status_code == 200
    assert 'data-testid="place-form"' not in page.content.decode()
    assert refused.status_code == 403
    canary_deployment.refresh_from_db()
    assert canary_deployment.canary_weight == 10
    assert canary_deployment.decisions.filter(kind=DeploymentDecision.Kind.ABORT).count() == 0


def test_the_chart_window_is_chosen_and_an_unknown_one_falls_back(
    client, project, engineer, canary_deployment
):
    record(canary_deployment, arm="stable", ago_s=2 * 3600)
    client.force_login(engineer)
    url = _url("deployment", canary_deployment)

    six_hours = client.get(url, {"part": "charts", "window": "6h"}).json()
    unknown = client.get(url, {"part": "charts", "window": "forever"}).json()

    assert six_hours["window"] == "6h"
    assert [s["name"] for s in six_hours["charts"]["rps"]["options"]["series"]] == ["stable"]
    assert unknown["window"] == "15m"
    assert unknown["charts"]["rps"]["options"]["series"] == []


def test_a_classifier_guardrail_is_chosen_among_the_projects_reward_models(
    client, project, engineer, tmp_path
):
    dep = deployment(project, engineer)
    rm = reward_version(project, tmp_path / "rm")
    sft = version(project)
    client.force_login(engineer)

    offered = client.get(_url("deployment", dep)).context["settings_form"]
    choices = [value for value, _ in offered.fields["classifier_version"].choices]
    assert choices == ["", str(rm.pk)]

    response = client.post(
        _url("deployment_settings", dep),
        _settings(
            classifier_version=str(rm.pk),
            classifier_threshold="0.8",
            classifier_action="flag",
            classifier_on=["output"],
        ),
    )

    assert response.status_code == 302
    dep.refresh_from_db()
    assert dep.guardrails == {
        "pii": "redact",
        "blocklist": ["secret\\d+"],
        "blocklist_action": "refuse",
        "classifier_version_id": rm.pk,
        "classifier_threshold": 0.8,
        "classifier_action": "flag",
        "classifier_on": ["output"],
    }
    refused = client.post(_url("deployment_settings", dep), _settings(classifier_version=sft.pk))
    assert refused.status_code == 400
    assert "classifier_version" in refused.context["settings_form"].errors
    zero = client.post(
        _url("deployment_settings", dep),
        _settings(classifier_version=str(rm.pk), classifier_threshold="0"),
    )
    assert zero.context["settings_form"].errors["classifier_threshold"] == ["Between 0 and 1."]
    cleared = client.post(_url("deployment_settings", dep), _settings())
    assert cleared.status_code == 302
    dep.refresh_from_db()
    assert "classifier_version_id" not in dep.guardrails
