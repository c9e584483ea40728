"""Reads for annotation pages and the API. Callers have checked the project role;
everything here is scoped by the project it is given."""

import hashlib
import json
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import markdown as markdown_lib
import nh3
from django.core.exceptions import ValidationError
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from annotation.models import (
    Annotation,
    AnnotationSettings,
    Dataset,
    DatasetUpload,
    GoldLabel,
    Guideline,
    Item,
    LabelSchema,
    Lease,
    PiiRule,
    QualityCheck,
    Snapshot,
    SnapshotMember,
    answer_join,
)
from annotation.schemas import agreement_key
from core.chain import canonical_json
from core.models import Project, User

GUIDELINE_TAGS = {
    "a",
    "p",
    "ul",
    "ol",
    "li",
    "strong",
    "em",
    "code",
    "pre",
    "blockquote",
    "h2",
    "h3",
    "h4",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "hr",
    "br",
}
# Fields the item list API may filter on; nothing else reaches the ORM.
# `is_gold` is the deprecated name of `is_gold_question`: it never meant "has a gold label".
ITEM_FILTERS = (
    "state",
    "dataset",
    "is_gold_question",
    "has_gold_label",
    "external_id",
    "is_gold",
)


def guideline_html(text: str) -> str:
    """Markdown to HTML through nh3, so a guideline cannot carry script or event handlers."""
    html = markdown_lib.markdown(text, extensions=["tables", "fenced_code"])
    return nh3.clean(
        html,
        tags=GUIDELINE_TAGS,
        attributes={"a": {"href", "title"}},
        url_schemes={"http", "https", "mailto"},
    )


@dataclass(frozen=True)
class GuidelineExample:
    title: str
    fields: list[tuple[str, str]]
    answer: list[tuple[str, str]]
    why: str


def _display_value(value: Any) -> str:
    """A field's value as a reader sees it: text as is, a list of plain values comma
    separated, anything nested as compact JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    return str(value)


def _display_fields(value: Any) -> list[tuple[str, str]]:
    if isinstance(value, dict):
        return [(str(key), _display_value(v)) for key, v in value.items()]
    return [("", _display_value(value))] if value not in (None, "") else []


def guideline_examples(examples: list[dict[str, Any]]) -> list[GuidelineExample]:
    """A guideline's anchor examples as field/value rows for the side panel, never raw JSON."""
    return [
        GuidelineExample(
            title=str(example.get("title", "")),
            fields=_display_fields(example.get("payload")),
            answer=_display_fields(example.get("answer")),
            why=str(example.get("why", "") or ""),
        )
        for example in examples
        if isinstance(example, dict)
    ]


def settings_for(project: Project) -> AnnotationSettings:
    row, _ = AnnotationSettings.objects.get_or_create(project=project)
    return row


def pseudonym(settings: AnnotationSettings, user_id: int) -> str:
    """A stable, non-reversible name for an annotator within one project."""
    digest = hashlib.sha256(f"{settings.pseudonym_salt}:{user_id}".encode()).hexdigest()
    return f"A-{digest[:6]}"


def current_schema(project: Project) -> LabelSchema | None:
    return LabelSchema.objects.filter(project=project).order_by("-version").first()


def current_guideline(project: Project) -> Guideline | None:
    return Guideline.objects.filter(project=project).order_by("-version").first()


def dataset_list_for_project(*, project: Project) -> QuerySet[Dataset]:
    return Dataset.objects.filter(project=project).select_related("created_by")


def dataset_get(*, project: Project, dataset_id: int) -> Dataset | None:
    return Dataset.objects.filter(project=project, pk=dataset_id).first()


def upload_of_dataset(*, project: Project, dataset: Dataset) -> DatasetUpload | None:
    """The upload a dataset was imported from (None for derived or generated ones)."""
    return DatasetUpload.objects.filter(project=project, dataset=dataset).first()


# Row metadata may mark a row, or one of its fields, synthetic (as snapshot filters read it).
SYNTHETIC_VALUES = ["1", "true", "yes", "y", "synthetic", True]


@dataclass(frozen=True)
class SyntheticShare:
    """How many of a dataset's rows have a model-generated prompt, and response."""

    rows: int
    prompt_rows: int
    response_rows: int

    @staticmethod
    def _share(part: int, whole: int) -> float | None:
        return part / whole if whole else None

    @property
    def prompt(self) -> float | None:
        return self._share(self.prompt_rows, self.rows)

    @property
    def response(self) -> float | None:
        return self._share(self.response_rows, self.rows)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "prompt": {"rows": self.prompt_rows, "share": self.prompt},
            "response": {"rows": self.response_rows, "share": self.response},
        }


