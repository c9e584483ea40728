"""Reads behind the bulk exports: every answer, one row each, and every item with its
status and labels. Rows stream from server-side cursors in id order, so a million-row
project costs a chunk of rows in memory, never the whole of it.

Annotators appear only as the project's pseudonyms (`selectors.pseudonym`): stable within
a project, keyed by its secret salt, never a username, an email or a user id.
"""

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from django.db.models import F, OuterRef, QuerySet, Subquery

from annotation.models import Annotation, AnnotationSettings, GoldLabel, Item, Lease, answer_join
from annotation.selectors import pseudonym, settings_for
from core.models import Project

CHUNK = 5000
STAGE_PRIMARY, STAGE_ADJUDICATION = "primary", "adjudication"

# An item's status in the exports, from the states the project keeps (Item.State, the
# honeypot flag, the gold label's method and the item's answer counters).
STATUS_UNLABELLED = "unlabelled"  # open, no answer and nobody holding it
STATUS_IN_PROGRESS = "in_progress"  # open, answered or leased, short of its k answers
STATUS_DISPUTED = "disputed"  # the answers disagree: waiting for adjudication
STATUS_AGREED = "agreed"  # gold label by agreement (unanimous or majority)
STATUS_ADJUDICATED = "adjudicated"  # gold label set by an adjudicator
STATUS_LABEL_MODEL = "label_model"  # gold label from the Dawid-Skene label model
STATUS_EVALUATION = "evaluation"  # gold label from a pairwise evaluation judgment
STATUS_HONEYPOT = "honeypot"  # a gold question with a known answer, to check annotators
ITEM_STATUSES = (
    STATUS_UNLABELLED,
    STATUS_IN_PROGRESS,
    STATUS_DISPUTED,
    STATUS_AGREED,
    STATUS_ADJUDICATED,
    STATUS_LABEL_MODEL,
    STATUS_EVALUATION,
    STATUS_HONEYPOT,
)
_STATUS_OF_METHOD: dict[str, str] = {
    GoldLabel.Method.UNANIMOUS: STATUS_AGREED,
    GoldLabel.Method.MAJORITY: STATUS_AGREED,
    GoldLabel.Method.ADJUDICATED: STATUS_ADJUDICATED,
    GoldLabel.Method.LABEL_MODEL: STATUS_LABEL_MODEL,
    GoldLabel.Method.EVALUATION: STATUS_EVALUATION,
}

# The columns of each kind of row, in order (CSV headers, the dataset card).
ANNOTATION_COLUMNS = (
    "annotation_id",
    "gold_label_id",
    "item_id",
    "external_id",
    "dataset_id",
    "annotator",
    "stage",
    "label",
    "value",
    "created_at",
    "submitted_at",
    "seconds_spent",
    "seconds_source",
    "too_fast",
    "schema_version",
    "guideline_version",
    "honeypot",
)
ITEM_COLUMNS = (
    "item_id",
    "external_id",
    "dataset_id",
    "row_number",
    "status",
    "payload",
    "metadata",
    "gold_label",
    "gold_method",
    "gold_decided_by",
    "honeypot_answer",
    "annotations",
)


def item_status(*, state: str, is_gold: bool, method: str | None, answered: int) -> str:
    """The export status of an item; `answered` counts its answers and live leases."""
    if is_gold:
        return STATUS_HONEYPOT
    if state == Item.State.DISPUTED:
        return STATUS_DISPUTED
    if state == Item.State.RESOLVED and method is not None:
        return _STATUS_OF_METHOD.get(method, STATUS_AGREED)
    return STATUS_IN_PROGRESS if answered else STATUS_UNLABELLED


def answer_label(value: dict[str, Any] | None) -> str | None:
    """A short text of an answer's decision for a spreadsheet column: the labels, the match,
    the best response or the ranking; None for written responses and ratings (see `value`)."""
    if not value:
        return None
    if "labels" in value:
        return ",".join(str(v) for v in value["labels"])
    if "match" in value:
        return str(value["match"])
    if "best" in value:
        return str(value["best"])
    if "ranking" in value:
        return ">".join(str(v) for v in value["ranking"])
    return None


