import pytest
from django.conf import settings
from django.urls import reverse
from rest_framework.test import APIClient

from core.models import AuditEvent
from core.selectors import api_key_hash
from portal.asgi_limits import body_limit_for
from serving.models import Deployment, DeploymentKey
from serving.services.deployments import deployment_place
from tests.serving.factories import base_model, deployment, version
from tests.serving.telemetry_rows import record

pytestmark = pytest.mark.django_db


def _url(name, project_id, **kwargs):
    return reverse(f"serving-api:{name}", kwargs={"project_id": project_id, **kwargs})


def _api(user):
    api = APIClient()
    api.force_authenticate(user)
    return api


def test_an_engineer_creates_and_lists_deployments(project, engineer):
    stable = version(project, stage="production")
    api = _api(engineer)

    made = api.post(
        _url("api-deployments", project.pk),
        {
            "name": "chat",
            "stable_version": stable.pk,
            "logging_policy": "all",
            "rollout_steps": [20, 100],
        },
        format="json",
    )
    listed = api.get(_url("api-deployments", project.pk), {"limit": 1})

    assert made.status_code == 201, made.json()
    assert made.json()["stable_version"] == stable.pk
    assert made.json()["rollout_steps"] == [20, 100]
    assert made.json()["logging_policy"] == "all"
    assert [d["name"] for d in listed.json()["results"]] == ["chat"]


def test_create_from_a_base_model_of_another_project_is_not_found(project, engineer, other_project):
    foreign = base_model(other_project)

    response = _api(engineer).post(
        _url("api-deployments", project.pk),
        {"name": "chat", "stable_base_model": foreign.pk},
        format="json",
    )

    assert response.status_code == 404
    assert not Deployment.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x" * 101}, "name"),
        ({"name": "chat", "rollout_steps": [50] * 101}, "rollout_steps"),
        ({"name": "chat", "guardrails": {"blocklist": ["a"] * 201}}, "guardrails.blocklist"),
        (
            {"name": "chat", "guardrails": {"classifier_version_id": "abc"}},
            "guardrails.classifier_version_id",
        ),
        ({"name": "chat", "rollback_rules": {"error_rate": 1e300}}, "rollback_rules.error_rate"),
        ({"name": "chat", "price_per_1k_tokens": "NaN"}, "price_per_1k_tokens"),
        ({"name": "chat", "surprise": 1}, "surprise"),
        ({"name": "chat"}, "stable"),
    ],
)
def test_malformed_and_oversized_fields_are_400s_naming_the_field(project, engineer, body, field):
    base = base_model(project)
    if field != "stable":
        body = {"stable_base_model": base.pk, **body}

    response = _api(engineer).post(_url("api-deployments", project.pk), body, format="json")

    assert response.status_code == 400, response.json()
    assert field in response.json()
    assert not Deployment.objects.exists()


def test_a_body_that_is_not_json_is_a_400(project, engineer):
    response = _api(engineer).post(
        _url("api-deployments", project.pk), b"{not json", content_type="application/json"
    )

    assert response.status_code == 400


def test_writes_take_the_small_body_limit_answered_413_before_django(project):
    for name, kwargs in [
        ("api-deployments", {}),
        ("api-deployment", {"deployment_id": 1}),
        ("api-deployment-place", {"deployment_id": 1}),
        ("api-deployment-keys", {"deployment_id": 1}),
    ]:
        assert (
            body_limit_for(_url(name, project.pk, **kwargs)) == settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        )


def test_settings_patch_changes_only_what_is_given(project, engineer):
    dep = deployment(project, engineer)

    response = _api(engineer).patch(
        _url("api-deployment", project.pk, deployment_id=dep.pk),
        {"guardrails": {"pii": "refuse"}, "webhook_secret": "s"},
        format="json",
    )

    dep.refresh_from_db()
    assert response.status_code == 200
    assert response.json()["webhook_secret_set"] is True
    assert "webhook_secret" not in response.json()
    assert dep.guardrails["pii"] == "refuse"
    assert dep.rollout_steps == [10, 25, 50, 100]


def test_an_empty_patch_is_refused(project, engineer):
    dep = deployment(project, engineer)

    response = _api(engineer).patch(
        _url("api-deployment", project.pk, deployment_id=dep.pk), {}, format="json"
    )

    assert response.status_code == 400
    assert dep.decisions.count() == 1


def test_place_reweight_pause_and_the_decisions_they_leave(project, engineer):
    dep = deployment(project, engineer)
    canary = version(project, stage="canary")
    api = _api(engineer)
    kw = {"deployment_id": dep.pk}

    placed = api.post(
        _url("api-deployment-place", project.pk, **kw),
        {"arm": "canary", "model_version": canary.pk, "weight": 5},
        format="json",
    )
    weighed = api.post(
        _url("api-deployment-reweight", project.pk, **kw),
        {"weight": 30, "reason": "fine"},
        format="json",
    )
    paused = api.post(
        _url("api-deployment-rollout", project.pk, **kw), {"action": "pause"}, format="json"
    )
    history = api.get(_url("api-deployment-decisions", project.pk, **kw)).json()["results"]

    assert (placed.status_code, weighed.status_code, paused.status_code) == (200, 200, 200)
    assert paused.json()["rollout"] == "paused"
    assert paused.json()["canary_weight"] == 30
    assert [d["kind"] for d in history] == ["pause", "reweight", "place", "create"]
    assert history[1]["from_weight"] == 5
    assert history[1]["to_weight"] == 30
    assert history[1]["actor"] == engineer.username


