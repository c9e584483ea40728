import json
import string

import pytest
import torch
from datasets import load_dataset
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    PreTrainedTokenizerFast,
)
from trl import DPOConfig, DPOTrainer, RewardConfig, RewardTrainer, SFTConfig, SFTTrainer
from trl.data_utils import is_conversational

from annotation.models import LabelSchema
from annotation.services.exports import EXPORT_FORMATS, ExportError, export_lines, export_write
from annotation.services.snapshots import snapshot_create
from tests.annotation.factories import DatasetFactory, gold_item

pytestmark = pytest.mark.django_db

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<s>' + message['role'] + ':' + message['content'] + '</s>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<s>assistant:' }}{% endif %}"
)


@pytest.fixture(scope="module")
def tokenizer():
    specials = ["<pad>", "<unk>", "<s>", "</s>"]
    chars = sorted(set(string.printable) - set("\x0b\x0c\r"))
    core = Tokenizer(
        models.WordLevel(vocab={t: i for i, t in enumerate(specials + chars)}, unk_token="<unk>")
    )
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.decoder = decoders.Fuse()
    core.add_special_tokens(specials)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def _config(tokenizer, **extra):
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        **extra,
    )


def _args(tmp_path):
    return {
        "output_dir": str(tmp_path / "out"),
        "max_steps": 1,
        "per_device_train_batch_size": 2,
        "report_to": [],
        "use_cpu": True,
        "save_strategy": "no",
        "logging_steps": 1,
    }


def _snapshot(project, engineer, task_type, config, rows):
    LabelSchema.objects.create(
        project=project, version=1, task_type=task_type, config=config, created_by=engineer
    )
    dataset = DatasetFactory(project=project)
    for payload, value in rows:
        gold_item(dataset, payload, value)
    return snapshot_create(actor=engineer, project=project, name=task_type, seed=1)


def _load(snapshot, fmt, tmp_path):
    path = tmp_path / f"{fmt}.jsonl"
    written = export_write(snapshot=snapshot, fmt=fmt, path=path)
    assert written.rows == sum(1 for _ in path.open())
    return load_dataset("json", data_files=str(path), split="train"), written


def _losses(trainer):
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