class Pseudonyms:
    """The project's pseudonym of each user id, computed once per user."""

    def __init__(self, settings: AnnotationSettings):
        self._settings = settings
        self._known: dict[int, str] = {}

    def __call__(self, user_id: int | None) -> str | None:
        if user_id is None:
            return None
        found = self._known.get(user_id)
        if found is None:
            found = self._known[user_id] = pseudonym(self._settings, user_id)
        return found


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _annotations(project: Project, dataset_id: int | None) -> QuerySet[Annotation]:
    rows = Annotation.objects.filter(project=project, undone=False)
    if dataset_id is not None:
        rows = rows.filter(item__dataset_id=dataset_id)
    return rows


def _gold_labels(project: Project, dataset_id: int | None) -> QuerySet[GoldLabel]:
    rows = GoldLabel.objects.filter(project=project, method=GoldLabel.Method.ADJUDICATED)
    if dataset_id is not None:
        rows = rows.filter(item__dataset_id=dataset_id)
    return rows


def annotation_export_rows(
    *, project: Project, dataset_id: int | None = None
) -> Iterator[dict[str, Any]]:
    """Every live answer of the project (or of one of its datasets), one dict per answer
    (ANNOTATION_COLUMNS): first the annotators' answers ("primary"), by item then time,
    then the adjudicators' gold labels ("adjudication"), by item. An undone answer is left
    out: its annotator withdrew it. Lead time is the seconds recorded under
    core.time_spent; an adjudication's is the server's span from its lease to the label."""
    names = Pseudonyms(settings_for(project))
    primary = (
        _annotations(project, dataset_id)
        .order_by("item_id", "submitted_at", "pk")
        .values_list(
            "pk",
            "item_id",
            "item__external_id",
            "item__dataset_id",
            "annotator_id",
            "choice",
            "free_text",
            "started_at",
            "submitted_at",
            "seconds_spent",
            "seconds_source",
            "too_fast",
            "schema__version",
            "guideline__version",
            "item__is_gold",
        )
    )
    for (
        pk,
        item_id,
        external_id,
        dataset,
        annotator_id,
        choice,
        free_text,
        started,
        submitted,
        seconds,
        source,
        too_fast,
        schema_version,
        guideline_version,
        honeypot,
    ) in primary.iterator(chunk_size=CHUNK):
        value = answer_join(choice, free_text)
        yield {
            "annotation_id": pk,
            "gold_label_id": None,
            "item_id": item_id,
            "external_id": external_id,
            "dataset_id": dataset,
            "annotator": names(annotator_id),
            "stage": STAGE_PRIMARY,
            "label": answer_label(value),
            "value": value,
            "created_at": _iso(started),
            "submitted_at": _iso(submitted),
            "seconds_spent": seconds,
            "seconds_source": source,
            "too_fast": too_fast,
            "schema_version": schema_version,
            "guideline_version": guideline_version,
            "honeypot": honeypot,
        }
    yield from _adjudication_rows(project, dataset_id, names)


