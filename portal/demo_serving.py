"""The demo's production chapter: a deployment that serves the base model as stable from
the first `make demo`, joined by the tuned version as a 10 % canary once the demo pipeline
promotes it, a gateway key to paste into a shell, and a trickle of simulated traffic so the
deployment page's charts have data."""

import json
import logging
import os
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.db import transaction

from core.models import Project, User
from serving.models import Deployment, EngineKind
from serving.selectors import gateway_key_get
from serving.services.deployments import (
    deployment_create,
    deployment_key_create,
    deployment_place,
)
from training.models import BaseModel, ModelVersion

log = logging.getLogger(__name__)

DEPLOYMENT_NAME = "demo-chat"
KEY_NAME = "demo shell"


def _key_file() -> Path:
    return Path(settings.VAR_DIR) / "demo_gateway_key"


@transaction.atomic
def demo_deployment_ensure(*, project: Project, base_model: BaseModel, engineer: User) -> str:
    """The demo deployment (the base model as stable) and a live key for it; returns the
    key's secret, which only the demo keeps (in var/, readable by its owner alone)."""
    deployment = Deployment.objects.filter(name=DEPLOYMENT_NAME).first()
    if deployment is None:
        deployment = deployment_create(
            actor=engineer,
            project=project,
            name=DEPLOYMENT_NAME,
            engine=EngineKind.TRANSFORMERS,
            stable_base_model=base_model,
            description="The demo: the base model answers; the tuned version joins as a canary.",
            settings={
                "guardrails": {"pii": "redact", "blocklist": [], "blocklist_action": "refuse"},
                "logging_policy": Deployment.Logging.SAMPLED,
                "logging_sample_percent": 20,
                "retention_days": 7,
                "rollback_rules": {
                    "window_s": 600,
                    "min_requests": 10,
                    "error_rate": 0.2,
                    "negative_feedback_rate": 0.5,
                },
            },
        )
    path = _key_file()
    if path.exists():
        raw = path.read_text().strip()
        if gateway_key_get(raw=raw) is not None:
            return raw
    # A key whose secret was lost (var/ wiped) stays listed, unused; a new one is made.
    _, raw = deployment_key_create(
        actor=engineer, deployment=deployment, name=KEY_NAME, requests_per_minute=120
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(raw + "\n")
    os.chmod(path, 0o600)
    return raw


@transaction.atomic
def demo_canary_place(*, version: ModelVersion, engineer: User) -> None:
    """Put the promoted demo version on the demo deployment as a 10 % canary (once)."""
    deployment = Deployment.objects.filter(name=DEPLOYMENT_NAME).first()
    if deployment is None or version.stage != ModelVersion.Stage.CANARY:
        return
    if deployment.canary_version_id == version.pk:
        return
    deployment_place(
        actor=engineer,
        deployment=deployment,
        arm="canary",
        version=version,
        weight=10,
        reason="Demo: promoted to canary after the gate and both sign-offs.",
    )


def demo_gateway_line(host: str = "127.0.0.1", port: int = 8000) -> str | None:
    """The line to paste into a shell to talk to the demo deployment, or None."""
    path = _key_file()
    if not path.exists():
        return None
    return f"OPENAI_BASE_URL=http://{host}:{port}/v1 OPENAI_API_KEY={path.read_text().strip()}"


def _questions() -> list[str]:
    source = Path(__file__).parent / "demo_data" / "support_instructions.jsonl"
    questions = []
    with source.open() as lines:
        for line in lines:
            row = json.loads(line)
            text = row.get("instruction") or row.get("prompt") or row.get("question")
            if isinstance(text, str):
                questions.append(text)
    return questions or ["How do I reset my password?"]


def demo_traffic(*, base_url: str, key: str, every_s: float, stop: Callable[[], bool]) -> None:
    """Send one chat request every `every_s` seconds (and now and then a thumbs up or down
    on the answer) until `stop()` is true: the simulated users behind the demo's charts."""
    questions = _questions()
    rng = random.Random(7)  # noqa: S311 - a demo's simulated users, not a secret
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    while not stop():
        body = {
            "model": DEPLOYMENT_NAME,
            "messages": [{"role": "user", "content": rng.choice(questions)}],
            "max_tokens": 32,
            "user": f"demo-user-{rng.randrange(20)}",
        }
        try:
            answer = _post(f"{base_url}/chat/completions", body, headers)
            if answer.get("id") and rng.random() < 0.3:
                _post(
                    f"{base_url}/feedback",
                    {"request_id": answer["id"], "score": 1 if rng.random() < 0.8 else -1},
                    headers,
                )
        except (OSError, urllib.error.URLError, ValueError) as error:
            log.info("demo traffic: %s", error)
        deadline = time.monotonic() + every_s
        while time.monotonic() < deadline and not stop():
            time.sleep(0.5)


def _post(url: str, body: dict, headers: dict[str, str]) -> dict:
    request = urllib.request.Request(  # noqa: S310 - the demo's own loopback gateway
        url, data=json.dumps(body).encode(), headers=headers, method="POST"
    )
    with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
        return json.loads(response.read() or b"{}")
