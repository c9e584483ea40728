"""Conversational prompts: a dialogue kept as its turns, in TRL's conversational format.

A prompt is either plain text (one user turn) or a list of messages
`[{"role": "system"|"user"|"assistant", "content": str}, ...]` that ends with the user's
turn the responses answer. Public preference sets (Anthropic's hh-rlhf and its many
derivatives) ship each pair as two whole transcripts, `chosen` and `rejected`, that share
every turn but the last assistant reply; `preference_pair` splits them (and TRL's own
preference shapes) into a prompt and the two replies.

Pure functions over plain values, no Django: the import's worker processes use them too.
"""

import re
from typing import Any, TypeGuard

ROLES = ("system", "user", "assistant")
# Keyed by whatever a row gives as the role; only these three have a label.
ROLE_LABELS: dict[object, str] = {"system": "System", "user": "User", "assistant": "Assistant"}
# hh-rlhf's speaker markers; a transcript opens with "\n\nHuman: ". A final reply may be
# empty ("\n\nAssistant:" at the very end), which is why the space is optional.
_SPEAKER = re.compile(r"\n\n(Human|Assistant):[ ]?")
_TRANSCRIPT_ROLES = {"Human": "user", "Assistant": "assistant"}


class ConversationError(ValueError):
    """Why a value is not a usable conversation; `field` is the path inside it."""

    def __init__(self, reason: str, field: str = ""):
        self.reason, self.field = reason, field
        super().__init__(f"{field}: {reason}" if field else reason)


def is_conversation(value: Any) -> TypeGuard[list[Any]]:
    return isinstance(value, list)


def messages_checked(value: Any, field: str = "prompt") -> list[dict[str, str]]:
    """The messages of a conversational prompt, only `role` and `content` kept; raise
    ConversationError naming the turn when it is not one (TRL needs every turn a
    {role, content} pair, a system turn first if any, and the user's turn last)."""
    if not isinstance(value, list) or not value:
        raise ConversationError("must be a non-empty list of {role, content} turns", field)
    messages = []
    for index, turn in enumerate(value):
        where = f"{field}[{index}]"
        if not isinstance(turn, dict):
            raise ConversationError("each turn is an object with role and content", where)
        role, content = turn.get("role"), turn.get("content")
        if role not in ROLES:
            raise ConversationError(f"role is one of {', '.join(ROLES)}", f"{where}.role")
        if not isinstance(content, str):
            raise ConversationError("content must be text", f"{where}.content")
        if role == "system" and index:
            raise ConversationError("a system turn comes first", f"{where}.role")
        messages.append({"role": role, "content": content})
    if messages[-1]["role"] != "user":
        raise ConversationError(
            "the last turn must be the user's (the responses answer it)",
            f"{field}[{len(messages) - 1}].role",
        )
    return messages


def prompt_messages(value: Any, field: str = "prompt") -> list[dict[str, str]]:
    """A prompt as messages: plain text is one user turn."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    return messages_checked(value, field)


def prompt_text(value: Any) -> str:
    """A prompt as one text, for places that take text only (a prompt template's
    {prompt}, a short label): plain text as is, a conversation as "Role: content" turns."""
    if isinstance(value, str):
        return value
    if is_conversation(value):
        return "\n\n".join(
            f"{ROLE_LABELS.get(t.get('role'), t.get('role'))}: {t.get('content', '')}"
            for t in value
            if isinstance(t, dict)
        )
    return "" if value is None else str(value)


def display_turns(value: Any) -> list[dict[str, str]] | None:
    """The turns of a conversational prompt for a page (role, its label, content); None
    for plain text, which a page shows as it is."""
    if not is_conversation(value):
        return None
    return [
        {
            "role": str(turn.get("role", "")),
            "label": ROLE_LABELS.get(turn.get("role"), str(turn.get("role", ""))),
            "content": str(turn.get("content", "")),
        }
        for turn in value
        if isinstance(turn, dict)
    ]


def transcript_turns(text: str, field: str) -> list[dict[str, str]]:
    """The turns of one hh-rlhf transcript ("\\n\\nHuman: …\\n\\nAssistant: …")."""
    if not isinstance(text, str):
        raise ConversationError("must be a transcript (text)", field)
    parts = _SPEAKER.split(text)
    # split() gives [before the first marker, speaker, text, speaker, text, ...]
    if parts[0].strip() or len(parts) < 3:
        raise ConversationError(
            'is not a transcript of "\\n\\nHuman: …" and "\\n\\nAssistant: …" turns', field
        )
    return [
        {"role": _TRANSCRIPT_ROLES[speaker], "content": content.strip()}
        for speaker, content in zip(parts[1::2], parts[2::2], strict=True)
    ]


def _split_final(chosen: list, rejected: list) -> tuple[list[dict[str, str]], str, str]:
    """Two whole conversations that share every turn but the final assistant reply."""
    for field, turns in (("chosen", chosen), ("rejected", rejected)):
        if not turns or not isinstance(turns[-1], dict) or turns[-1].get("role") != "assistant":
            raise ConversationError("must end with an assistant reply", field)
        if not isinstance(turns[-1].get("content"), str):
            raise ConversationError("content must be text", f"{field}[{len(turns) - 1}].content")
    prompt = chosen[:-1]
    if rejected[:-1] != prompt:
        raise ConversationError(
            "chosen and rejected differ before their last assistant reply; "
            "only the final replies may differ",
            "rejected",
        )
    return messages_checked(prompt, "chosen"), chosen[-1]["content"], rejected[-1]["content"]


def transcript_pair(chosen: Any, rejected: Any) -> tuple[list[dict[str, str]], str, str]:
    """(prompt messages, chosen reply, rejected reply) of two hh-rlhf transcripts that
    share every turn but their last assistant reply; raise ConversationError naming the
    field."""
    return _split_final(transcript_turns(chosen, "chosen"), transcript_turns(rejected, "rejected"))


def preference_pair(row: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(prompt, chosen reply, rejected reply) of a public preference row:
    hh-rlhf's two transcripts; TRL's implicit-prompt shape (chosen and rejected are whole
    conversations); or an explicit `prompt` beside chosen and rejected replies (text, or
    assistant turns). A plain-text prompt with text replies stays plain text."""
    chosen: Any = row.get("chosen")
    rejected: Any = row.get("rejected")
    prompt = row.get("prompt")
    for field, value in (("chosen", chosen), ("rejected", rejected)):
        if not isinstance(value, str | list):
            raise ConversationError("is missing: the mapping reads chosen and rejected", field)
    if type(chosen) is not type(rejected):
        raise ConversationError("must be of the same kind as chosen (text or turns)", "rejected")
    if prompt is None:
        if isinstance(chosen, str):
            return transcript_pair(chosen, rejected)
        return _split_final(chosen, rejected)
    if isinstance(chosen, str):
        if not isinstance(prompt, str):
            prompt = messages_checked(prompt)
        return prompt, chosen, rejected
    head = prompt_messages(prompt)
    return _split_final([*head, *chosen], [*head, *rejected])


def response_text(value: Any) -> str | None:
    """The text of a response (a string, or an object with text/content/response); None
    when it has no text field to read."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        for key in ("text", "content", "response"):
            if isinstance(value.get(key), str):
                return value[key]
    return None


def is_empty_response(value: Any) -> bool:
    """A response with nothing in it: null, blank text, or an object whose text is blank."""
    if value is None:
        return True
    text = response_text(value)
    return text is not None and not text.strip()
