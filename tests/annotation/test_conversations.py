import pytest

from annotation.conversations import (
    ConversationError,
    is_empty_response,
    messages_checked,
    preference_pair,
    prompt_text,
    transcript_pair,
)

H, A = "\n\nHuman: ", "\n\nAssistant: "


def test_hh_transcripts_split_into_the_shared_turns_and_the_two_final_replies():
    prefix = H + "My dog barks." + A + "Have you talked to the owner?" + H + "Yes. What now?"

    prompt, chosen, rejected = transcript_pair(
        prefix + A + "Try mediation.", prefix + A + "Shout at it."
    )

    assert prompt == [
        {"role": "user", "content": "My dog barks."},
        {"role": "assistant", "content": "Have you talked to the owner?"},
        {"role": "user", "content": "Yes. What now?"},
    ]
    assert (chosen, rejected) == ("Try mediation.", "Shout at it.")


@pytest.mark.parametrize("ending", ["\n\nAssistant:", "\n\nAssistant: "])
def test_an_empty_final_reply_is_an_empty_string(ending):
    prompt, chosen, rejected = transcript_pair(H + "Hi" + ending, H + "Hi" + A + "Hello!")

    assert prompt == [{"role": "user", "content": "Hi"}]
    assert (chosen, rejected) == ("", "Hello!")


def test_transcripts_that_differ_before_the_last_reply_are_refused_naming_rejected():
    with pytest.raises(ConversationError) as refused:
        transcript_pair(
            H + "a" + A + "b" + H + "c" + A + "d", H + "a" + A + "X" + H + "c" + A + "e"
        )

    assert refused.value.field == "rejected"
    assert "differ before their last assistant reply" in refused.value.reason


@pytest.mark.parametrize(
    ("chosen", "field"),
    [("plain text, no speakers", "chosen"), (H + "question only", "chosen")],
)
def test_text_that_is_not_a_finished_transcript_is_refused(chosen, field):
    with pytest.raises(ConversationError) as refused:
        transcript_pair(chosen, H + "q" + A + "a")

    assert refused.value.field == field


def test_trl_implicit_prompt_rows_split_their_shared_turns():
    turns = [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}]
    ask = {"role": "user", "content": "q2"}

    prompt, chosen, rejected = preference_pair(
        {
            "chosen": [*turns, ask, {"role": "assistant", "content": "good"}],
            "rejected": [*turns, ask, {"role": "assistant", "content": "bad"}],
        }
    )

    assert prompt == [*turns, ask]
    assert (chosen, rejected) == ("good", "bad")


def test_trl_explicit_prompt_rows_keep_a_text_prompt_as_text():
    assert preference_pair({"prompt": "Hi", "chosen": "Hello", "rejected": "Go away"}) == (
        "Hi",
        "Hello",
        "Go away",
    )
    prompt, chosen, _ = preference_pair(
        {
            "prompt": [{"role": "user", "content": "Hi"}],
            "chosen": [{"role": "assistant", "content": "Hello"}],
            "rejected": [{"role": "assistant", "content": "Go away"}],
        }
    )
    assert (prompt, chosen) == ([{"role": "user", "content": "Hi"}], "Hello")


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ([], "prompt"),
        (
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
            "prompt[1].role",
        ),
        ([{"role": "human", "content": "q"}], "prompt[0].role"),
        ([{"role": "user", "content": 3}], "prompt[0].content"),
        ([{"role": "user", "content": "q"}, {"role": "system", "content": "s"}], "prompt[1].role"),
        (["q"], "prompt[0]"),
    ],
)
def test_a_malformed_conversation_is_refused_at_the_turn(value, field):
    with pytest.raises(ConversationError) as refused:
        messages_checked(value)

    assert refused.value.field == field


def test_only_role_and_content_are_kept():
    assert messages_checked([{"role": "user", "content": "q", "name": "x"}]) == [
        {"role": "user", "content": "q"}
    ]


def test_prompt_text_keeps_plain_text_and_labels_each_turn_of_a_conversation():
    assert prompt_text("Hi") == "Hi"
    assert prompt_text(
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    ) == ("User: q\n\nAssistant: a")


@pytest.mark.parametrize(
    ("response", "empty"),
    [("", True), ("  \n", True), (None, True), ({"text": ""}, True), ("ok", False), (3, False)],
)
def test_empty_responses(response, empty):
    assert is_empty_response(response) is empty
