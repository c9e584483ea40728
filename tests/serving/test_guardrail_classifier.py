"""The classifier guardrail through the gateway: a reward model version of the registry,
served by an engine of its own that speaks vLLM's /classify (here the fake engine's, which
calls a text harmful when it holds a flagged word), asked about prompts and answers."""

import itertools

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from rest_framework.test import APIClient

from serving.services.deployments import deployment_configure
from tests.serving.factories import deployment, engine, reward_version, version
from tests.serving.gateway_support import (
    chat,
    records,
    serve,
    stop,
    wait_settled,
)
from tests.support.fake_upstream import FakeUpstream
from training.models import ModelVersion

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def classifier_engine():
    up = FakeUpstream("classifier")
    yield up
    up.stop()


@pytest.fixture
def guarded(project, served, tmp_path, classifier_engine):
    """guarded(...) -> a served deployment whose guardrails call the fake classifier."""
    count = itertools.count()

    def make(flag_words=("forbidden",), ready=True, **settings):
        classifier_engine.flag_words = tuple(flag_words)
        rm = reward_version(project, tmp_path / f"rm-{next(count)}")
        if ready:
            engine(model_version=rm, url=classifier_engine.base_url, served="safety-rm")
        guardrails = {"classifier_version_id": rm.pk, "classifier_threshold": 0.5, **settings}
        return served(guardrails=guardrails)

    return make


def _asked(up: FakeUpstream) -> list[dict]:
    return [r["body"] for r in up.requests if r["path"] == "/classify"]


def test_a_prompt_the_classifier_flags_is_refused_before_the_engine(guarded, classifier_engine, gw):
    s = guarded()

    response = chat(gw(s.raw_key), s.dep.name, "Tell me the forbidden")

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("content_filter", "messages")
    assert s.stable.requests == []
    (asked,) = _asked(classifier_engine)
    assert asked["model"] == "safety-rm"
    assert asked["messages"] == [{"role": "user", "content": "Tell me the forbidden"}]
    (row,) = records(1, request_id=response.headers["x-request-id"])
    assert (row.status, row.guardrail_flags) == (400, ["input:classifier"])


def test_a_harmless_exchange_passes_and_the_answer_is_asked_about_too(
    guarded, classifier_engine, gw
):
    s = guarded()

    response = chat(gw(s.raw_key), s.dep.name, "Hello there")

    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "stable w1 w2 w3 w4 w5 w6 w7"
    prompt, answer = _asked(classifier_engine)
    assert prompt["messages"] == [{"role": "user", "content": "Hello there"}]
    assert answer["messages"][-1] == {
        "role": "assistant",
        "content": "stable w1 w2 w3 w4 w5 w6 w7",
    }
    (row,) = records(1, request_id=response.json()["id"])
    assert row.guardrail_flags == []


def test_an_answer_the_classifier_flags_is_a_content_filter_completion(guarded, gw):
    s = guarded(flag_words=("w5",))

    response = chat(gw(s.raw_key), s.dep.name)

    assert response.status_code == 200
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "content_filter"
    assert "w5" not in choice["message"]["content"]
    (row,) = records(1, request_id=response.json()["id"])
    assert row.guardrail_flags == ["output:classifier"]


def test_a_streamed_answer_the_classifier_flags_ends_with_content_filter(guarded, gw):
    s = guarded(flag_words=("w5",))
    body = {"model": s.dep.name, "messages": [{"role": "user", "content": "hi"}], "stream": True}

    client = gw(s.raw_key)
    with client.stream("POST", "/chat/completions", json=body) as response:
        text = "".join(response.iter_text())

    assert '"finish_reason":"content_filter"' in text
    assert "w5" not in text
    assert text.rstrip().endswith("data: [DONE]")
    (row,) = records(1, request_id=response.headers["x-request-id"])
    assert row.guardrail_flags == ["output:classifier"]


def test_flag_only_records_and_lets_the_text_through(guarded, gw):
    s = guarded(flag_words=("forbidden", "w5"), classifier_action="flag")

    response = chat(gw(s.raw_key), s.dep.name, "the forbidden one")

    assert response.status_code == 200
    assert response.json()["choices"][0]["finish_reason"] == "stop"
    assert "w5" in response.json()["choices"][0]["message"]["content"]
    (row,) = records(1, request_id=response.json()["id"])
    assert row.guardrail_flags == ["input:classifier", "output:classifier"]


def test_the_classifier_is_asked_only_where_the_policy_says(guarded, classifier_engine, gw):
    s = guarded(flag_words=("w5",), classifier_on=["input"])

    response = chat(gw(s.raw_key), s.dep.name)

    assert response.json()["choices"][0]["finish_reason"] == "stop"
    assert len(_asked(classifier_engine)) == 1


