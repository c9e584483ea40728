import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import call_command

from core.models import AuditEvent
from serving.models import EngineInstance, EngineKind
from serving.selectors import routing_table
from serving.selectors.engines import engine_targets
from serving.services.deployments import deployment_create, deployment_place
from serving.services.engines import engine_register_external, engine_unregister
from tests.serving.factories import base_model, version

pytestmark = pytest.mark.django_db

URL = "http://vllm.internal:8000/v1"


def _vllm_deployment(project, engineer, stable):
    return deployment_create(
        actor=engineer, project=project, name="vllm-chat", engine="vllm", stable_version=stable
    )


def test_a_registered_vllm_url_becomes_the_arm_of_vllm_deployments(project, engineer):
    stable = version(project, stage="production")
    _vllm_deployment(project, engineer, stable)

    engine = engine_register_external(
        actor=engineer, project=project, model_version=stable, base_url=URL + "/", served_model="s"
    )

    assert (engine.status, engine.base_url) == (EngineInstance.Status.READY, URL)
    route = routing_table()["vllm-chat"]
    assert (route.stable.base_url, route.stable.served_model) == (URL, "s")
    event = AuditEvent.objects.get(action="serving.engine.register")
    assert event.project_id == project.pk


def test_registering_again_replaces_the_earlier_url(project, engineer):
    stable = version(project, stage="production")
    first = engine_register_external(
        actor=engineer, project=project, model_version=stable, base_url=URL, served_model="a"
    )

    engine_register_external(
        actor=engineer,
        project=project,
        model_version=stable,
        base_url="http://other:8000/v1",
        served_model="b",
    )

    first.refresh_from_db()
    assert first.status == EngineInstance.Status.STOPPED


@pytest.mark.parametrize("role", ["annotator", "reviewer", "compliance"])
def test_only_engineers_and_admins_register_engines(project, member_of, role):
    stable = version(project, stage="production")

    with pytest.raises(PermissionDenied):
        engine_register_external(
            actor=member_of(role, f"{role}-e"),
            project=project,
            model_version=stable,
            base_url=URL,
            served_model="m",
        )

    assert not EngineInstance.objects.exists()


@pytest.mark.parametrize(
    ("url", "engine", "field"),
    [
        ("ftp://x/v1", "vllm", "base_url"),
        ("http://x:8000", "vllm", "base_url"),
        (URL, "transformers", "engine"),
    ],
)
def test_a_bad_registration_is_refused_by_field(project, engineer, url, engine, field):
    stable = version(project, stage="production")

    with pytest.raises(ValidationError) as caught:
        engine_register_external(
            actor=engineer,
            project=project,
            model_version=stable,
            base_url=url,
            served_model="m",
            engine=engine,
        )

    assert field in caught.value.message_dict
    assert not EngineInstance.objects.exists()


def test_a_version_of_another_project_cannot_be_registered(project, other_project, engineer):
    foreign = version(other_project, stage="production")

    with pytest.raises(ValidationError, match="another project"):
        engine_register_external(
            actor=engineer, project=project, model_version=foreign, base_url=URL, served_model="m"
        )


def test_unregistering_takes_the_arm_out_of_routing(project, engineer):
    stable = version(project, stage="production")
    _vllm_deployment(project, engineer, stable)
    engine = engine_register_external(
        actor=engineer, project=project, model_version=stable, base_url=URL, served_model="m"
    )

    engine_unregister(actor=engineer, instance=engine)

    assert routing_table()["vllm-chat"].stable is None
    assert AuditEvent.objects.filter(action="serving.engine.stopped").count() == 1


def test_the_command_registers_a_base_model_url(project, engineer):
    base = base_model(project)

    call_command(
        "register_engine",
        "--project",
        project.slug,
        "--user",
        engineer.username,
        "--base-model",
        str(base.pk),
        "--url",
        URL,
        "--served-model",
        "smol",
        stdout=open("/dev/null", "w"),  # noqa: SIM115
    )

    engine = EngineInstance.objects.get(base_model=base)
    assert (engine.engine, engine.served_model) == (EngineKind.VLLM, "smol")


def test_targets_name_each_placed_model_once_for_transformers_deployments(project, engineer):
    base = base_model(project)
    dep = deployment_create(
        actor=engineer, project=project, name="t", engine="transformers", stable_base_model=base
    )
    canary = version(project, stage="canary")
    deployment_place(actor=engineer, deployment=dep, arm="canary", version=canary)
    deployment_place(actor=engineer, deployment=dep, arm="shadow", version=canary)
    _vllm_deployment(project, engineer, version(project, stage="production"))

    targets = engine_targets()

    assert set(targets) == {("base", base.pk), ("version", canary.pk)}