def test_sft_export_trains_one_step_of_sft_trainer(project, engineer, tokenizer, tmp_path):
    rows = [
        ({"instruction": f"say {w}"}, {"response": f"{w} {w}"})
        for w in ["cat", "dog", "sun", "tree", "red", "fish"]
    ]
    snapshot = _snapshot(
        project, engineer, "writing", {"mode": "write", "prompt_field": "instruction"}, rows
    )
    dataset, _ = _load(snapshot, "sft", tmp_path)
    assert dataset[0]["messages"][0]["role"] == "user"
    assert dataset[0]["metadata"]["snapshot_id"] == snapshot.pk

    torch.manual_seed(0)
    trainer = SFTTrainer(
        model=LlamaForCausalLM(_config(tokenizer)),
        args=SFTConfig(**_args(tmp_path), max_length=64),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    trainer.train()
    assert _losses(trainer)

    prompt_completion, _ = _load(snapshot, "prompt_completion", tmp_path)
    trainer = SFTTrainer(
        model=LlamaForCausalLM(_config(tokenizer)),
        args=SFTConfig(**_args(tmp_path), max_length=64),
        train_dataset=prompt_completion,
        processing_class=tokenizer,
    )
    trainer.train()
    assert _losses(trainer)


@pytest.fixture
def preference_snapshot(project, engineer):
    rows = [
        ({"prompt": f"say {w}", "responses": [f"{w} yes", "zzq", f"no {w}"]}, {"best": 0})
        for w in ["cat", "dog", "sun", "tree"]
    ]
    return _snapshot(project, engineer, "preference", {"mode": "best"}, rows)


def test_preference_export_trains_reward_and_dpo_trainers(preference_snapshot, tokenizer, tmp_path):
    dataset, _ = _load(preference_snapshot, "preference", tmp_path)
    assert len(dataset) == 8  # the best against each of two others
    assert dataset[0]["chosen"][0]["role"] == "assistant"

    torch.manual_seed(0)
    reward = RewardTrainer(
        model=LlamaForSequenceClassification(_config(tokenizer, num_labels=1)),
        args=RewardConfig(**_args(tmp_path), max_length=64),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    reward.train()
    assert _losses(reward)

    policy = LlamaForCausalLM(_config(tokenizer))
    reference = LlamaForCausalLM(_config(tokenizer))
    reference.load_state_dict(policy.state_dict())
    dpo = DPOTrainer(
        model=policy,
        ref_model=reference,
        args=DPOConfig(**_args(tmp_path), max_length=64),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    dpo.train()
    assert _losses(dpo)


def test_classification_and_entity_pair_exports_load(project, engineer, tmp_path):
    rows = [({"text": f"t{i}"}, {"labels": ["pos" if i % 2 else "neg"]}) for i in range(6)]
    snapshot = _snapshot(project, engineer, "classification", {"choices": ["pos", "neg"]}, rows)
    dataset, written = _load(snapshot, "classification", tmp_path)
    assert set(dataset.column_names) == {"text", "label", "metadata"}
    assert sorted(set(dataset["label"])) == ["neg", "pos"]
    again = export_write(snapshot=snapshot, fmt="classification", path=tmp_path / "again.jsonl")
    assert again.sha256 == written.sha256  # byte-for-byte reproducible


def test_entity_pairs_export(member_of, project, tmp_path):
    engineer = member_of("engineer")
    rows = [
        ({"left": {"name": f"Acme {i}"}, "right": {"name": f"ACME {i}"}}, {"match": "match"})
        for i in range(3)
    ]
    snapshot = _snapshot(project, engineer, "entity_matching", {}, rows)
    dataset, _ = _load(snapshot, "entity_pairs", tmp_path)
    assert json.loads(dataset[0]["left"]) == {"name": "Acme 0"}
    assert set(dataset["label"]) == {"match"}


@pytest.mark.parametrize("fmt", [f for f in EXPORT_FORMATS if f != "preference"])
def test_formats_that_do_not_fit_the_task_are_refused(preference_snapshot, fmt):
    if fmt in ("sft", "prompt_completion"):
        assert next(export_lines(snapshot=preference_snapshot, fmt=fmt))
        return
    with pytest.raises(Exception, match="cannot be exported as"):
        export_lines(snapshot=preference_snapshot, fmt=fmt)


def _dialogue(word: str) -> list[dict]:
    return [
        {"role": "user", "content": f"name a {word}"},
        {"role": "assistant", "content": f"a {word}"},
        {"role": "user", "content": f"again {word}"},
    ]


@pytest.fixture
def conversation_snapshot(project, engineer):
    rows = [
        ({"prompt": _dialogue(w), "responses": ["zzq", f"{w} yes"]}, {"best": 1})
        for w in ["cat", "dog", "sun", "tree"]
    ]
    return _snapshot(project, engineer, "preference", {"mode": "best"}, rows)


def _rows(snapshot, fmt):
    return [json.loads(line) for line in export_lines(snapshot=snapshot, fmt=fmt)]


def test_a_conversational_prompt_exports_as_its_turns_in_every_format(conversation_snapshot):
    assistant = [{"role": "assistant", "content": "cat yes"}]

    (preference,) = [r for r in _rows(conversation_snapshot, "preference") if "cat" in str(r)]
    assert preference["prompt"] == _dialogue("cat")  # not one user message holding them all
    assert preference["chosen"] == assistant
    assert preference["rejected"] == [{"role": "assistant", "content": "zzq"}]
    assert is_conversational(preference)

    (sft,) = [r for r in _rows(conversation_snapshot, "sft") if "cat" in str(r)]
    assert sft["messages"] == _dialogue("cat") + assistant

    (pair,) = [r for r in _rows(conversation_snapshot, "prompt_completion") if "cat" in str(r)]
    assert (pair["prompt"], pair["completion"]) == (_dialogue("cat"), assistant)


def test_a_plain_text_prompt_exports_as_before(preference_snapshot):
    (row, *_) = _rows(preference_snapshot, "preference")
    assert row["prompt"] == [{"role": "user", "content": "say cat"}]
    (pair, *_) = _rows(preference_snapshot, "prompt_completion")
    assert (pair["prompt"], pair["completion"]) == ("say cat", "cat yes")


def test_a_malformed_stored_conversation_is_refused_naming_the_item(project, engineer):
    payload = {"prompt": [{"role": "assistant", "content": "hi"}], "responses": ["a", "b"]}
    snapshot = _snapshot(
        project, engineer, "preference", {"mode": "best"}, [(payload, {"best": 0})]
    )
    item_id = snapshot.members.get().item_id

    with pytest.raises(ExportError) as refused:
        _rows(snapshot, "preference")

    assert refused.value.message_dict == {
        f"item {item_id}": [
            "prompt[0].role: the last turn must be the user's (the responses answer it)"
        ]
    }


def test_a_conversational_preference_export_trains_the_dpo_trainer(
    conversation_snapshot, tokenizer, tmp_path
):
    dataset, _ = _load(conversation_snapshot, "preference", tmp_path)
    assert [turn["role"] for turn in dataset[0]["prompt"]] == ["user", "assistant", "user"]

    torch.manual_seed(0)
    policy = LlamaForCausalLM(_config(tokenizer))
    reference = LlamaForCausalLM(_config(tokenizer))
    reference.load_state_dict(policy.state_dict())
    dpo = DPOTrainer(
        model=policy,
        ref_model=reference,
        args=DPOConfig(**_args(tmp_path), max_length=96),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    dpo.train()
    assert _losses(dpo)
    # TRL rendered every turn through the chat template, in order.
    ids = dpo.train_dataset[0]["prompt_ids"]
    assert tokenizer.decode(ids).startswith("<s>user:name a")
    assert "<s>assistant:a " in tokenizer.decode(ids)