def test_a_version_of_another_project_is_not_found_and_nothing_moves(
    project, engineer, other_project
):
    dep = deployment(project, engineer)
    foreign = version(other_project, stage="canary")

    response = _api(engineer).post(
        _url("api-deployment-place", project.pk, deployment_id=dep.pk),
        {"arm": "canary", "model_version": foreign.pk},
        format="json",
    )

    assert response.status_code == 404
    dep.refresh_from_db()
    assert dep.canary_version is None


def test_another_projects_deployment_is_not_found(project, engineer, other_project, outsider):
    theirs = deployment(other_project, outsider)
    api = _api(engineer)

    answers = [
        api.get(_url("api-deployment", project.pk, deployment_id=theirs.pk)).status_code,
        api.patch(
            _url("api-deployment", project.pk, deployment_id=theirs.pk),
            {"description": "x"},
            format="json",
        ).status_code,
        api.post(
            _url("api-deployment-keys", project.pk, deployment_id=theirs.pk),
            {"name": "k"},
            format="json",
        ).status_code,
        api.get(_url("api-deployment-series", project.pk, deployment_id=theirs.pk)).status_code,
    ]

    assert answers == [404, 404, 404, 404]
    assert not DeploymentKey.objects.exists()


def test_a_wrong_stage_is_a_400_naming_the_version(project, engineer):
    dep = deployment(project, engineer)
    candidate = version(project, stage="candidate")

    response = _api(engineer).post(
        _url("api-deployment-place", project.pk, deployment_id=dep.pk),
        {"arm": "stable", "model_version": candidate.pk},
        format="json",
    )

    assert response.status_code == 400
    assert "model_version" in response.json()


def test_keys_show_the_secret_once_and_list_only_prefixes(project, engineer, compliance):
    dep = deployment(project, engineer)
    url = _url("api-deployment-keys", project.pk, deployment_id=dep.pk)

    made = _api(engineer).post(url, {"name": "ci", "expires_in_days": 30}, format="json")
    listed = _api(compliance).get(url).json()["results"]

    secret = made.json()["secret"]
    assert made.status_code == 201
    assert made.json()["openai_base_url"] == "http://testserver/v1"
    assert DeploymentKey.objects.get().key_hash == api_key_hash(secret)
    assert listed[0]["prefix"] == secret[:14]
    assert "secret" not in listed[0]


def test_revoke_and_a_key_of_another_deployment_is_not_found(project, engineer):
    dep, other = deployment(project, engineer), deployment(project, engineer)
    api = _api(engineer)
    made = api.post(
        _url("api-deployment-keys", project.pk, deployment_id=dep.pk), {"name": "ci"}, format="json"
    ).json()

    wrong = api.post(
        _url("api-deployment-key-revoke", project.pk, deployment_id=other.pk, key_id=made["id"])
    )
    right = api.post(
        _url("api-deployment-key-revoke", project.pk, deployment_id=dep.pk, key_id=made["id"])
    )

    assert wrong.status_code == 404
    assert right.status_code == 200
    assert right.json()["revoked_at"] is not None


def test_compliance_is_refused_writes_and_leaves_no_trace(project, engineer, compliance):
    dep = deployment(project, engineer)
    canary = version(project, stage="canary")
    deployment_place(actor=engineer, deployment=dep, arm="canary", version=canary)
    before = AuditEvent.objects.count()

    response = _api(compliance).post(
        _url("api-deployment-rollout", project.pk, deployment_id=dep.pk),
        {"action": "abort"},
        format="json",
    )

    assert response.status_code == 403
    assert AuditEvent.objects.count() == before
    dep.refresh_from_db()
    assert dep.canary_weight == 10


def test_series_per_arm_and_a_window_it_does_not_know(project, engineer):
    dep = deployment(project, engineer)
    record(dep, arm="stable", latency_ms=40)
    record(dep, arm="canary", latency_ms=80, status=502)
    api = _api(engineer)
    url = _url("api-deployment-series", project.pk, deployment_id=dep.pk)

    series = api.get(url, {"window": "1h"}).json()
    refused = api.get(url, {"window": "forever"})

    assert series["bucket_s"] == 60
    assert {b["arm"]: b["errors"] for b in series["buckets"]} == {"stable": 0, "canary": 1}
    assert {d["arm"]: d["tokens_out"] for d in series["days"]} == {"stable": 20, "canary": 20}
    assert refused.status_code == 400
    assert "window" in refused.json()
