"""Reads for the adjudication page: the answers side by side with their word differences,
the rule that sent the item here, what is left, and where gold labels go next."""

import difflib
import re
from dataclasses import dataclass
from datetime import datetime
from string import ascii_uppercase
from typing import Any

from annotation.models import AnnotationSettings, GoldLabel, Item, Snapshot
from annotation.selectors import AdjudicationView, adjudication_view, settings_for
from core.models import AuditEvent, Project, User

_WORDS = re.compile(r"\s+|[^\s]+")


@dataclass(frozen=True)
class DiffPart:
    op: str  # "equal", "delete" (only in the first text) or "insert" (only in the second)
    text: str


def word_diff(before: str, after: str) -> list[DiffPart]:
    """`before` → `after` word by word (whitespace runs are tokens too, so the text reads
    as written); neighbouring parts of one kind are merged."""
    a, b = _WORDS.findall(before), _WORDS.findall(after)
    parts: list[DiffPart] = []

    def add(op: str, tokens: list[str]) -> None:
        text = "".join(tokens)
        if not text:
            return
        if parts and parts[-1].op == op:
            parts[-1] = DiffPart(op, parts[-1].text + text)
        else:
            parts.append(DiffPart(op, text))

    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            add("equal", a[i1:i2])
        else:
            add("delete", a[i1:i2])
            add("insert", b[j1:j2])
    return parts


def answer_text(value: Any) -> str:
    """An answer as one readable text, field by field, for diffing and showing."""
    if not isinstance(value, dict):
        return "" if value is None else str(value)
    lines = []
    for key, field in value.items():
        if isinstance(field, list):
            shown = ", ".join(str(v) for v in field)
        elif isinstance(field, dict):
            shown = ", ".join(f"{k} {v}" for k, v in field.items())
        else:
            shown = "" if field is None else str(field)
        lines.append(f"{key}: {shown}" if len(value) > 1 else shown)
    return "\n".join(lines)


def letter(position: int) -> str:
    """How the page names the answer at `position`: A, B, ... Z, then A27..."""
    return ascii_uppercase[position] if position < 26 else f"A{position + 1}"


def letter_position(name: str) -> int | None:
    """The position `letter` names, or None for anything it never returns."""
    name = name.strip().upper()
    if len(name) == 1 and name in ascii_uppercase:
        return ascii_uppercase.index(name)
    if name.startswith("A") and name[1:].isdigit() and int(name[1:]) > 26:
        return int(name[1:]) - 1
    return None


def adjudication_view_for(*, project: Project, item_id: str) -> AdjudicationView | None:
    """The answers of one of the project's items by a posted id (None if it is not one)."""
    if not str(item_id).strip().isdigit():
        return None
    item = Item.objects.filter(project=project, pk=int(item_id)).first()
    return adjudication_view(item=item) if item is not None else None


@dataclass(frozen=True)
class AnswerDiff:
    before: str  # the letter of the answer read first
    after: str
    parts: list[DiffPart]
    same: bool


def answer_diffs(view: AdjudicationView) -> list[AnswerDiff]:
    """Every answer after the first against answer A."""
    if not view.labels:
        return []
    first = answer_text(view.labels[0].value)
    diffs = []
    for position, label in enumerate(view.labels[1:], start=1):
        text = answer_text(label.value)
        diffs.append(AnswerDiff(letter(0), letter(position), word_diff(first, text), text == first))
    return diffs


def _rule_text(rule: str, k: int, m: int, labels: int, votes: int, distinct: int) -> str:
    if rule == AnnotationSettings.Rule.MAJORITY:
        return (
            f"Majority rule (at least {m} of {k} must agree, without a tie): the most common "
            f"answer had {votes} of {labels} votes, among {distinct} different answers."
        )
    return (
        f"Unanimous rule ({k} labels per item, all must agree): the {labels} answers "
        f"gave {distinct} different labels."
    )


def dispute_reason(*, item: Item, view: AdjudicationView) -> str:
    """Which disagreement rule sent the item here, from its 'disputed' audit event (the
    rule in force then); an older event without it is explained by today's settings."""
    event = (
        AuditEvent.objects.filter(
            action="annotation.item.disputed", target_type="annotation.item", target_id=str(item.pk)
        )
        .order_by("-seq")
        .first()
    )
    data = event.data if event is not None else {}
    settings = settings_for(item.project)
    labels = int(data.get("labels") or len(view.labels))
    distinct = int(data.get("distinct") or len({answer_text(x.value) for x in view.labels}))
    return _rule_text(
        str(data.get("rule") or settings.agreement_rule),
        int(data.get("k") or settings.labels_per_item),
        int(data.get("m") or settings.majority_min),
        labels,
        int(data.get("votes") or 1),
        distinct,
    )


def adjudication_items_left(*, project: Project, adjudicator: User) -> int:
    """Disputed items this adjudicator may still decide (not ones they labelled)."""
    return (
        Item.objects.filter(project=project, state=Item.State.DISPUTED)
        .exclude(annotations__annotator=adjudicator)
        .distinct()
        .count()
    )


@dataclass(frozen=True)
class SnapshotNote:
    name: str
    version: int
    created_at: datetime


def snapshot_latest(*, project: Project) -> SnapshotNote | None:
    """The project's newest snapshot: gold labels set now go into the next one."""
    row = Snapshot.objects.filter(project=project).order_by("-created_at", "-pk").first()
    return SnapshotNote(row.name, row.version, row.created_at) if row else None


def adjudication_last_decision(*, project: Project, adjudicator: User) -> GoldLabel | None:
    """The adjudicator's newest gold label here, the one Undo would take back."""
    return (
        GoldLabel.objects.filter(
            project=project, decided_by=adjudicator, method=GoldLabel.Method.ADJUDICATED
        )
        .order_by("-created_at", "-pk")
        .first()
    )
