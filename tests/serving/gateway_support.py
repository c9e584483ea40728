"""What the gateway tests share: fake engines registered as ready upstreams of a committed
deployment, a key for it, and waits for what the server holds for a second or two (its
routing snapshot) or writes a moment later (telemetry rows)."""

import time
from dataclasses import dataclass

import httpx

from serving.models import RequestRecord
from serving.services.deployments import deployment_key_create, deployment_place
from tests.serving.factories import deployment, engine, version
from tests.support.fake_upstream import FakeUpstream


@dataclass
class Served:
    dep: object
    raw_key: str
    key: object
    stable: FakeUpstream
    canary: FakeUpstream | None = None
    shadow: FakeUpstream | None = None


def serve(
    project,
    engineer,
    *,
    canary_weight=None,
    shadow=False,
    key_limits=None,
    stable_upstream=None,
    **settings,
) -> Served:
    stable_up = stable_upstream or FakeUpstream("stable")
    stable_version = version(project, stage="production")
    engine(model_version=stable_version, url=stable_up.base_url, served="stable-model")
    dep = deployment(project, engineer, stable=stable_version, **settings)
    served = Served(dep=dep, raw_key="", key=None, stable=stable_up)
    if canary_weight is not None:
        served.canary = FakeUpstream("canary")
        canary_version = version(project, stage="canary")
        engine(model_version=canary_version, url=served.canary.base_url, served="canary-model")
        deployment_place(
            actor=engineer, deployment=dep, arm="canary", version=canary_version,
            weight=canary_weight,
        )  # fmt: skip
    if shadow:
        served.shadow = FakeUpstream("shadow")
        shadow_version = version(project, stage="candidate")
        engine(model_version=shadow_version, url=served.shadow.base_url, served="shadow-model")
        deployment_place(actor=engineer, deployment=dep, arm="shadow", version=shadow_version)
    served.key, served.raw_key = deployment_key_create(
        actor=engineer, deployment=dep, name="tests", **(key_limits or {})
    )
    dep.refresh_from_db()
    served.dep = dep
    return served


def stop(served: Served) -> None:
    for upstream in (served.stable, served.canary, served.shadow):
        if upstream is not None:
            upstream.stop()


def gateway_client(base_url: str, raw_key: str) -> httpx.Client:
    return httpx.Client(
        base_url=base_url + "/v1", headers={"Authorization": f"Bearer {raw_key}"}, timeout=20
    )


def wait_routed(client: httpx.Client, name: str, timeout: float = 6) -> None:
    """Until the server's routing snapshot (held ~1 s) lists the deployment."""
    deadline = time.monotonic() + timeout
    while True:
        listed = client.get("/models").json().get("data", [])
        if any(m["id"] == name for m in listed):
            return
        assert time.monotonic() < deadline, f"{name} never appeared in /v1/models"
        time.sleep(0.1)


def wait_settled() -> None:
    """A change to a deployment's routing reaches the server within two cache periods."""
    time.sleep(2.2)


def records(count: int, timeout: float = 8, **filters) -> list[RequestRecord]:
    """At least `count` telemetry rows matching `filters` (written in batches by the server)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = list(RequestRecord.objects.filter(**filters).order_by("created_at", "id"))
        if len(rows) >= count:
            return rows
        assert time.monotonic() < deadline, f"{len(rows)} of {count} telemetry rows"
        time.sleep(0.1)


def chat(client: httpx.Client, model: str, text: str = "Hello there", **extra) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": text}], **extra}
    return client.post("/chat/completions", json=body)
