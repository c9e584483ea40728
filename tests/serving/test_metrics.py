import ipaddress
import subprocess
import sys
import urllib.error
import urllib.request
import uuid

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from serving.metrics import request_observe
from serving.models import RequestRecord
from serving.services.telemetry import telemetry_flush, telemetry_record
from tests.serving.factories import deployment, version
from tests.support import servers


def _scrape(text):
    """{(sample name, labels as a sorted tuple): value} of a /metrics answer."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _labels(dep_id, version_id, arm, **extra):
    return tuple(
        sorted({"deployment": str(dep_id), "version": str(version_id), "arm": arm, **extra}.items())
    )


def _get(url, headers=None):
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - our test server
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, response.headers.get("Content-Type"), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type"), error.read().decode()


@pytest.mark.django_db(transaction=True)
def test_counters_match_the_records_sent_and_the_rows_written(project, engineer):
    dep = deployment(project, engineer, name="metrics-chat")
    canary = version(project, stage="canary")
    stable_v = dep.stable_version_id
    sent = [
        # (arm, version, status, fell_back, tokens in, out, latency ms, ttft ms, flags)
        *[("stable", stable_v, 200, False, 10, 20, 100.0, 30.0, [])] * 7,
        ("stable", stable_v, 503, False, 10, 0, 2000.0, None, []),
        ("canary", canary.pk, 200, False, 5, 7, 300.0, 50.0, ["pii:email"]),
        ("canary", canary.pk, 200, True, 5, 9, 900.0, 60.0, []),  # stable answered for it
        ("canary", canary.pk, 502, False, 5, 0, 20.0, None, []),
    ]
    for arm, ver, status, fell_back, t_in, t_out, latency, ttft, flags in sent:
        telemetry_record(
            {
                "request_id": uuid.uuid4().hex,
                "deployment_id": dep.pk,
                "model_version_id": ver,
                "arm": arm,
                "endpoint": "chat.completions",
                "status": status,
                "fell_back": fell_back,
                "tokens_in": t_in,
                "tokens_out": t_out,
                "latency_ms": latency,
                "ttft_ms": ttft,
                "guardrail_flags": flags,
            }
        )
    telemetry_flush()

    response = Client().get("/metrics")  # the test client's address is 127.0.0.1

    assert response.status_code == 200
    values = _scrape(response.content.decode())
    stable, canary_labels = (
        _labels(dep.pk, stable_v, "stable"),
        _labels(dep.pk, canary.pk, "canary"),
    )
    for arm, labels in (("stable", stable), ("canary", canary_labels)):
        rows = RequestRecord.objects.filter(deployment=dep, arm=arm).count()
        assert values[("portal_gateway_requests_total", labels)] == rows
    assert values[("portal_gateway_requests_total", stable)] == 8
    assert values[("portal_gateway_requests_total", canary_labels)] == 3
    assert values[("portal_gateway_errors_total", stable)] == 1
    assert values[("portal_gateway_errors_total", canary_labels)] == 2
    assert values[("portal_gateway_guardrail_flagged_requests_total", canary_labels)] == 1
    assert values[("portal_gateway_input_tokens_total", stable)] == 80
    assert values[("portal_gateway_output_tokens_total", stable)] == 140
    assert values[("portal_gateway_output_tokens_total", canary_labels)] == 16
    assert values[("portal_gateway_request_duration_seconds_count", stable)] == 8
    assert values[("portal_gateway_request_duration_seconds_sum", stable)] == pytest.approx(2.7)
    le_quarter = _labels(dep.pk, stable_v, "stable", le="0.25")
    assert values[("portal_gateway_request_duration_seconds_bucket", le_quarter)] == 7
    assert values[("portal_gateway_time_to_first_token_seconds_count", stable)] == 7
    assert values[("portal_gateway_time_to_first_token_seconds_count", canary_labels)] == 2
    info = tuple(
        sorted(
            {"deployment": str(dep.pk), "name": "metrics-chat", "project": str(project.pk)}.items()
        )
    )
    assert values[("portal_gateway_deployment_info", info)] == 1


@pytest.mark.django_db
def test_a_base_model_on_stable_is_labelled_base(project, engineer):
    dep = deployment(project, engineer)
    # Counted as telemetry_record counts it (whose row this uncommitted test cannot write).
    request_observe(
        {
            "request_id": uuid.uuid4().hex,
            "deployment_id": dep.pk,
            "model_version_id": None,
            "arm": "stable",
            "endpoint": "completions",
            "status": 200,
            "latency_ms": 1.0,
        }
    )

    values = _scrape(Client().get("/metrics").content.decode())

    assert values[("portal_gateway_requests_total", _labels(dep.pk, "base", "stable"))] == 1


@pytest.mark.django_db
def test_configured_scrapers_are_allowed_and_other_addresses_refused(settings):
    settings.PORTAL_METRICS_ALLOWED_IPS = [ipaddress.ip_network("10.1.0.0/16")]

    assert Client(REMOTE_ADDR="10.1.2.3").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="10.2.0.1").get("/metrics").status_code == 403
    assert Client(REMOTE_ADDR="::1").get("/metrics").status_code == 200


@pytest.mark.django_db
def test_a_forwarded_header_from_an_untrusted_peer_cannot_claim_loopback():
    response = Client(REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="127.0.0.1").get("/metrics")

    assert response.status_code == 403
    assert b"portal_gateway" not in response.content


@pytest.mark.django_db
def test_the_server_answers_loopback(asgi_server):
    status, content_type, body = _get(f"{asgi_server}/metrics")

    assert status == 200
    assert content_type.startswith("text/plain; version=")
    assert "# TYPE portal_gateway_requests_total counter" in body
    assert "# TYPE portal_gateway_request_duration_seconds histogram" in body


@pytest.mark.django_db
def test_the_server_refuses_a_client_beyond_its_proxy(asgi_server):
    # uvicorn believes X-Forwarded-For from a proxy on loopback (its default, as with
    # PORTAL_TRUSTED_PROXIES in production): this is a scrape from 203.0.113.9 behind it.
    status, _, body = _get(f"{asgi_server}/metrics", {"X-Forwarded-For": "203.0.113.9"})

    assert status == 403
    assert "portal_gateway" not in body


@pytest.mark.django_db
def test_several_server_processes_serve_the_sum_of_every_process(
    test_database_url, server_log_dir, tmp_path
):
    # prometheus-client's multiprocess mode: each process counts into files of one shared
    # folder, and any of the two workers answering /metrics adds them all up.
    env = servers.child_env(test_database_url, PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    fields = {"deployment_id": 987654, "model_version_id": 3, "arm": "canary", "status": 200}
    fields |= {"latency_ms": 250.0, "tokens_out": 4}
    script = "from serving.metrics import request_observe as count\n"
    script += f"for _ in range(5): count({fields!r})"
    for _ in range(2):  # two other processes, as two gateway workers would
        subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)  # noqa: S603
    child, base_url = servers.start_asgi_server(env, server_log_dir, workers=2)
    try:
        scrapes = [_get(f"{base_url}/metrics") for _ in range(6)]
    finally:
        child.stop()

    labels = _labels(987654, 3, "canary")
    for status, _, body in scrapes:
        assert status == 200
        values = _scrape(body)
        assert values[("portal_gateway_requests_total", labels)] == 10
        assert values[("portal_gateway_output_tokens_total", labels)] == 40
        assert values[("portal_gateway_request_duration_seconds_count", labels)] == 10
