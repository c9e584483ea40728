"""Training exports of a snapshot, as JSON Lines in the shapes TRL reads.

A preference item's prompt may be a conversation (a list of {role, content} turns); it is
exported as those turns, in TRL's conversational format, never flattened into one user
message. A plain-text prompt is one user turn.

Rows stream from a server-side cursor in member order, so memory stays flat however big
the snapshot is, and the same snapshot always gives the same bytes. Every row carries
the item id and snapshot id in `metadata`, so any training example leads back to its
source item.
"""

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from annotation import conversations
from annotation.conversations import ConversationError
from annotation.models import Snapshot, SnapshotMember, TaskType, answer_join

EXPORT_FORMATS = ("sft", "prompt_completion", "preference", "classification", "entity_pairs")
# Which task types each format can be made from.
FORMAT_TASKS = {
    "sft": (TaskType.WRITING, TaskType.CLASSIFICATION, TaskType.PREFERENCE),
    "prompt_completion": (TaskType.WRITING, TaskType.CLASSIFICATION, TaskType.PREFERENCE),
    "preference": (TaskType.PREFERENCE,),
    "classification": (TaskType.CLASSIFICATION,),
    "entity_pairs": (TaskType.ENTITY_MATCHING,),
}
CHUNK = 5000
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class ExportError(ValidationError):
    """An item whose payload cannot make a row of the asked format."""


@dataclass(frozen=True)
class ExportFile:
    path: Path
    rows: int
    sha256: str


def export_formats_for(task_type: str) -> list[str]:
    return [fmt for fmt in EXPORT_FORMATS if task_type in FORMAT_TASKS[fmt]]


def _field(payload: dict, name: str, item_id: int) -> Any:
    value = payload.get(name)
    if value is None or value == "":
        raise ExportError({f"item {item_id}": f"payload has no {name!r} field"})
    return value


def _as_text(value: Any) -> str:
    """Responses and entity records may be objects; the text of one without a text field
    is its JSON."""
    text = conversations.response_text(value)
    if text is not None:
        return text
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _prompt(payload: dict, config: dict, item_id: int) -> str | list[dict[str, str]]:
    """A preference item's prompt: its text, or its turns checked as TRL needs them."""
    value = _field(payload, config["prompt_field"], item_id)
    if not conversations.is_conversation(value):
        return _as_text(value)
    try:
        return conversations.messages_checked(value, config["prompt_field"])
    except ConversationError as error:
        raise ExportError({f"item {item_id}": str(error)}) from None


def _best(label: dict) -> int:
    return label["best"] if "best" in label else label["ranking"][0]


def _turns(
    config: dict, task_type: str, payload: dict, label: dict, item_id: int
) -> list[tuple[Any, Any]]:
    """(user, assistant) turns of a writing or classification item."""
    if task_type == TaskType.WRITING:
        steps = payload.get(config["steps_field"])
        if isinstance(steps, list) and steps and "steps" in label:
            return [(_as_text(s), out) for s, out in zip(steps, label["steps"], strict=False)]
        return [(_as_text(_field(payload, config["prompt_field"], item_id)), label["response"])]
    if task_type == TaskType.CLASSIFICATION:
        text = _as_text(_field(payload, config["text_field"], item_id))
        return [(text, ", ".join(label["labels"]))]
    raise ValueError(f"{task_type} items have no (user, assistant) turns")


def _preference_pairs(label: dict, n: int) -> list[tuple[int, int]]:
    """(chosen, rejected) index pairs: the best against each other response, or every
    ordered pair of a full ranking."""
    if "best" in label:
        return [(label["best"], j) for j in range(n) if j != label["best"]]
    ranking = label["ranking"]
    return [(ranking[i], ranking[j]) for i in range(n) for j in range(i + 1, n)]


