"""JSONL exports read into `datasets.Dataset`s in the shape each TRL trainer wants.

Accepted rows (the annotation exports): sft `{"messages": [...]}`, prompt_completion
`{"prompt", "completion"}`, plain `{"text"}`, and preference `{"prompt", "chosen", "rejected"}`
(conversational lists or plain strings). `metadata` is dropped.
"""

import json
from pathlib import Path
from typing import Any


class DataError(ValueError):
    """Bad training data; the message names the file and line."""


def read_jsonl(path: Path | str) -> list[dict[str, Any]]:
    rows = []
    path = Path(path)
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(f"{path.name} line {number}: not JSON ({error.msg}).") from None
            if not isinstance(row, dict):
                raise DataError(f"{path.name} line {number}: expected an object.")
            row["_line"] = number
            rows.append(row)
    if not rows:
        raise DataError(f"{path.name} holds no rows.")
    return rows


def _need(row: dict, keys: tuple[str, ...], name: str, kind: str) -> None:
    missing = [k for k in keys if k not in row]
    if missing:
        raise DataError(
            f"{name} line {row['_line']}: a {kind} row needs {', '.join(missing)} "
            f"(has {', '.join(sorted(k for k in row if k != '_line'))})."
        )


def _sft_row(row: dict, name: str) -> dict:
    if "messages" in row:
        messages = row["messages"]
        if not (isinstance(messages, list) and messages):
            raise DataError(f"{name} line {row['_line']}: messages must be a non-empty list.")
        return {"messages": messages}
    if "prompt" in row and "completion" in row:
        return {"prompt": row["prompt"], "completion": row["completion"]}
    if "text" in row:
        return {"text": row["text"]}
    raise DataError(
        f"{name} line {row['_line']}: an SFT row needs messages, prompt+completion or text."
    )


def _prompt_of(row: dict) -> Any:
    if "prompt" in row:
        return row["prompt"]
    if "messages" in row:
        messages = list(row["messages"])
        while messages and messages[-1].get("role") == "assistant":
            messages.pop()
        return messages
    raise DataError(f"line {row['_line']}: a row for GRPO needs a prompt or messages.")


def load_rows(path: Path | str, kind: str) -> list[dict[str, Any]]:
    """Rows for `kind` ("sft", "reward", "dpo", "grpo"), with a clear error on the first
    malformed one."""
    name = Path(path).name
    out = []
    for row in read_jsonl(path):
        if kind == "sft":
            out.append(_sft_row(row, name))
        elif kind in ("reward", "dpo"):
            _need(row, ("chosen", "rejected"), name, "preference")
            item = {"chosen": row["chosen"], "rejected": row["rejected"]}
            if "prompt" in row:
                item["prompt"] = row["prompt"]
            out.append(item)
        elif kind == "grpo":
            out.append({"prompt": _prompt_of(row)})
        else:
            raise DataError(f"unknown job kind {kind!r}.")
    shapes = {tuple(sorted(r)) for r in out}
    if len(shapes) > 1:
        raise DataError(f"{name}: rows mix shapes {sorted(shapes)}; use one format per file.")
    return out


def load_dataset(path: Path | str, kind: str):
    from datasets import Dataset

    return Dataset.from_list(load_rows(path, kind))


def render_text(row: dict, tokenizer, *, part: str = "chosen") -> str:
    """One row as the text the model sees (for smoke runs, length checks and sanity scores)."""

    def as_text(value: Any, generation_prompt: bool = False) -> str:
        if isinstance(value, list):
            if tokenizer.chat_template:
                return tokenizer.apply_chat_template(
                    value, tokenize=False, add_generation_prompt=generation_prompt
                )
            return "\n".join(f"{m.get('role')}: {m.get('content')}" for m in value)
        return str(value)

    if "messages" in row:
        return as_text(row["messages"])
    if "text" in row:
        return str(row["text"])
    if "completion" in row:
        return as_text(row["prompt"]) + as_text(row["completion"])
    if part in row:
        prompt = row.get("prompt", "")
        if isinstance(prompt, list) and isinstance(row[part], list):
            return as_text(prompt + row[part])
        return as_text(prompt) + as_text(row[part])
    return as_text(row.get("prompt", ""), generation_prompt=True)
