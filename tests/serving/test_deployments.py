import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from core.models import AuditEvent
from serving.guardrails import check_messages, check_text, compile_policy
from serving.models import Deployment, DeploymentDecision, DeploymentKey
from serving.selectors import gateway_key_get, routing_table
from serving.services.deployments import (
    deployment_configure,
    deployment_key_create,
    deployment_key_revoke,
    deployment_place,
    deployment_reweight,
    deployment_rollout_set,
)
from tests.serving.factories import deployment, engine, version

pytestmark = pytest.mark.django_db


def test_create_records_a_decision_and_an_audit_event(project, engineer):
    dep = deployment(project, engineer, name="chat")

    decision = dep.decisions.get()
    assert decision.kind == DeploymentDecision.Kind.CREATE
    event = AuditEvent.objects.get(seq=decision.audit_seq)
    assert event.action == "serving.deployment.create"
    assert dep.rollback_rules["window_s"] == 300


@pytest.mark.parametrize(
    ("arm", "stage"),
    [
        ("stable", "canary"),
        ("stable", "candidate"),
        ("canary", "production"),
        ("shadow", "archived"),
    ],
)
def test_an_arm_refuses_versions_in_the_wrong_stage(project, engineer, arm, stage):
    dep = deployment(project, engineer)
    wrong = version(project, stage=stage)

    with pytest.raises(ValidationError, match=arm):
        deployment_place(actor=engineer, deployment=dep, arm=arm, version=wrong)

    assert dep.decisions.count() == 1


def test_a_version_of_another_project_cannot_be_placed(project, other_project, engineer):
    dep = deployment(project, engineer)
    foreign = version(other_project, stage="canary")

    with pytest.raises(ValidationError, match="another project"):
        deployment_place(actor=engineer, deployment=dep, arm="canary", version=foreign)


@pytest.mark.parametrize("role", ["annotator", "reviewer", "compliance"])
def test_only_engineers_and_admins_change_deployments(project, engineer, member_of, role):
    dep = deployment(project, engineer)
    someone = member_of(role, f"{role}-x")

    with pytest.raises(PermissionDenied):
        deployment_reweight(actor=someone, deployment=dep, weight=50)
    with pytest.raises(PermissionDenied):
        deployment_key_create(actor=someone, deployment=dep, name="k")


def test_placing_a_canary_starts_its_rollout_at_the_first_step(project, engineer):
    dep = deployment(project, engineer)
    canary = version(project, stage="canary")

    dep = deployment_place(actor=engineer, deployment=dep, arm="canary", version=canary)

    assert (dep.canary_weight, dep.rollout) == (10, Deployment.Rollout.PROGRESSING)
    dep = deployment_rollout_set(actor=engineer, deployment=dep, action="pause")
    assert dep.rollout == "paused"
    with pytest.raises(ValidationError, match="cannot pause"):
        deployment_rollout_set(actor=engineer, deployment=dep, action="pause")
    dep = deployment_rollout_set(actor=engineer, deployment=dep, action="abort", reason="bad")
    assert (dep.canary_weight, dep.rollout) == (0, "aborted")
    kinds = list(dep.decisions.order_by("id").values_list("kind", flat=True))
    assert kinds == ["create", "place", "pause", "abort"]


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"guardrails": {"pii": "maybe"}}, "guardrails.pii"),
        ({"guardrails": {"blocklist": ["(unclosed"]}}, "guardrails.blocklist[0]"),
        ({"rollback_rules": {"error_rate": 2}}, "rollback_rules.error_rate"),
        ({"rollback_rules": {"latency": 1}}, "rollback_rules.latency"),
        ({"rollout_steps": [50, 10]}, "rollout_steps"),
        ({"logging_policy": "some"}, "logging_policy"),
        ({"owner": "me"}, "owner"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(project, engineer, values, field):
    dep = deployment(project, engineer)

    with pytest.raises(ValidationError) as caught:
        deployment_configure(actor=engineer, deployment=dep, values=values)

    assert field in caught.value.message_dict
    assert Deployment.objects.get(pk=dep.pk).guardrails == {}


def test_keys_are_stored_hashed_and_stop_working_when_revoked(project, engineer):
    dep = deployment(project, engineer)

    key, raw = deployment_key_create(actor=engineer, deployment=dep, name="app")

    assert raw.startswith("sk-tp-")
    assert raw not in key.key_hash
    assert not DeploymentKey.objects.filter(key_hash=raw).exists()
    assert gateway_key_get(raw=raw).deployment_id == dep.pk
    deployment_key_revoke(actor=engineer, key=key)
    assert gateway_key_get(raw=raw) is None


def test_routing_table_names_ready_upstreams_per_arm(project, engineer):
    stable = version(project, stage="production")
    canary = version(project, stage="canary")
    dep = deployment(project, engineer, name="chat", stable=stable)
    deployment_place(actor=engineer, deployment=dep, arm="canary", version=canary, weight=30)
    engine(model_version=stable, url="http://127.0.0.1:9/v1")

    route = routing_table()["chat"]

    assert route.stable.base_url == "http://127.0.0.1:9/v1"
    assert route.canary is None  # no ready engine yet: all traffic stays on stable
    engine(model_version=canary, url="http://127.0.0.1:10/v1")
    route = routing_table()["chat"]
    assert (route.canary.model_version_id, route.canary_weight) == (canary.pk, 30)


def test_guardrails_redact_or_refuse_pii_and_blocklisted_text():
    redact = compile_policy({"pii": "redact"})
    verdict = check_text(redact, "mail me at jane.doe@example.com", where="input")
    assert verdict.text == "mail me at [EMAIL]"
    assert not verdict.refused
    assert verdict.flags == ["input:pii:EMAIL"]

    refuse = compile_policy({"blocklist": [r"\bsecret plan\b"]})
    messages, verdict = check_messages(refuse, [{"role": "user", "content": "the SECRET plan"}])
    assert verdict.refused
    assert verdict.flags == ["input:blocklist:0"]
    clean = check_text(refuse, "nothing here", where="output")
    assert not clean.refused
    assert clean.flags == []
