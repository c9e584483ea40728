"""The gateway's side of a classifier guardrail: one POST to the classifier's engine in
vLLM's classification API (`/classify` at the server's root: vllm serve with a pooling
runner, or serving.classify_server on the CPU), answered with each text's probabilities."""

import asyncio
import json
from typing import Any

from serving.gateway.upstream import UpstreamBroken, UpstreamPool
from serving.guardrails import classifier_flag_score


class ClassifierUnavailable(Exception):  # noqa: N818 - names the condition
    """The classifier did not answer, or answered something that is not a classification."""


def chat_text(content: Any) -> str | None:
    """A chat message's text: its string content, or its text parts joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict)]
        parts = [p for p in parts if isinstance(p, str)]
        return "\n".join(parts) if parts else None
    return None


def conversation(messages: list[dict[str, Any]], answer: str | None = None) -> list[dict]:
    """The messages as the classifier takes them (string contents only), with the answer
    as the assistant's last turn when there is one."""
    out = []
    for message in messages:
        text = chat_text(message.get("content"))
        if text:
            out.append({"role": str(message.get("role")), "content": text})
    if answer is not None:
        out.append({"role": "assistant", "content": answer})
    return out


async def classify_score(
    pool: UpstreamPool, model: str, body: dict[str, Any], *, timeout: float
) -> float:
    """The highest flag score over the texts `body` asks about (`input` or `messages`)."""
    payload = json.dumps({**body, "model": model}, ensure_ascii=False).encode()
    try:
        async with asyncio.timeout(timeout):
            response = await pool.post("/classify", payload)
            content = await response.aread()
            await response.aclose()
    except (TimeoutError, OSError, UpstreamBroken) as error:
        raise ClassifierUnavailable(type(error).__name__) from None
    if response.status_code != 200:
        raise ClassifierUnavailable(f"answered {response.status_code}")
    try:
        rows = json.loads(content)["data"]
        return max(classifier_flag_score(row["probs"]) for row in rows)
    except (ValueError, KeyError, TypeError) as error:
        raise ClassifierUnavailable(f"not a classification: {type(error).__name__}") from None
