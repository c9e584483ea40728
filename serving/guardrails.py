"""Guardrails on what goes into and comes out of a deployment: the PII recognizers the
curation checks use (redact or refuse), a blocklist of regular expressions (refuse or
redact), and optionally a classifier version from the registry (refuse or flag). The first
two are pure functions over text, here; the classifier runs in an engine of its own, which
the gateway calls (serving/gateway/classify.py). The gateway records every flag.

A policy is compiled once per routing snapshot (`compile_policy`), not per request.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from annotation.pii import BUILTIN, Recognizer, redact_text, scan_text
from serving.selectors import Upstream


@dataclass(frozen=True)
class ClassifierPolicy:
    """A sequence classifier (a reward model version) asked about the prompt, the answer or
    both. Its flag score is 1 - P(class 0): for a one-output reward model, P(class 0) is the
    sigmoid of its reward, the chance the text is of the kind it was trained to prefer; for a
    multi-class model, class 0 is the harmless one. A score at or above `threshold` raises
    the flag `<where>:classifier`; `action` refuse then refuses, flag only records.
    `upstream` is None while its engine is not ready: the gateway lets the text through and
    records `<where>:classifier:unavailable` (as Azure OpenAI does when its filter is down)."""

    version_id: int
    threshold: float = 0.5
    action: str = "refuse"  # refuse | flag
    on: tuple[str, ...] = ("input", "output")
    upstream: Upstream | None = None


@dataclass(frozen=True)
class Policy:
    pii: str = "off"  # off | redact | refuse
    blocklist: tuple[re.Pattern, ...] = ()
    blocklist_action: str = "refuse"  # refuse | redact
    recognizers: Sequence[Recognizer] = BUILTIN
    classifier: ClassifierPolicy | None = None

    @property
    def checks_text(self) -> bool:
        """Whether check_text has anything to do (PII or blocklist)."""
        return self.pii != "off" or bool(self.blocklist)

    @property
    def active(self) -> bool:
        return self.checks_text or self.classifier is not None

    def classifies(self, where: str) -> bool:
        return self.classifier is not None and where in self.classifier.on


@dataclass
class Verdict:
    """The text to pass on (redacted where the policy redacts), whether to refuse, and
    the flags raised, e.g. ["input:pii:EMAIL", "output:blocklist:0"]."""

    text: str
    refused: bool = False
    flags: list[str] = field(default_factory=list)


def compile_policy(settings: dict[str, Any] | None, classifier: Upstream | None = None) -> Policy:
    """`classifier`: the ready engine of the classifier the settings name, if any."""
    settings = settings or {}
    policy = None
    if settings.get("classifier_version_id"):
        policy = ClassifierPolicy(
            version_id=int(settings["classifier_version_id"]),
            threshold=float(settings.get("classifier_threshold", 0.5)),
            action=settings.get("classifier_action", "refuse"),
            on=tuple(settings.get("classifier_on") or ("input", "output")),
            upstream=classifier,
        )
    return Policy(
        pii=settings.get("pii", "off"),
        blocklist=tuple(re.compile(p, re.IGNORECASE) for p in settings.get("blocklist", [])),
        blocklist_action=settings.get("blocklist_action", "refuse"),
        classifier=policy,
    )


def classifier_flag_score(probs: Sequence[float]) -> float:
    """1 - P(class 0) of one classification result (see ClassifierPolicy)."""
    return 1.0 - float(probs[0]) if probs else 0.0


def check_text(policy: Policy, text: str, *, where: str) -> Verdict:
    """Apply `policy` to one text; `where` ("input" or "output") prefixes the flags."""
    verdict = Verdict(text)
    if not text or not policy.checks_text:
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
