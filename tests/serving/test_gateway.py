import time

import httpx
import openai
import pytest
from django.db import connection
from django.utils import timezone

from serving.models import DeploymentKey, Feedback
from serving.services.deployments import deployment_key_revoke
from tests.serving.gateway_support import (
    chat,
    records,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_openai_client_gets_a_plain_chat_answer(served, asgi_server):
    s = served()
    client = openai.OpenAI(base_url=asgi_server + "/v1", api_key=s.raw_key, max_retries=0)

    raw = client.chat.completions.with_raw_response.create(
        model=s.dep.name, messages=[{"role": "user", "content": "Say hello"}]
    )
    answer = raw.parse()

    assert answer.choices[0].message.content == "stable w1 w2 w3 w4 w5 w6 w7"
    assert answer.model == s.dep.name
    assert raw.headers["x-request-id"] == answer.id
    assert s.stable.requests[0]["body"]["model"] == "stable-model"
    (row,) = records(1, request_id=answer.id)
    assert (row.arm, row.status, row.stream, row.endpoint) == (
        "stable",
        200,
        False,
        "chat.completions",
    )
    assert (row.tokens_in, row.tokens_out) == (
        answer.usage.prompt_tokens,
        answer.usage.completion_tokens,
    )
    assert row.model_version_id == s.dep.stable_version_id
    assert row.key_id == s.key.pk


def test_the_openai_client_gets_a_streamed_chat_answer(served, asgi_server):
    s = served()
    client = openai.OpenAI(base_url=asgi_server + "/v1", api_key=s.raw_key, max_retries=0)

    chunks = list(
        client.chat.completions.create(
            model=s.dep.name, messages=[{"role": "user", "content": "Say hello"}], stream=True
        )
    )

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "stable w1 w2 w3 w4 w5 w6 w7"
    assert len({c.id for c in chunks}) == 1
    # The usage chunk the gateway asked the engine for is not passed on unasked.
    assert all(c.usage is None for c in chunks)
    assert s.stable.requests[0]["body"]["stream_options"] == {"include_usage": True}
    (row,) = records(1, request_id=chunks[0].id)
    assert row.stream is True
    assert row.tokens_out == 8
    assert 0 < row.ttft_ms <= row.latency_ms


def test_a_streamed_answer_carries_usage_when_the_client_asks(served, gw):
    s = served()
    body = {
        "model": s.dep.name,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }

    with gw(s.raw_key).stream("POST", "/chat/completions", json=body) as response:
        events = [line for line in response.iter_lines() if line.startswith("data: ")]

    assert events[-1] == "data: [DONE]"
    assert '"completion_tokens":8' in events[-2]


def test_text_completions_are_answered_with_the_gateway_request_id(served, gw):
    s = served()

    response = gw(s.raw_key).post("/completions", json={"model": s.dep.name, "prompt": "Once"})

    assert response.status_code == 200
    body = response.json()
    assert body["choices"][0]["text"].startswith("stable")
    assert body["id"] == response.headers["x-request-id"]
    assert body["id"].startswith("cmpl-")
    (row,) = records(1, request_id=body["id"])
    assert row.endpoint == "completions"


def test_models_lists_only_the_keys_deployment(served, gw):
    mine, other = served(), served()

    listed = gw(mine.raw_key).get("/models").json()

    assert [m["id"] for m in listed["data"]] == [mine.dep.name]
    refused = chat(gw(mine.raw_key), other.dep.name)
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "model_not_found"


def test_a_revoked_key_is_refused_within_two_seconds(served, gw, engineer):
    s = served()
    client = gw(s.raw_key)
    assert chat(client, s.dep.name).status_code == 200

    deployment_key_revoke(actor=engineer, key=s.key)
    revoked_at = time.monotonic()
    while chat(client, s.dep.name).status_code == 200:
        assert time.monotonic() - revoked_at < 2.5
        time.sleep(0.05)

    response = chat(client, s.dep.name)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    print(f"gateway_revocation_s: {time.monotonic() - revoked_at:.2f}")


def test_an_expired_key_is_refused(served, gw):
    s = served()
    DeploymentKey.objects.filter(pk=s.key.pk).update(expires_at=timezone.now())

    time.sleep(2.1)  # what the server held of the key expires
    response = chat(gw(s.raw_key), s.dep.name)

    assert response.status_code == 401
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("header", ["", "Bearer nonsense", "Bearer sk-tp-unknown", "Basic x"])
def test_requests_without_a_live_key_are_401(asgi_server, header):
    headers = {"Authorization": header} if header else {}

    response = httpx.post(asgi_server + "/v1/chat/completions", json={}, headers=headers)

    assert response.status_code == 401
    assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("scheme", ["Bearer", "Token"])
@pytest.mark.parametrize("path", ["/api/v1/projects/", "/api/v1/me/"])
def test_gateway_keys_open_no_portal_api(served, asgi_server, scheme, path):
    s = served()

    response = httpx.get(asgi_server + path, headers={"Authorization": f"{scheme} {s.raw_key}"})

    assert response.status_code in (401, 403)


def test_malformed_bodies_are_400_naming_the_field(served, gw):
    s = served()
    client = gw(s.raw_key)

    not_json = client.post("/chat/completions", content=b"{not json")
    no_messages = client.post("/chat/completions", json={"model": s.dep.name})
    no_model = client.post("/chat/completions", json={"messages": [{"role": "user"}]})
    no_prompt = client.post("/completions", json={"model": s.dep.name})

    assert not_json.status_code == 400
    assert "JSON" in not_json.json()["error"]["message"]
    assert (no_messages.status_code, no_messages.json()["error"]["param"]) == (400, "messages")
    assert (no_model.status_code, no_model.json()["error"]["param"]) == (400, "model")
    assert (no_prompt.status_code, no_prompt.json()["error"]["param"]) == (400, "prompt")
    assert s.stable.requests == []


def test_an_oversized_body_is_413(served, gw):
    s = served()

    response = chat(gw(s.raw_key), s.dep.name, "x" * (1024**2 + 10))

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert s.stable.requests == []


def test_unknown_paths_under_v1_are_openai_404s(asgi_server):
    response = httpx.get(asgi_server + "/v1/engines")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_url"


def test_the_request_limit_answers_429_with_retry_after(served, gw):
    s = served(key_limits={"requests_per_minute": 2})
    client = gw(s.raw_key)

    statuses = [chat(client, s.dep.name).status_code for _ in range(3)]

    assert statuses == [200, 200, 429]
    refused = chat(client, s.dep.name)
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert refused.json()["error"]["type"] == "requests"
    assert int(refused.headers["retry-after"]) >= 1
    assert len(s.stable.requests) == 2


def test_the_token_limit_counts_the_engines_usage(served, gw):
    s = served(key_limits={"tokens_per_minute": 10})
    client = gw(s.raw_key)

    first = chat(client, s.dep.name)  # uses more than 10 tokens: it finishes
    second = chat(client, s.dep.name)

    assert first.status_code == 200
    assert first.json()["usage"]["total_tokens"] > 10
    assert second.status_code == 429
    assert second.json()["error"]["type"] == "tokens"


def test_an_engine_error_is_502_and_recorded(served, gw):
    s = served()
    s.stable.fail = True

    response = chat(gw(s.raw_key), s.dep.name)

    assert response.status_code == 502
    assert response.json()["error"]["type"] == "server_error"
    (row,) = records(1, request_id=response.headers["x-request-id"])
    assert (row.status, row.arm) == (500, "stable")


def test_a_failing_canary_falls_back_to_stable_and_counts_against_the_canary(served, gw):
    s = served(canary_weight=100)
    s.canary.fail = True

    response = chat(gw(s.raw_key), s.dep.name)

    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"].startswith("stable")
    (row,) = records(1, request_id=response.json()["id"])
    assert (row.arm, row.fell_back, row.status) == ("canary", True, 500)
    assert row.model_version_id == s.dep.canary_version_id
    assert len(s.canary.requests) == 1


def test_a_failing_canary_stream_falls_back_before_any_byte(served, gw):
    s = served(canary_weight=100)
    s.canary.fail = True
    body = {"model": s.dep.name, "messages": [{"role": "user", "content": "hi"}], "stream": True}

    with gw(s.raw_key).stream("POST", "/chat/completions", json=body) as response:
        text = "".join(response.iter_text())

    assert response.status_code == 200
    assert '"content":"stable"' in text
    (row,) = records(1, request_id=response.headers["x-request-id"])
    assert (row.arm, row.fell_back) == ("canary", True)


def test_shadow_never_delays_the_answer(served, gw):
    s = served(shadow=True)
    s.shadow.delay_s = 2

    started = time.monotonic()
    response = chat(gw(s.raw_key), s.dep.name)
    answered_in = time.monotonic() - started

    assert response.status_code == 200
    assert answered_in < 1.0
    request_id = response.json()["id"]
    (answer_row,) = records(1, request_id=request_id)
    (shadow_row,) = records(1, timeout=10, request_id=f"{request_id}-shadow")
    assert shadow_row.arm == "shadow"
    assert shadow_row.latency_ms >= 2000
    assert shadow_row.model_version_id == s.dep.shadow_version_id
    assert answer_row.arm == "stable"


def test_a_prompt_with_pii_is_refused_as_a_content_filter_400(served, gw):
    s = served(guardrails={"pii": "refuse"})

    response = chat(gw(s.raw_key), s.dep.name, "Write to jane.doe@example.com please")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "content_filter"
    assert s.stable.requests == []
    (row,) = records(1, request_id=response.headers["x-request-id"])
    assert row.guardrail_flags == ["input:pii:EMAIL"]
    assert row.status == 400


def test_pii_in_a_prompt_is_redacted_before_the_engine(served, gw):
    s = served(guardrails={"pii": "redact"})

    response = chat(gw(s.raw_key), s.dep.name, "Write to jane.doe@example.com please")

    assert response.status_code == 200
    sent = s.stable.requests[0]["body"]["messages"][0]["content"]
    assert sent == "Write to [EMAIL] please"
    (row,) = records(1, request_id=response.json()["id"])
    assert row.guardrail_flags == ["input:pii:EMAIL"]


def test_a_blocked_answer_is_redacted(served, gw):
    s = served(guardrails={"blocklist": ["w3"], "blocklist_action": "redact"})

    response = chat(gw(s.raw_key), s.dep.name)

    content = response.json()["choices"][0]["message"]["content"]
    assert content == "stable w1 w2 [BLOCKED] w4 w5 w6 w7"
    (row,) = records(1, request_id=response.json()["id"])
    assert row.guardrail_flags == ["output:blocklist:0"]


def test_a_refused_answer_is_a_content_filter_completion(served, gw):
    s = served(guardrails={"blocklist": [r"\bw5\b"], "blocklist_action": "refuse"})

    response = chat(gw(s.raw_key), s.dep.name)

    assert response.status_code == 200
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "content_filter"
    assert "w5" not in choice["message"]["content"]


def test_a_streamed_answer_is_checked_before_it_is_sent(served, gw):
    s = served(guardrails={"blocklist": ["w3"], "blocklist_action": "redact"})
    body = {"model": s.dep.name, "messages": [{"role": "user", "content": "hi"}], "stream": True}

    with gw(s.raw_key).stream("POST", "/chat/completions", json=body) as response:
        text = "".join(response.iter_text())

    assert "[BLOCKED]" in text
    assert " w3" not in text
    (row,) = records(1, request_id=response.headers["x-request-id"])
    assert row.guardrail_flags == ["output:blocklist:0"]


def test_a_refused_stream_ends_with_content_filter(served, gw):
    s = served(guardrails={"blocklist": ["w5"], "blocklist_action": "refuse"})
    body = {"model": s.dep.name, "messages": [{"role": "user", "content": "hi"}], "stream": True}

    with gw(s.raw_key).stream("POST", "/chat/completions", json=body) as response:
        text = "".join(response.iter_text())

    assert '"finish_reason":"content_filter"' in text
    assert "w5" not in text
    assert text.rstrip().endswith("data: [DONE]")


def test_content_is_not_stored_when_logging_is_off(served, gw):
    s = served(logging_policy="off")

    response = chat(gw(s.raw_key), s.dep.name, "secret plans")

    (row,) = records(1, request_id=response.json()["id"])
    assert row.content is None


def test_content_is_stored_encrypted_when_logging_is_all(served, gw):
    s = served(logging_policy="all")

    response = chat(gw(s.raw_key), s.dep.name, "secret plans")

    (row,) = records(1, request_id=response.json()["id"])
    assert row.content["request"]["messages"][0]["content"] == "secret plans"
    assert row.content["response"].startswith("stable")
    with connection.cursor() as cursor:
        sql = "SELECT content::text FROM serving_requestrecord WHERE request_id = %s"
        cursor.execute(sql, [row.request_id])
        (stored,) = cursor.fetchone()
    assert "secret plans" not in stored
    assert "stable w1" not in stored


def test_telemetry_rows_match_the_requests_sent(served, gw):
    s = served(price_per_1k_tokens="2.0")
    client = gw(s.raw_key)

    ids = [chat(client, s.dep.name, user=f"user-{i % 3}").json()["id"] for i in range(6)]

    rows = records(6, deployment_id=s.dep.pk)
    assert sorted(r.request_id for r in rows) == sorted(ids)
    assert all(r.status == 200 and r.arm == "stable" for r in rows)
    assert len({r.end_user for r in rows}) == 3
    assert all("user-" not in r.end_user for r in rows)
    row = rows[0]
    assert row.cost == pytest.approx((row.tokens_in + row.tokens_out) / 1000 * 2.0)


def test_feedback_is_joined_to_its_request(served, gw):
    s = served()
    client = gw(s.raw_key)
    request_id = chat(client, s.dep.name).json()["id"]

    up = client.post("/feedback", json={"request_id": request_id, "thumbs": "down",
                                        "comment": "too short"})  # fmt: skip
    scored = client.post("/feedback", json={"request_id": request_id, "score": 0.5})

    assert up.status_code == 200
    assert scored.status_code == 200
    saved = Feedback.objects.filter(request_id=request_id).order_by("id")
    assert [f.score for f in saved] == [-1.0, 0.5]
    assert saved[0].comment == "too short"
    assert saved[0].deployment_id == s.dep.pk


def test_feedback_on_another_deployments_request_is_refused(served, gw):
    mine, other = served(), served()
    theirs = chat(gw(other.raw_key), other.dep.name).json()["id"]
    records(1, request_id=theirs)

    response = gw(mine.raw_key).post("/feedback", json={"request_id": theirs, "thumbs": "up"})

    assert response.status_code == 404
    assert response.json()["error"]["param"] == "request_id"
    assert not Feedback.objects.exists()


@pytest.mark.parametrize(
    ("body", "param"),
    [({"thumbs": "up"}, "request_id"), ({"request_id": "x", "score": 2}, "score")],
)
def test_malformed_feedback_is_400(served, gw, body, param):
    s = served()

    response = gw(s.raw_key).post("/feedback", json=body)

    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