def _synthetic_field(name: str) -> Q:
    """A row's `name` field ("prompt" or "response") is synthetic: its dataset says so for
    the field or the whole rows, or the row's metadata does."""
    return (
        Q(dataset__synthetic=True)
        | Q(**{f"dataset__{name}_synthetic": True})
        | Q(metadata__synthetic__in=SYNTHETIC_VALUES)
        | Q(**{f"metadata__{name}_synthetic__in": SYNTHETIC_VALUES})
    )


def dataset_synthetic_shares(*, dataset_ids: list[int]) -> dict[int, SyntheticShare]:
    """{dataset id: its synthetic share per field}, counted over its items in one query."""
    counted = (
        Item.objects.filter(dataset_id__in=dataset_ids)
        .values("dataset_id")
        .annotate(
            rows=Count("pk"),
            prompt_rows=Count("pk", filter=_synthetic_field("prompt")),
            response_rows=Count("pk", filter=_synthetic_field("response")),
        )
        .order_by()
    )
    shares = {i: SyntheticShare(0, 0, 0) for i in dataset_ids}
    for row in counted:
        shares[row["dataset_id"]] = SyntheticShare(
            row["rows"], row["prompt_rows"], row["response_rows"]
        )
    return shares


def upload_get(*, project: Project, upload_id: uuid.UUID | str) -> DatasetUpload | None:
    return DatasetUpload.objects.filter(project=project, pk=upload_id).first()


def upload_list_recent(*, project: Project, limit: int = 10) -> list[DatasetUpload]:
    return list(DatasetUpload.objects.filter(project=project)[:limit])


def _filter_id(name: str, value: str) -> int:
    """An id from a query string; ValidationError naming the parameter (a 400), never the
    database's own error (a 500) for "abc" or a number past bigint."""
    if not value.isascii() or not value.isdigit() or not 0 < int(value) < 2**63:
        raise ValidationError({name: f"{value[:40]!r} is not an id (a positive whole number)."})
    return int(value)


def item_list(*, project: Project, filters: dict[str, str]) -> QuerySet[Item]:
    """Raises ValidationError naming a filter whose value has the wrong type."""
    items = Item.objects.filter(project=project)
    for name, given in filters.items():
        if name not in ITEM_FILTERS:
            raise ValueError(f"cannot filter items by {name!r}")
        if name in ("is_gold_question", "is_gold"):
            items = items.filter(is_gold=_filter_flag(name, given))
        elif name == "has_gold_label":
            items = items.filter(gold_label__isnull=not _filter_flag(name, given))
        elif name == "dataset":
            items = items.filter(dataset_id=_filter_id(name, given))
        elif name == "state":
            if given not in Item.State.values:
                raise ValidationError({name: f"One of {', '.join(Item.State.values)}."})
            items = items.filter(state=given)
        else:
            items = items.filter(external_id=given)
    return items.order_by("id")


def _filter_flag(name: str, value: str) -> bool:
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise ValidationError({name: "Use true or false."})


def stage_counts(*, project: Project) -> dict[str, int]:
    counts = dict(
        Item.objects.filter(project=project, is_gold=False)
        .values_list("state")
        .annotate(n=Count("id"))
        .values_list("state", "n")
    )
    return {state: counts.get(state, 0) for state in Item.State.values}


def open_work_counts(*, project: Project, user: User) -> dict[str, int]:
    """What waits for this user: labelling slots and disputed items."""
    k = settings_for(project).labels_per_item
    open_items = Item.objects.filter(
        project=project, state=Item.State.OPEN, is_gold=False, assigned_count__lt=k
    )
    return {
        "to_label": open_items.exclude(leases__annotator=user).count(),
        "to_adjudicate": Item.objects.filter(project=project, state=Item.State.DISPUTED).count(),
    }


@dataclass
class LabelView:
    pseudonym: str
    value: dict[str, Any]
    seconds: float
    gold_accuracy: tuple[int, int] | None


@dataclass
class AdjudicationView:
    item: Item
    labels: list[LabelView] = field(default_factory=list)


def gold_accuracy_by_annotator(*, project: Project) -> dict[int, tuple[int, int]]:
    """(correct, answered) on honeypot items, per annotator id."""
    schema = current_schema(project)
    if schema is None:
        return {}
    result: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    rows = Annotation.objects.filter(project=project, item__is_gold=True, undone=False).values_list(
        "annotator_id", "choice", "free_text", "item__gold_answer", "schema__task_type"
    )
    for annotator_id, choice, free_text, answer, task_type in rows:
        value = answer_join(choice, free_text)
        try:
            correct = agreement_key(task_type, value) == agreement_key(task_type, answer)
        except (KeyError, TypeError):
            correct = False
        result[annotator_id][0] += int(correct)
        result[annotator_id][1] += 1
    return {k: (v[0], v[1]) for k, v in result.items()}