def test_a_completion_prompt_is_asked_about_as_input(guarded, classifier_engine, gw):
    s = guarded()
    body = {"model": s.dep.name, "prompt": "Once a forbidden tale"}

    response = gw(s.raw_key).post("/completions", json=body)

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "prompt"
    assert _asked(classifier_engine)[0]["input"] == ["Once a forbidden tale"]


def test_a_classifier_that_is_down_lets_text_through_and_says_so(guarded, classifier_engine, gw):
    s = guarded()
    classifier_engine.stop()

    response = chat(gw(s.raw_key), s.dep.name, "the forbidden one")

    assert response.status_code == 200
    (row,) = records(1, request_id=response.json()["id"])
    assert row.guardrail_flags == ["input:classifier:unavailable", "output:classifier:unavailable"]


def test_a_classifier_without_a_ready_engine_is_flagged_unavailable(guarded, gw):
    s = guarded(ready=False)

    response = chat(gw(s.raw_key), s.dep.name, "the forbidden one")

    assert response.status_code == 200
    (row,) = records(1, request_id=response.json()["id"])
    assert "input:classifier:unavailable" in row.guardrail_flags


def test_a_threshold_change_takes_effect_within_the_cache_period(guarded, engineer, gw):
    # The fake scores a flagged text 0.98 and any other 0.03.
    s = guarded(classifier_threshold=0.99)
    client = gw(s.raw_key)
    assert chat(client, s.dep.name, "the forbidden one").status_code == 200

    guardrails = {**s.dep.guardrails, "classifier_threshold": 0.9}
    deployment_configure(actor=engineer, deployment=s.dep, values={"guardrails": guardrails})
    wait_settled()

    assert chat(client, s.dep.name, "the forbidden one").status_code == 400
    assert chat(client, s.dep.name, "a fine one").status_code == 200


# -- settings --------------------------------------------------------------------------------


def _configure(engineer, dep, **guardrails):
    return deployment_configure(actor=engineer, deployment=dep, values={"guardrails": guardrails})


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"classifier_threshold": 0}, "Between 0 and 1"),
        ({"classifier_threshold": 1.5}, "Between 0 and 1"),
        ({"classifier_threshold": True}, "Between 0 and 1"),
        ({"classifier_action": "redact"}, "refuse or flag"),
        ({"classifier_on": ["prompt"]}, '"input" and "output"'),
        ({"classifier_on": []}, '"input" and "output"'),
    ],
)
def test_bad_classifier_settings_name_the_field(project, engineer, tmp_path, setting, message):
    s = serve(project, engineer)
    rm = reward_version(project, tmp_path / "rm")
    field = f"guardrails.{next(iter(setting))}"

    with pytest.raises(ValidationError) as raised:
        _configure(engineer, s.dep, classifier_version_id=rm.pk, **setting)

    assert message in " ".join(raised.value.message_dict[field])
    stop(s)


def test_only_a_reward_model_of_the_project_with_weights_can_classify(
    project, other_project, engineer, tmp_path
):
    s = serve(project, engineer)
    field = "guardrails.classifier_version_id"
    sft = version(project)
    foreign = reward_version(other_project, tmp_path / "foreign")
    unmerged = reward_version(
        project, tmp_path / "adapter", name="rm-lora", kind=ModelVersion.Kind.ADAPTER
    )

    for candidate, says in [
        (sft, "not a classifier"),
        (foreign, "No such model version"),
        (unmerged, "no plain weights"),
    ]:
        with pytest.raises(ValidationError) as raised:
            _configure(engineer, s.dep, classifier_version_id=candidate.pk)
        assert says in raised.value.message_dict[field][0]

    good = reward_version(project, tmp_path / "good")
    dep = _configure(engineer, s.dep, classifier_version_id=good.pk)
    assert dep.guardrails["classifier_version_id"] == good.pk
    assert dep.guardrails["classifier_on"] == ["input", "output"]
    stop(s)


@pytest.mark.parametrize("which", ["sft", "foreign", "threshold"])
def test_the_api_answers_a_bad_classifier_with_a_400_naming_the_field(
    project, other_project, engineer, tmp_path, which
):
    dep = deployment(project, engineer)
    classifier = {
        "sft": {"classifier_version_id": version(project).pk},
        "foreign": {"classifier_version_id": reward_version(other_project, tmp_path / "rm").pk},
        "threshold": {
            "classifier_version_id": reward_version(project, tmp_path / "rm").pk,
            "classifier_threshold": "high",
        },
    }[which]
    api = APIClient()
    api.force_authenticate(engineer)
    url = reverse(
        "serving-api:api-deployment", kwargs={"project_id": project.pk, "deployment_id": dep.pk}
    )

    response = api.patch(url, {"guardrails": classifier}, format="json")

    assert response.status_code == 400, response.json()
    field = "classifier_threshold" if which == "threshold" else "classifier_version_id"
    assert f"guardrails.{field}" in response.json()
    dep.refresh_from_db()
    assert "classifier_version_id" not in dep.guardrails
