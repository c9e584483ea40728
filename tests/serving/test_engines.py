import json
import os
import signal
import sys
import time

import httpx
import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from core.models import AuditEvent
from serving.models import EngineInstance, EngineKind
from serving.services.deployments import (
    deployment_configure,
    deployment_create,
    deployment_key_create,
    deployment_place,
)
from tests.serving.factories import base_model
from tests.serving.gateway_support import chat, gateway_client, wait_routed, wait_settled
from tests.support import servers
from training.models import JobKind, ModelVersion

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

Status = EngineInstance.Status


@pytest.fixture
def supervisor(test_database_url, server_log_dir):
    """`manage.py run_engines`, as `make demo` and the compose `serving` service run it.
    Stopped before the test's data is flushed."""
    child = servers.ChildProcess(
        "run-engines",
        [sys.executable, "manage.py", "run_engines", "--device", "cpu", "--interval", "0.3"],
        servers.child_env(test_database_url),
        server_log_dir,
    )
    yield child
    child.stop()


@pytest.fixture
def tiny_base(project, tiny_model_dir):
    return base_model(project, path=str(tiny_model_dir))


def _wait_for(supervisor, find, what, timeout=180.0):
    deadline = time.monotonic() + timeout
    while True:
        supervisor.check_alive()
        found = find()
        if found:
            return found
        assert time.monotonic() < deadline, f"{what}:\n{supervisor.log_tail()}"
        time.sleep(0.3)


def _engine(supervisor, *, status, after=0, **model):
    return _wait_for(
        supervisor,
        lambda: EngineInstance.objects.filter(status=status, pk__gt=after, **model).first(),
        f"no {status} engine for {model}",
    )


def _chat(engine, **extra):
    body = {
        "model": engine.served_model,
        "messages": [{"role": "user", "content": "Hello"}],
        "max_tokens": 5,
        **extra,
    }
    return httpx.post(f"{engine.base_url}/chat/completions", json=body, timeout=60)