def adjudication_view(*, item: Item) -> AdjudicationView:
    settings = settings_for(item.project)
    accuracy = gold_accuracy_by_annotator(project=item.project)
    view = AdjudicationView(item=item)
    for annotation in Annotation.objects.filter(item=item, undone=False).order_by("pk"):
        view.labels.append(
            LabelView(
                pseudonym=pseudonym(settings, annotation.annotator_id),
                value=annotation.value,
                seconds=annotation.seconds_spent,
                gold_accuracy=accuracy.get(annotation.annotator_id),
            )
        )
    return view


DISAGREEMENT_FILTERS = ("state", "method", "dataset")


def disagreement_log(*, project: Project, filters: dict[str, str] | None = None) -> list[dict]:
    """Items whose annotators disagreed (the first 5 000): their labels, pseudonymous
    annotators and, once decided, the adjudication and its reason. Raises ValidationError
    naming a filter whose value has the wrong type."""
    items = disagreement_items(project=project, filters=filters)
    return disagreement_rows(project=project, items=list(items[:5000]))


def disagreement_items(
    *, project: Project, filters: dict[str, str] | None = None
) -> QuerySet[Item]:
    """The items of the disagreement log, by id. Raises ValidationError naming a filter
    whose value has the wrong type."""
    items = Item.objects.filter(project=project).filter(
        Q(state=Item.State.DISPUTED)
        | Q(gold_label__method=GoldLabel.Method.ADJUDICATED)
        | Q(gold_label__method=GoldLabel.Method.LABEL_MODEL)
        | Q(gold_label__method=GoldLabel.Method.MAJORITY)
    )
    for name, value in (filters or {}).items():
        if name not in DISAGREEMENT_FILTERS:
            raise ValueError(f"cannot filter the disagreement log by {name!r}")
        if not value:
            continue
        if name == "method":
            items = items.filter(gold_label__method=value)
        elif name == "dataset":
            items = items.filter(dataset_id=_filter_id(name, value))
        else:
            items = items.filter(state=value)
    return items.select_related("gold_label", "gold_label__decided_by").order_by("id")


def disagreement_rows(*, project: Project, items: list[Item]) -> list[dict]:
    """The disagreement log's rows for `items` (from `disagreement_items`)."""
    settings = settings_for(project)
    item_list_ = list(items)
    by_item: dict[int, list[Annotation]] = defaultdict(list)
    for annotation in Annotation.objects.filter(item__in=item_list_, undone=False).order_by("pk"):
        by_item[annotation.item_id].append(annotation)
    rows = []
    for item in item_list_:
        gold = getattr(item, "gold_label", None)
        rows.append(
            {
                "item": item.pk,
                "external_id": item.external_id,
                "state": item.state,
                "labels": [
                    {"annotator": pseudonym(settings, a.annotator_id), "value": a.value}
                    for a in by_item[item.pk]
                ],
                "gold": gold.value if gold else None,
                "method": gold.method if gold else "",
                "decided_by": pseudonym(settings, gold.decided_by_id)
                if gold and gold.decided_by_id
                else "",
                "reason": gold.reason if gold else "",
            }
        )
    return rows