def _adjudication_rows(
    project: Project, dataset_id: int | None, names: Callable[[int | None], str | None]
) -> Iterator[dict[str, Any]]:
    leased = (
        Lease.objects.filter(
            item_id=OuterRef("item_id"),
            annotator_id=OuterRef("decided_by_id"),
            kind=Lease.Kind.ADJUDICATE,
        )
        .order_by("-created_at")
        .values("created_at")[:1]
    )
    labels = (
        _gold_labels(project, dataset_id)
        .annotate(leased_at=Subquery(leased), external_id=F("item__external_id"))
        .order_by("item_id")
        .values_list(
            "pk",
            "item_id",
            "external_id",
            "item__dataset_id",
            "decided_by_id",
            "choice",
            "free_text",
            "leased_at",
            "created_at",
        )
    )
    for (
        pk,
        item_id,
        external_id,
        dataset,
        decided_by,
        choice,
        free_text,
        leased_at,
        at,
    ) in labels.iterator(chunk_size=CHUNK):
        value = answer_join(choice, free_text)
        yield {
            "annotation_id": None,
            "gold_label_id": pk,
            "item_id": item_id,
            "external_id": external_id,
            "dataset_id": dataset,
            "annotator": names(decided_by),
            "stage": STAGE_ADJUDICATION,
            "label": answer_label(value),
            "value": value,
            "created_at": _iso(leased_at),
            "submitted_at": _iso(at),
            "seconds_spent": (at - leased_at).total_seconds() if leased_at else None,
            "seconds_source": "server" if leased_at else "",
            "too_fast": False,
            "schema_version": None,
            "guideline_version": None,
            "honeypot": False,
        }


def annotation_export_count(*, project: Project, dataset_id: int | None = None) -> int:
    return _annotations(project, dataset_id).count() + _gold_labels(project, dataset_id).count()


def item_export_rows(
    *, project: Project, dataset_id: int | None = None
) -> Iterator[dict[str, Any]]:
    """Every item of the project (or of one dataset) in id order, one dict each
    (ITEM_COLUMNS): its payload and metadata, its status (ITEM_STATUSES), its gold label
    and how it was reached, a honeypot's known answer, and its live answers with their
    annotators' pseudonyms. Items and answers come from two cursors read side by side."""
    names = Pseudonyms(settings_for(project))
    items = Item.objects.filter(project=project)
    if dataset_id is not None:
        items = items.filter(dataset_id=dataset_id)
    item_rows = items.order_by("pk").values_list(
        "pk",
        "external_id",
        "dataset_id",
        "row_number",
        "state",
        "is_gold",
        "label_count",
        "assigned_count",
        "payload",
        "metadata",
        "gold_answer",
        "gold_label__method",
        "gold_label__choice",
        "gold_label__free_text",
        "gold_label__decided_by_id",
    )
    answers = (
        _annotations(project, dataset_id)
        .order_by("item_id", "submitted_at", "pk")
        .values_list(
            "item_id", "annotator_id", "choice", "free_text", "submitted_at", "seconds_spent"
        )
        .iterator(chunk_size=CHUNK)
    )
    pending = next(answers, None)
    for (
        pk,
        external_id,
        dataset,
        row_number,
        state,
        is_gold,
        label_count,
        assigned_count,
        payload,
        metadata,
        gold_answer,
        method,
        gold_choice,
        gold_free_text,
        decided_by,
    ) in item_rows.iterator(chunk_size=CHUNK):
        labels = []
        # Both cursors run in item order: take this item's answers, skip none of another's.
        while pending is not None and pending[0] <= pk:
            if pending[0] == pk:
                labels.append(
                    {
                        "annotator": names(pending[1]),
                        "value": answer_join(pending[2], pending[3]),
                        "submitted_at": _iso(pending[4]),
                        "seconds_spent": pending[5],
                    }
                )
            pending = next(answers, None)
        yield {
            "item_id": pk,
            "external_id": external_id,
            "dataset_id": dataset,
            "row_number": row_number,
            "status": item_status(
                state=state,
                is_gold=is_gold,
                method=method,
                answered=label_count + assigned_count,
            ),
            "payload": payload,
            "metadata": metadata,
            "gold_label": answer_join(gold_choice, gold_free_text),
            "gold_method": method,
            "gold_decided_by": names(decided_by),
            "honeypot_answer": gold_answer,
            "annotations": labels,
        }


def item_export_count(*, project: Project, dataset_id: int | None = None) -> int:
    items = Item.objects.filter(project=project)
    if dataset_id is not None:
        items = items.filter(dataset_id=dataset_id)
    return items.count()
