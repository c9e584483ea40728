"""Guardrails on what goes into and comes out of a deployment: the PII recognizers the
curation checks use (redact or refuse) and a blocklist of regular expressions (refuse or
redact). Pure functions over text; the gateway applies them and records every flag.

A policy is compiled once per routing snapshot (`compile_policy`), not per request.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from annotation.pii import BUILTIN, Recognizer, redact_text, scan_text


@dataclass(frozen=True)
class Policy:
    pii: str = "off"  # off | redact | refuse
    blocklist: tuple[re.Pattern, ...] = ()
    blocklist_action: str = "refuse"  # refuse | redact
    recognizers: Sequence[Recognizer] = BUILTIN

    @property
    def active(self) -> bool:
        return self.pii != "off" or bool(self.blocklist)


@dataclass
class Verdict:
    """The text to pass on (redacted where the policy redacts), whether to refuse, and
    the flags raised, e.g. ["input:pii:EMAIL", "output:blocklist:0"]."""

    text: str
    refused: bool = False
    flags: list[str] = field(default_factory=list)


def compile_policy(settings: dict[str, Any] | None) -> Policy:
    settings = settings or {}
    return Policy(
        pii=settings.get("pii", "off"),
        blocklist=tuple(re.compile(p, re.IGNORECASE) for p in settings.get("blocklist", [])),
        blocklist_action=settings.get("blocklist_action", "refuse"),
    )


def check_text(policy: Policy, text: str, *, where: str) -> Verdict:
    """Apply `policy` to one text; `where` ("input" or "output") prefixes the flags."""
    verdict = Verdict(text)
    if not text or not policy.active:
        return verdict
    for index, pattern in enumerate(policy.blocklist):
        if pattern.search(verdict.text):
            verdict.flags.append(f"{where}:blocklist:{index}")
            if policy.blocklist_action == "refuse":
                verdict.refused = True
            else:
                verdict.text = pattern.sub("[BLOCKED]", verdict.text)
    if policy.pii != "off":
        spans = scan_text(verdict.text, policy.recognizers)
        kinds = sorted({span.kind for span in spans})
        verdict.flags.extend(f"{where}:pii:{kind}" for kind in kinds)
        if spans:
            if policy.pii == "refuse":
                verdict.refused = True
            else:
                verdict.text = redact_text(verdict.text, spans)
    return verdict


def check_messages(policy: Policy, messages: list[dict[str, Any]]) -> tuple[list[dict], Verdict]:
    """Apply the input policy to every string content of a chat request's messages; returns
    the messages to send and one verdict covering them all."""
    total = Verdict("")
    out = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            verdict = check_text(policy, content, where="input")
            total.refused |= verdict.refused
            total.flags.extend(f for f in verdict.flags if f not in total.flags)
            message = {**message, "content": verdict.text}
        elif isinstance(content, list):  # content parts: check the text parts
            parts = []
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    verdict = check_text(policy, part["text"], where="input")
                    total.refused |= verdict.refused
                    total.flags.extend(f for f in verdict.flags if f not in total.flags)
                    part = {**part, "text": verdict.text}
                parts.append(part)
            message = {**message, "content": parts}
        out.append(message)
    return out, total