def throughput_by_hour(*, project: Project, hours: int = 24) -> list[tuple[float, float]]:
    """(hours ago, submissions in that hour), oldest first, for the dashboard chart."""
    since = timezone.now() - timedelta(hours=hours)
    times = Annotation.objects.filter(project=project, submitted_at__gte=since).values_list(
        "submitted_at", flat=True
    )
    buckets = [0] * hours
    now = timezone.now()
    for t in times:
        index = min(hours - 1, int((now - t).total_seconds() // 3600))
        buckets[hours - 1 - index] += 1
    return [(float(i - hours + 1), float(n)) for i, n in enumerate(buckets)]


def leases_active(*, project: Project) -> int:
    return Lease.objects.filter(
        project=project, state=Lease.State.ACTIVE, expires_at__gt=timezone.now()
    ).count()


# --- curation: snapshots, checks, restricted originals ----------------------------------------

PII_DERIVATIONS = ("pii_redacted", "pii_dropped")


def datasets_with_unredacted_pii(*, project: Project) -> set[int]:
    """Datasets whose PII was redacted or dropped into a new version: their items are the
    unredacted originals, which only engineers may read."""
    return set(
        Dataset.objects.filter(
            project=project, derived_versions__derivation__in=PII_DERIVATIONS
        ).values_list("pk", flat=True)
    )


def snapshot_list_for_project(*, project: Project) -> QuerySet[Snapshot]:
    return Snapshot.objects.filter(project=project).select_related("created_by")


def snapshot_get(*, project: Project, snapshot_id: int) -> Snapshot | None:
    return Snapshot.objects.filter(project=project, pk=snapshot_id).first()


def snapshot_sources(*, snapshot_ids: list[int]) -> tuple[list[tuple[int, int]], list[Dataset]]:
    """Annotation's part of a model version's lineage: which datasets the given snapshots'
    items came from, as (snapshot id, dataset id) pairs, and those datasets in id order.
    Unscoped: the caller (the lineage reader) has scoped the snapshots."""
    if not snapshot_ids:
        return [], []
    pairs = sorted(
        SnapshotMember.objects.filter(snapshot_id__in=snapshot_ids)
        .values_list("snapshot_id", "item__dataset_id")
        .distinct()
    )
    datasets = list(Dataset.objects.filter(pk__in={d for _, d in pairs}).order_by("pk"))
    return pairs, datasets


def quality_check_query(*, project: Project) -> QuerySet[QualityCheck]:
    return QualityCheck.objects.filter(project=project).select_related("dataset", "snapshot")


def quality_check_list(*, project: Project, limit: int = 30) -> list[QualityCheck]:
    return list(quality_check_query(project=project)[:limit])


def quality_check_get(*, project: Project, check_id: int) -> QualityCheck | None:
    return (
        QualityCheck.objects.filter(project=project, pk=check_id)
        .select_related("dataset", "snapshot", "created_by")
        .first()
    )


def snapshot_checks(*, snapshot: Snapshot) -> dict[str, QualityCheck]:
    """The latest check of each kind run on this snapshot (leakage) or its datasets."""
    latest: dict[str, QualityCheck] = {}
    for check in QualityCheck.objects.filter(snapshot=snapshot).order_by("-created_at"):
        latest.setdefault(check.kind, check)
    return latest


def snapshot_leakage_status(*, snapshot: Snapshot) -> dict[str, Any]:
    """What training asks before it starts: was leakage checked, and how many leaks."""
    check = (
        QualityCheck.objects.filter(snapshot=snapshot, kind=QualityCheck.Kind.LEAKAGE)
        .order_by("-created_at")
        .first()
    )
    if check is None or check.status != QualityCheck.Status.SUCCEEDED:
        return {"checked": False, "status": check.status if check else "missing", "leaks": None}
    return {"checked": True, "status": check.status, "leaks": check.result.get("leaks", 0)}


def lineage_key(item_id: int, metadata: dict | None) -> str:
    """The item a row descends from (through redaction, deduplication), plus its chunk."""
    metadata = metadata or {}
    key = str(metadata.get("origin_item") or item_id)
    return f"{key}#{metadata['chunk']}" if "chunk" in metadata else key


@dataclass
class SnapshotComparison:
    added: list[str]  # lineage keys: an item id, or "id#chunk"
    removed: list[str]
    changed: list[str]  # same source item, different content or label
    split_moved: list[str]
    unchanged: int


def snapshot_compare(*, old: Snapshot, new: Snapshot) -> SnapshotComparison:
    """Members by item id: added, removed, changed (content or label), moved split."""

    def members(snapshot: Snapshot) -> dict[str, tuple[str, str, str]]:
        # Curated versions are new items; they are matched to the item they came from.
        rows = snapshot.members.values_list(
            "item_id", "item__metadata", "content_hash", "choice", "free_text", "split"
        )
        return {
            lineage_key(item_id, metadata): (
                content,
                hashlib.sha256(canonical_json(answer_join(choice, free_text))).hexdigest(),
                split,
            )
            for item_id, metadata, content, choice, free_text, split in rows.iterator(
                chunk_size=20_000
            )
        }

    before, after = members(old), members(new)
    common = before.keys() & after.keys()
    changed = sorted(i for i in common if before[i][:2] != after[i][:2])
    moved = sorted(
        i for i in common if before[i][:2] == after[i][:2] and before[i][2] != after[i][2]
    )
    return SnapshotComparison(
        added=sorted(after.keys() - before.keys()),
        removed=sorted(before.keys() - after.keys()),
        changed=changed,
        split_moved=moved,
        unchanged=len(common) - len(changed) - len(moved),
    )


def pii_rule_list(*, project: Project) -> QuerySet[PiiRule]:
    return PiiRule.objects.filter(project=project).order_by("name")
