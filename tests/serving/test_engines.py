import json
import os
import signal
import sys
import time

import httpx
import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from core.models import AuditEvent
from serving.models import EngineInstance, EngineKind
from serving.services.deployments import deployment_create, deployment_place
from tests.serving.factories import base_model
from tests.support import servers
from training.models import ModelVersion

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
