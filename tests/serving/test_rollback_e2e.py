"""Rollback on a failing upstream, end to end: the portal served by uvicorn (the gateway in
front), a real Celery worker and a real beat process, fake stable and canary engines, and
traffic through the gateway. When the canary engine starts answering 500s, the rules take
it off traffic within 90 s, stable answers throughout, and the audit log, the dossier and
the deployment's webhook say why."""

import hashlib
import hmac
import io
import json
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core.models import AuditEvent
from governance.models import Dossier, StageChange
from governance.services.dossiers import dossier_request
from serving.models import Deployment, DeploymentDecision, RequestRecord
from serving.services.rollout import SIGNATURE_HEADER
from tests.serving.gateway_support import (
    chat,
    gateway_client,
    records,
    serve,
    stop,
    wait_routed,
    wait_settled,
)
from tests.support import servers

pytestmark = pytest.mark.django_db(transaction=True)

EVALUATE_EVERY_S = 5
SECRET = "hook-secret"


@pytest.fixture
def beat(test_database_url, server_log_dir):
    """Celery beat as the compose stack runs it, evaluating the rules every 5 s, not 60."""
    child = servers.start_celery_beat(
        servers.child_env(test_database_url, PORTAL_ROLLOUT_EVALUATE_SECONDS=str(EVALUATE_EVERY_S)),
        server_log_dir,
        name="beat-rollout",
    )
    yield child
    child.stop()


class Receiver:
    """A webhook receiver: records each POST's headers and body."""

    def __init__(self):
        self.calls: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.calls.append((dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


class Traffic:
    """A client sending chat requests through the gateway, one after another, as 20 end
    users (the split is sticky per user); every answer's status is kept."""

    def __init__(self, base_url, raw_key, model):
        self.client = gateway_client(base_url, raw_key)
        self.model = model
        self.statuses: list[int] = []
        self.answers: list[str] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        n = 0
        while not self._stop.is_set():
            response = chat(self.client, self.model, user=f"user-{n % 20}")
            self.statuses.append(response.status_code)
            if response.status_code == 200:
                self.answers.append(response.json()["choices"][0]["message"]["content"])
            n += 1
            time.sleep(0.05)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self._stop.set()
        self.thread.join(timeout=30)
        self.client.close()


def _poll(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)
    return value


def test_rollback_on_a_failing_upstream(
    project, engineer, compliance, asgi_server, celery_worker, beat, receiver
):
    s = serve(
        project,
        engineer,
        canary_weight=50,
        rollback_rules={"window_s": 30, "min_requests": 10, "error_rate": 0.1},
        webhook_url=receiver.url,
        webhook_secret=SECRET,
    )
    canary_version = s.dep.canary_version
    traffic = None
    try:
        with gateway_client(asgi_server, s.raw_key) as client:
            wait_routed(client, s.dep.name)
        traffic = Traffic(asgi_server, s.raw_key, s.dep.name).start()
        # Both arms take traffic while the canary is healthy, and nothing is decided.
        _poll(lambda: len(s.canary.requests) >= 5 and len(s.stable.requests) >= 5, 60, "both arms")
        assert Deployment.objects.get(pk=s.dep.pk).canary_weight == 50

        s.canary.fail = True
        failing_since = time.monotonic()
        dep = _poll(
            lambda: Deployment.objects.filter(pk=s.dep.pk, canary_weight=0).first(),
            90,
            "the canary at weight 0",
        )
        took_s = time.monotonic() - failing_since

        assert took_s <= 90
        assert dep.rollout == Deployment.Rollout.ROLLED_BACK
        # Stable kept answering: the canary's failures fell back to it, nobody saw an error.
        wait_settled()
        canary_calls = len(s.canary.requests)
        stable_calls = len(s.stable.requests)
        _poll(lambda: len(s.stable.requests) >= stable_calls + 10, 30, "stable answering")
        assert len(s.canary.requests) == canary_calls  # weight 0: no request goes there
    finally:
        if traffic is not None:
            traffic.stop()
        stop(s)

    assert set(traffic.statuses) == {200}
    assert all(
        answer.startswith("stable") or answer.startswith("canary") for answer in traffic.answers
    )
    assert traffic.answers[-1].startswith("stable")
    assert records(1, deployment=s.dep, arm="canary", fell_back=True)

    # Why, in the decision history and the audit log.
    decision = dep.decisions.get(kind=DeploymentDecision.Kind.ROLLBACK)
    assert decision.actor is None
    assert (decision.from_weight, decision.to_weight) == (50, 0)
    (breach,) = decision.figures["breaches"]
    assert breach["rule"] == "error_rate"
    assert breach["canary"] > 0.1
    assert decision.figures["canary"]["requests"] >= 10
    assert decision.figures["stable"]["errors"] == 0
    event = AuditEvent.objects.get(seq=decision.audit_seq)
    assert event.action == "serving.deployment.rollback"
    assert event.data["figures"]["breaches"][0]["rule"] == "error_rate"
    canary_version.refresh_from_db()
    assert canary_version.stage == "candidate"
    withdraw = StageChange.objects.get(model_version=canary_version)
    assert withdraw.kind == StageChange.Kind.WITHDRAW
    assert AuditEvent.objects.get(seq=withdraw.audit_seq).action == "governance.version.withdraw"
    assert RequestRecord.objects.filter(deployment=dep, arm="canary", status=500).exists()

    # The webhook, called by the worker once the decision committed, signed with the secret.
    headers, body = _poll(lambda: receiver.calls and receiver.calls[0], 30, "the webhook")
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER] == f"sha256={expected}"
    payload = json.loads(body)
    assert payload["event"] == "deployment.rollback"
    assert payload["decision"]["figures"]["breaches"][0]["rule"] == "error_rate"

    # The version's dossier shows the rollback and its figures.
    dossier = dossier_request(actor=compliance, version=canary_version, run_now=True)
    assert dossier.status == Dossier.Status.SUCCEEDED, dossier.error
    with open(dossier.file_path, "rb") as handle:
        html = zipfile.ZipFile(io.BytesIO(handle.read())).read("dossier.html").decode()
    assert f"Deployment <strong>{dep.name}</strong>" in html
    assert "Rolled back automatically" in html
    assert "breached: error_rate" in html
    assert decision.reason.split(":")[0] in html