def _row_builder(snapshot: Snapshot, fmt: str) -> Callable[[int, dict, Any], list[dict]]:
    task_type = snapshot.task_type
    config = snapshot.stats.get("schema", {}).get("config", {})
    if fmt not in EXPORT_FORMATS:
        raise ValidationError({"fmt": f"{fmt!r} is not one of {', '.join(EXPORT_FORMATS)}"})
    if task_type not in FORMAT_TASKS[fmt]:
        raise ValidationError(
            {
                "fmt": f"a {task_type} snapshot cannot be exported as {fmt}; "
                f"it exports as {', '.join(export_formats_for(task_type))}"
            }
        )
    snapshot_id = snapshot.pk

    def meta(item_id: int) -> dict:
        return {"item_id": item_id, "snapshot_id": snapshot_id}

    if fmt == "sft" and task_type == TaskType.PREFERENCE:

        def build(item_id: int, payload: dict, label: dict) -> list[dict]:
            # The whole conversation, then the reply the annotators preferred.
            responses = _field(payload, config["responses_field"], item_id)
            reply = {"role": "assistant", "content": _as_text(responses[_best(label)])}
            messages = [*conversations.prompt_messages(_prompt(payload, config, item_id)), reply]
            return [{"messages": messages, "metadata": meta(item_id)}]

    elif fmt == "prompt_completion" and task_type == TaskType.PREFERENCE:

        def build(item_id: int, payload: dict, label: dict) -> list[dict]:
            prompt = _prompt(payload, config, item_id)
            responses = _field(payload, config["responses_field"], item_id)
            reply = _as_text(responses[_best(label)])
            if isinstance(prompt, list):
                # TRL wants prompt and completion of one kind: both conversational.
                completion: str | list = [{"role": "assistant", "content": reply}]
            else:
                completion = reply
            return [{"prompt": prompt, "completion": completion, "metadata": meta(item_id)}]

    elif fmt == "sft":

        def build(item_id: int, payload: dict, label: dict) -> list[dict]:
            messages = []
            for user, assistant in _turns(config, task_type, payload, label, item_id):
                messages.append({"role": "user", "content": user})
                messages.append({"role": "assistant", "content": assistant})
            return [{"messages": messages, "metadata": meta(item_id)}]

    elif fmt == "prompt_completion":

        def build(item_id: int, payload: dict, label: dict) -> list[dict]:
            turns = _turns(config, task_type, payload, label, item_id)
            return [
                {"prompt": user, "completion": assistant, "metadata": meta(item_id)}
                for user, assistant in turns
            ]

    elif fmt == "preference":

        def build(item_id: int, payload: dict, label: dict) -> list[dict]:
            prompt = conversations.prompt_messages(_prompt(payload, config, item_id))
            responses = _field(payload, config["responses_field"], item_id)
            return [
                {
                    "prompt": prompt,
                    "chosen": [{"role": "assistant", "content": _as_text(responses[c])}],
                    "rejected": [{"role": "assistant", "content": _as_text(responses[r])}],
                    "metadata": meta(item_id),
                }
                for c, r in _preference_pairs(label, len(responses))
            ]

    elif fmt == "classification":
        multi = bool(config.get("multi"))

        def build(item_id: int, payload: dict, label: dict) -> list[dict]:
            text = _as_text(_field(payload, config["text_field"], item_id))
            value = label["labels"] if multi else label["labels"][0]
            return [{"text": text, "label": value, "metadata": meta(item_id)}]

    else:  # entity_pairs

        def build(item_id: int, payload: dict, label: dict) -> list[dict]:
            return [
                {
                    "left": _as_text(_field(payload, config["left_field"], item_id)),
                    "right": _as_text(_field(payload, config["right_field"], item_id)),
                    "label": label["match"],
                    "metadata": meta(item_id),
                }
            ]

    return build


def export_lines(*, snapshot: Snapshot, fmt: str, split: str | None = None) -> Iterator[bytes]:
    """One JSON line (bytes, ending in a newline) per training row, in member order.
    The format is checked before the first row is produced."""
    build = _row_builder(snapshot, fmt)
    members = SnapshotMember.objects.filter(snapshot=snapshot)
    if split is not None:
        if split not in SnapshotMember.Split.values:
            raise ValidationError({"split": f"is one of {', '.join(SnapshotMember.Split.values)}"})
        members = members.filter(split=split)
    rows = members.order_by("position").values_list(
        "item_id", "item__payload", "choice", "free_text"
    )
    return _lines(rows, build)


def _lines(
    rows: QuerySet[SnapshotMember, tuple[Any, ...]],
    build: Callable[[int, dict, Any], list[dict]],
) -> Iterator[bytes]:
    for item_id, payload, choice, free_text in rows.iterator(chunk_size=CHUNK):
        for row in build(item_id, payload, answer_join(choice, free_text)):
            yield (_encode(row) + "\n").encode("utf-8")


def export_write(
    *, snapshot: Snapshot, fmt: str, path: Path, split: str | None = None
) -> ExportFile:
    """Write an export to `path` (its folder must exist); a failed export leaves no file."""
    path = Path(path)
    digest = hashlib.sha256()
    rows = 0
    partial = path.with_name(path.name + ".partial")
    try:
        with open(partial, "wb") as out:
            for line in export_lines(snapshot=snapshot, fmt=fmt, split=split):
                out.write(line)
                digest.update(line)
                rows += 1
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return ExportFile(path=path, rows=rows, sha256=digest.hexdigest())