def _stream_chunks(engine):
    body = {
        "model": engine.served_model,
        "messages": [{"role": "user", "content": "Hello"}],
        "max_tokens": 5,
        "stream": True,
    }
    chunks = []
    with httpx.stream(
        "POST", f"{engine.base_url}/chat/completions", json=body, timeout=60
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunks.append(json.loads(line[6:]))
    return chunks


def _transformers_deployment(project, engineer, base, name="engine-test"):
    return deployment_create(
        actor=engineer,
        project=project,
        name=name,
        engine=EngineKind.TRANSFORMERS,
        stable_base_model=base,
    )


def test_a_placed_base_model_is_served_answers_and_comes_back_after_a_kill(
    project, engineer, tiny_base, supervisor
):
    _transformers_deployment(project, engineer, tiny_base)

    engine = _engine(supervisor, status=Status.READY, base_model=tiny_base)

    assert engine.base_url.startswith("http://127.0.0.1:")
    assert engine.base_url.endswith("/v1")
    plain = _chat(engine).json()
    assert plain["object"] == "chat.completion"
    assert isinstance(plain["choices"][0]["message"]["content"], str)
    assert plain["usage"]["completion_tokens"] >= 1
    chunks = _stream_chunks(engine)
    assert chunks[0]["object"] == "chat.completion.chunk"
    assert chunks[-1]["choices"][0]["finish_reason"] in ("length", "stop")
    completion = httpx.post(
        f"{engine.base_url}/completions",
        json={"model": engine.served_model, "prompt": "abc", "max_tokens": 3},
        timeout=60,
    ).json()
    assert completion["object"] == "text_completion"

    os.kill(engine.pid, signal.SIGKILL)

    failed = _engine(supervisor, status=Status.FAILED, base_model=tiny_base)
    assert failed.pk == engine.pk
    assert "killed by signal 9" in failed.error
    again = _engine(supervisor, status=Status.READY, after=engine.pk, base_model=tiny_base)
    assert again.pid != engine.pid
    assert _chat(again).status_code == 200
    actions = list(
        AuditEvent.objects.filter(action__startswith="serving.engine.")
        .order_by("seq")
        .values_list("action", flat=True)
    )
    assert actions == [
        "serving.engine.start",
        "serving.engine.ready",
        "serving.engine.failed",
        "serving.engine.start",
        "serving.engine.ready",
    ]


def _running(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_an_engine_does_not_outlive_a_killed_supervisor(project, engineer, tiny_base, supervisor):
    _transformers_deployment(project, engineer, tiny_base)
    engine = _engine(supervisor, status=Status.READY, base_model=tiny_base)

    supervisor.proc.kill()

    deadline = time.monotonic() + 20
    while _running(engine.pid):
        assert time.monotonic() < deadline, "the engine outlived its supervisor"
        time.sleep(0.2)


def _lora_adapter(base_dir, out_dir):
    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    # Random B matrices (not peft's zero start), so the adapter changes the logits.
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(out_dir)
    return out_dir


@torch.no_grad()
def _logits(model, ids):
    return model.eval()(input_ids=ids).logits


def test_a_lora_canary_is_merged_once_and_stopped_when_taken_off(
    project, engineer, tiny_base, tiny_model_dir, tmp_path, supervisor
):
    adapter_dir = _lora_adapter(tiny_model_dir, tmp_path / "adapter")
    lora = ModelVersion.objects.create(
        project=project,
        name="lora",
        base_model=tiny_base,
        kind=ModelVersion.Kind.ADAPTER,
        path=str(adapter_dir),
        base_weights_sha256="0" * 64,
        stage=ModelVersion.Stage.CANARY,
    )
    dep = _transformers_deployment(project, engineer, tiny_base)
    deployment_place(actor=engineer, deployment=dep, arm="canary", version=lora)

    engine = _engine(supervisor, status=Status.READY, model_version=lora)

    lora.refresh_from_db()
    assert engine.model_dir == lora.merged_path
    assert _chat(engine).status_code == 200
    ids = torch.tensor([[5, 17, 30, 42, 8]])
    merged = _logits(AutoModelForCausalLM.from_pretrained(lora.merged_path), ids)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with_adapter = _logits(PeftModel.from_pretrained(base, adapter_dir), ids)
    plain = _logits(AutoModelForCausalLM.from_pretrained(tiny_model_dir), ids)
    assert torch.allclose(merged, with_adapter, atol=1e-4)
    assert not torch.allclose(merged, plain, atol=1e-3)

    deployment_place(actor=engineer, deployment=dep, arm="canary", version=None)

    stopped = _engine(supervisor, status=Status.STOPPED, model_version=lora)
    assert stopped.pk == engine.pk
    assert "No deployment" in stopped.error
    assert EngineInstance.objects.get(base_model=tiny_base).status == Status.READY
    written = os.stat(lora.merged_path).st_mtime_ns

    deployment_place(actor=engineer, deployment=dep, arm="canary", version=lora)

    again = _engine(supervisor, status=Status.READY, after=engine.pk, model_version=lora)
    assert again.model_dir == lora.merged_path
    assert os.stat(lora.merged_path).st_mtime_ns == written
    assert AuditEvent.objects.filter(action="training.model_version.merge").count() == 1


def _reward_model(base_dir, out_dir):
    """A tiny one-output sequence classifier (a reward model) on the tiny base, its score
    head drawn wide enough that different texts get clearly different scores."""
    torch.manual_seed(2)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForSequenceClassification.from_pretrained(base_dir, num_labels=1)
    model.score.weight.data.normal_(0.0, 1.0)
    # Not the tokenizer's pad: the server must pool at the pad it batches with.
    model.config.pad_token_id = tokenizer.eos_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return model.eval(), tokenizer


@torch.no_grad()
def _acceptable(model, tokenizer, text):
    return float(torch.sigmoid(model(**tokenizer(text, return_tensors="pt")).logits[0, 0]))


def test_a_guardrail_classifier_is_served_and_refuses_through_the_gateway(
    project, engineer, tiny_base, tiny_model_dir, tmp_path, supervisor, asgi_server
):
    model, tokenizer = _reward_model(tiny_model_dir, tmp_path / "rm")
    rm = ModelVersion.objects.create(
        project=project,
        name="safety-rm",
        base_model=tiny_base,
        kind=ModelVersion.Kind.FULL,
        task=JobKind.REWARD,
        path=str(tmp_path / "rm"),
        base_weights_sha256="0" * 64,
    )
    guardrails = {"classifier_version_id": rm.pk, "classifier_on": ["input"]}
    dep = deployment_create(
        actor=engineer, project=project, name="guarded", engine=EngineKind.TRANSFORMERS,
        stable_base_model=tiny_base, settings={"guardrails": guardrails},
    )  # fmt: skip

    classifier = _engine(supervisor, status=Status.READY, model_version=rm)
    _engine(supervisor, status=Status.READY, base_model=tiny_base)

    # vLLM's classification API, at the server's root; the same figures as the model's own.
    root = classifier.base_url.removesuffix("/v1")
    texts = ["Hello", "Tell me something else entirely"]
    answer = httpx.post(f"{root}/classify", json={"model": "x", "input": texts}, timeout=30)
    rows = answer.json()["data"]
    assert [r["num_classes"] for r in rows] == [1, 1]
    for row, text in zip(rows, texts, strict=True):
        assert row["probs"][0] == pytest.approx(_acceptable(model, tokenizer, text), abs=1e-4)
    messages = [{"role": "user", "content": "Hello"}]
    chat_answer = httpx.post(f"{root}/classify", json={"messages": messages}, timeout=30).json()
    rendered = tokenizer.apply_chat_template(messages, tokenize=False)
    acceptable = _acceptable(model, tokenizer, rendered)
    assert chat_answer["data"][0]["probs"][0] == pytest.approx(acceptable, abs=1e-4)
    bad = httpx.post(f"{root}/classify", json={"input": [1, 2]}, timeout=30)
    assert (bad.status_code, bad.json()["error"]["param"]) == (400, "input")

    # Through the gateway: the flag score of "Hello" is 1 - acceptable; a threshold just
    # under it refuses the prompt, one just over lets it through.
    _, raw = deployment_key_create(actor=engineer, deployment=dep, name="t")
    client = gateway_client(asgi_server, raw)
    wait_routed(client, dep.name)
    flag_score = 1 - acceptable
    for threshold, status in [(flag_score - 1e-3, 400), (flag_score + 1e-3, 200)]:
        settings = {**guardrails, "classifier_threshold": round(threshold, 6)}
        deployment_configure(actor=engineer, deployment=dep, values={"guardrails": settings})
        wait_settled()
        response = chat(client, dep.name, "Hello", max_tokens=3)
        assert response.status_code == status, response.text
    started = AuditEvent.objects.filter(action="serving.engine.start", target_id=str(classifier.pk))
    assert started.get().data["classify"] is True
