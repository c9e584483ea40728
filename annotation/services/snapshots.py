"""Immutable snapshots: the gold-labelled items of a project (or a filter of them), each
with its canonical content hash, its label and how it was reached, and a deterministic
stratified split by group (items sharing a prompt or a battle stay in one split; see
annotation.split_groups), under a manifest hash an auditor can recompute byte for byte.
Every snapshot starts its leakage check as it is made.

The manifest is the sha256 of one line per member, in position order:
`<content sha256> <label sha256> <split>\\n`, where both inner hashes are taken over the
canonical JSON (sorted keys, no spaces, UTF-8) of the payload and of the label.
"""

import hashlib
import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Case, Expression, F, Max, Q, QuerySet, TextField, Value, When
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import MD5, Cast, Coalesce, Concat, Left
from django.utils import timezone

from annotation import conversations
from annotation.conversations import ConversationError
from annotation.importing import content_hash
from annotation.models import (
    Dataset,
    GoldLabel,
    Item,
    LabelSchema,
    Snapshot,
    SnapshotMember,
    TaskType,
    answer_join,
)
from annotation.schemas import normalize_config
from annotation.services import quality
from annotation.split_groups import GROUP_METADATA_KEY, GroupedSplitter, group_keys, needs_payload
from core.chain import canonical_json
from core.db import on_postgresql, rows_insert
from core.models import Project, User
from core.services.audit import audit_record

DEFAULT_SPLIT = {"train": 0.8, "validation": 0.1, "test": 0.1}
SPLITS = ("train", "validation", "test")
FILTER_KEYS = ("datasets", "metadata", "synthetic", "methods", "item_ids")
SYNTHETIC_CHOICES = ("include", "exclude", "only")
BATCH = 20_000
MEMBER_COLUMNS = (
    "snapshot_id",
    "position",
    "item_id",
    "content_hash",
    "choice",
    "free_text",
    "method",
    "split",
)
_FREE_TEXT = GoldLabel._meta.get_field("free_text")
TRUTHY = {"1", "true", "yes", "y", "synthetic"}
# Copies made only for human review (spot checks) never become training data.
REVIEW_ONLY = ("spot_check",)
METADATA_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,99}$")


def split_ratios_validated(ratios: dict[str, Any] | None) -> dict[str, float]:
    """{"train", "validation", "test"} shares that are >= 0, sum to 1, train > 0."""
    if ratios is None:
        return dict(DEFAULT_SPLIT)
    if not isinstance(ratios, dict) or set(ratios) != set(SPLITS):
        raise ValidationError({"split_ratios": "give exactly train, validation and test shares"})
    cleaned = {}
    for name in SPLITS:
        value = ratios[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValidationError({f"split_ratios.{name}": "must be a number >= 0"})
        cleaned[name] = float(value)
    if abs(sum(cleaned.values()) - 1.0) > 1e-6:
        raise ValidationError({"split_ratios": f"shares sum to {sum(cleaned.values()):g}, not 1"})
    if cleaned["train"] <= 0:
        raise ValidationError({"split_ratios.train": "must be more than 0"})
    return cleaned


def filter_validated(project: Project, raw: dict[str, Any] | None) -> dict[str, Any]:
    """The snapshot filter in its stored form; raise naming the bad key."""
    raw = dict(raw or {})
    unknown = sorted(set(raw) - set(FILTER_KEYS))
    if unknown:
        raise ValidationError(
            {"filter": f"unknown key {unknown[0]!r}; use {', '.join(FILTER_KEYS)}"}
        )
    cleaned: dict[str, Any] = {}
    if raw.get("datasets"):
        try:
            ids = sorted({int(x) for x in raw["datasets"]})
        except (TypeError, ValueError):
            raise ValidationError({"filter.datasets": "must be a list of dataset ids"}) from None
        found = set(
            Dataset.objects.filter(project=project, pk__in=ids).values_list("pk", flat=True)
        )
        missing = [i for i in ids if i not in found]
        if missing:
            raise ValidationError({"filter.datasets": f"no dataset {missing[0]} in this project"})
        cleaned["datasets"] = ids
    if raw.get("metadata"):
        if not isinstance(raw["metadata"], dict):
            raise ValidationError({"filter.metadata": "must be an object of field: value"})
        bad = [k for k in raw["metadata"] if not METADATA_KEY.match(str(k)) or "__" in str(k)]
        if bad:
            raise ValidationError({"filter.metadata": f"{bad[0]!r} is not a metadata field name"})
        cleaned["metadata"] = {str(k): str(v) for k, v in sorted(raw["metadata"].items())}
    synthetic = raw.get("synthetic") or "include"
    if synthetic not in SYNTHETIC_CHOICES:
        raise ValidationError({"filter.synthetic": f"is one of {', '.join(SYNTHETIC_CHOICES)}"})
    if synthetic != "include":
        cleaned["synthetic"] = synthetic
    if raw.get("methods"):
        methods = sorted({str(m) for m in raw["methods"]})
        bad = [m for m in methods if m not in GoldLabel.Method.values]
        if bad:
            raise ValidationError({"filter.methods": f"{bad[0]!r} is not a gold-label method"})
        cleaned["methods"] = methods
    if raw.get("item_ids"):
        try:
            cleaned["item_ids"] = sorted({int(x) for x in raw["item_ids"]})
        except (TypeError, ValueError):
            raise ValidationError({"filter.item_ids": "must be a list of item ids"}) from None
    return cleaned


def stratum_expression(task_type: str) -> Expression:
    """What the split is stratified by: the discrete label where there is one (a schema
    choice, so it is plain in the database)."""
    if task_type == TaskType.CLASSIFICATION:
        return KeyTextTransform("labels", "choice")
    if task_type == TaskType.ENTITY_MATCHING:
        return KeyTextTransform("match", "choice")
    if task_type == TaskType.PREFERENCE:
        return Coalesce(KeyTextTransform("best", "choice"), Value(""), output_field=TextField())
    return Value("", output_field=TextField())


def gold_labels_matching(*, project: Project, task_type: str, filter: dict) -> QuerySet:
    """Gold labels of live (not archived) datasets that pass the filter. Evaluation
    judgments are left out unless the filter names that method."""
    labels = GoldLabel.objects.filter(
        project=project, item__is_gold=False, item__dataset__status=Dataset.Status.READY
    ).exclude(item__dataset__derivation__in=REVIEW_ONLY)
    if filter.get("datasets"):
        labels = labels.filter(item__dataset_id__in=filter["datasets"])
    if filter.get("item_ids"):
        labels = labels.filter(item_id__in=filter["item_ids"])
    if filter.get("methods"):
        labels = labels.filter(method__in=filter["methods"])
    else:
        labels = labels.exclude(method=GoldLabel.Method.EVALUATION)
    for key, value in filter.get("metadata", {}).items():
        labels = labels.filter(**{f"item__metadata__{key}": value})  # key checked: a plain name
    if filter.get("synthetic") == "exclude":
        labels = labels.exclude(synthetic_q())
    elif filter.get("synthetic") == "only":
        labels = labels.filter(synthetic_q())
    return labels


def synthetic_q() -> Q:
    """A row is synthetic when its dataset was flagged so at upload, or its own metadata
    says so."""
    return Q(item__dataset__synthetic=True) | Q(item__metadata__synthetic__in=[*TRUTHY, True])


def label_sha256(label: Any) -> str:
    return hashlib.sha256(canonical_json(label)).hexdigest()


def manifest_line(content: str, label_hash: str, split: str) -> bytes:
    return f"{content} {label_hash} {split}\n".encode("ascii")


def _grouped_split(
    labels: QuerySet,
    *,
    stratum: Expression,
    schema_info: dict[str, Any],
    seed: int,
    ratios: dict,
) -> tuple[GroupedSplitter, dict[str, Any]]:
    """Every matching item's split, decided per group (annotation.split_groups): a first,
    light pass reads each item's group keys and label; payloads are decrypted only for
    tasks whose prompt is inside them."""
    task_type, config = schema_info["task_type"], schema_info["config"]
    with_payload = needs_payload(task_type)
    planned = labels.annotate(
        stratum=stratum,
        split_group=KeyTextTransform(GROUP_METADATA_KEY, "item__metadata"),
        # The seeded order of a content key, as the split has always used it.
        order_hex=Left(MD5(Concat(Value(f"{seed}:"), F("item__content_hash"))), 16),
    ).order_by("item_id")
    splitter = GroupedSplitter(seed=seed, ratios=ratios)
    if with_payload:
        for item_id, digest, stratum_value, split_group, payload in planned.values_list(
            "item_id", "item__content_hash", "stratum", "split_group", "item__payload"
        ).iterator(chunk_size=BATCH):
            keys = group_keys(
                task_type=task_type,
                config=config,
                content_sha256=digest,
                payload=payload,
                split_group=split_group,
            )
            splitter.add(item_id, keys, stratum_value)
    else:
        for item_id, digest, stratum_value, split_group, order_hex in planned.values_list(
            "item_id", "item__content_hash", "stratum", "split_group", "order_hex"
        ).iterator(chunk_size=BATCH):
            keys = [f"content:{digest}"]
            if split_group:
                keys.append(f"group:{split_group}")
            splitter.add(item_id, keys, stratum_value, order=int(order_hex, 16))
    if not splitter.item_ids:
        raise ValidationError({"filter": "no gold-labelled items match; nothing to snapshot"})
    found = splitter.assign()
    grouping = {
        "by": "prompt" if with_payload else "content",
        "metadata_key": GROUP_METADATA_KEY,
        **found,
    }
    return splitter, grouping


def _allocate_snapshot_id() -> int:
    """Members are written before their snapshot row (the row is final the moment it is
    inserted, so its manifest must be known by then); the FK check waits for commit."""
    with connection.cursor() as cursor:
        if on_postgresql():
            cursor.execute("SELECT nextval(pg_get_serial_sequence('annotation_snapshot', 'id'))")
            return int(cursor.fetchone()[0])
        # SQLite: the caller's transaction holds the one write lock, so nobody else takes it.
        cursor.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM annotation_snapshot")
        return int(cursor.fetchone()[0])


def _write_members(rows: list[tuple]) -> None:
    rows_insert(table=SnapshotMember._meta.db_table, columns=MEMBER_COLUMNS, rows=rows)


def _schema_for(project: Project, task_type: str | None) -> dict[str, Any]:
    schema = LabelSchema.objects.filter(project=project).order_by("-version").first()
    if task_type is None:
        if schema is None:
            raise ValidationError({"project": "publish a label schema before taking a snapshot"})
        task_type = schema.task_type
    if schema is not None and schema.task_type == task_type:
        config = normalize_config(task_type, schema.config)
        return {"version": schema.version, "task_type": task_type, "config": config}
    return {"version": None, "task_type": task_type, "config": normalize_config(task_type, {})}


def _next_version(project: Project, name: str) -> int:
    latest = Snapshot.objects.filter(project=project, name=name).aggregate(v=Max("version"))["v"]
    return (latest or 0) + 1


@transaction.atomic
def snapshot_create(
    *,
    actor: User,
    project: Project,
    name: str,
    seed: int = 0,
    split_ratios: dict[str, float] | None = None,
    filter: dict[str, Any] | None = None,
    schema: dict[str, Any] | None = None,
) -> Snapshot:
    """Freeze the project's gold-labelled items that pass `filter` into a new version of
    snapshot `name`. Memory stays small: members stream from a server-side cursor and are
    written in batches; the split plan keeps a few 8-byte numbers per item. `schema`
    (task_type + config) overrides the project's current one.
    The leakage check starts on commit."""
    name = _snapshot_name_validated(name)
    _snapshot_seed_validate(seed)
    ratios = split_ratios_validated(split_ratios)
    stored_filter = filter_validated(project, filter)
    schema_info = schema or _schema_for(project, None)
    task_type = schema_info["task_type"]
    # One snapshot version at a time per project: the version number is read-then-written.
    Project.objects.select_for_update().filter(pk=project.pk).first()
    version = _next_version(project, name)

    labels = gold_labels_matching(project=project, task_type=task_type, filter=stored_filter)
    stratum = stratum_expression(task_type)
    splitter, grouping = _grouped_split(
        labels, stratum=stratum, schema_info=schema_info, seed=seed, ratios=ratios
    )
    split_of = splitter.split_lookup()
    rows = _member_rows(labels, stratum=stratum)
    snapshot_id = _allocate_snapshot_id()
    written = _members_write(rows, snapshot_id=snapshot_id, split_of=split_of)
    snapshot = Snapshot(
        pk=snapshot_id,
        project=project,
        name=name,
        version=version,
        task_type=task_type,
        seed=seed,
        split_ratios=ratios,
        filter=stored_filter,
        member_count=written.count,
        manifest_sha256=written.manifest_sha256,
        stats=_snapshot_stats(written.counts, schema_info=schema_info, grouping=grouping),
        created_by=actor,
        created_at=timezone.now(),
    )
    snapshot.save(force_insert=True)
    _snapshot_create_audit(actor=actor, snapshot=snapshot)
    # However a snapshot is made (page, API, evaluation judgments, demo), its splits are
    # checked for leakage at once: training refuses a snapshot without a finished check.
    quality.quality_check_start(actor=actor, project=project, kind="leakage", snapshot=snapshot)
    return snapshot


def _snapshot_name_validated(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": "give the snapshot a name"})
    if len(name) > 200:
        raise ValidationError({"name": "is longer than 200 characters"})
    return name


def _snapshot_seed_validate(seed: Any) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or not -(2**31) <= seed < 2**31:
        raise ValidationError({"seed": "must be a 32-bit integer"})


def _member_rows(labels: QuerySet, *, stratum: Expression) -> QuerySet:
    """The matching gold labels in item order, as the members are written from them.

    Payloads are decrypted by their field's converter (they are ciphertext in the
    database). Labels arrive as text and are decoded by `_members_write` without the ORM's
    converters: a label of schema choices only repeats (a class name), so each distinct one
    is canonicalised once; free text is decrypted only to hash it, and the member keeps the
    gold label's own token."""
    return (
        labels.annotate(
            stratum=stratum,
            choice_text=Cast("choice", TextField()),
            free_token=Cast("free_text", TextField()),
            is_synthetic=Case(When(synthetic_q(), then=Value(True)), default=Value(False)),
        )
        .order_by("item_id")
        .values_list(
            "item_id",
            "item__payload",
            "choice_text",
            "free_token",
            "method",
            "stratum",
            "item__dataset_id",
            "is_synthetic",
        )
    )


@dataclass(frozen=True)
class _MembersWritten:
    count: int
    manifest_sha256: str
    # "split", "method", "dataset", "stratum" ((split, label)) and "synthetic" (by split).
    counts: dict[str, Counter]


def _members_write(
    rows: QuerySet, *, snapshot_id: int, split_of: Callable[[int], str | None]
) -> _MembersWritten:
    """Write the members from `_member_rows` in batches, hashing the manifest and counting
    what the stats report as they pass. Runs once per member: keep it lean."""
    canonical_labels: dict[str | None, tuple[str | None, str]] = {}
    manifest = hashlib.sha256()
    counts: dict[str, Counter] = defaultdict(Counter)
    batch: list[tuple] = []
    position = 0
    for (
        item_id,
        payload,
        raw_choice,
        free_token,
        method,
        stratum_value,
        dataset_id,
        synthetic,
    ) in rows.iterator(chunk_size=BATCH):
        split = split_of(item_id)
        if split is None:
            continue  # labelled while this snapshot was being taken: the next one has it
        digest = content_hash(payload)
        known = None if free_token is not None else canonical_labels.get(raw_choice)
        if known is None:
            known = _label_canonical(raw_choice, free_token)
            if free_token is None and len(canonical_labels) < 100_000:
                canonical_labels[raw_choice] = known
        choice_text, label_hash = known
        manifest.update(manifest_line(digest, label_hash, split))
        batch.append(
            (snapshot_id, position, item_id, digest, choice_text, free_token, method, split)
        )
        position += 1
        counts["split"][split] += 1
        counts["method"][method] += 1
        counts["dataset"][dataset_id] += 1
        counts["stratum"][(split, stratum_value or "")] += 1
        if synthetic:
            counts["synthetic"][split] += 1
        if len(batch) >= BATCH:
            _write_members(batch)
            batch = []
    _write_members(batch)
    return _MembersWritten(count=position, manifest_sha256=manifest.hexdigest(), counts=counts)


def _label_canonical(raw_choice: str | None, free_token: str | None) -> tuple[str | None, str]:
    """A gold label's choice as canonical JSON text, and the sha256 of the whole label."""
    choice = None if raw_choice is None else json.loads(raw_choice)
    text = canonical_json(answer_join(choice, _FREE_TEXT.decrypt(free_token)))
    return (
        None if choice is None else canonical_json(choice).decode("utf-8"),
        hashlib.sha256(text).hexdigest(),
    )


def _snapshot_stats(
    counts: dict[str, Counter], *, schema_info: dict[str, Any], grouping: dict[str, Any]
) -> dict[str, Any]:
    """What a snapshot's page and its dossier show of it, from the members' counts."""
    datasets = Dataset.objects.filter(pk__in=list(counts["dataset"])).order_by("pk")
    return {
        "schema": schema_info,
        "splits": {s: counts["split"].get(s, 0) for s in SPLITS},
        "methods": dict(sorted(counts["method"].items())),
        "labels": _labels_by_split(counts["stratum"]),
        "synthetic": {s: counts["synthetic"].get(s, 0) for s in SPLITS},
        "datasets": [
            {
                "id": d.pk,
                "name": d.name,
                "file_sha256": d.file_sha256,
                "license": d.license,
                "synthetic": d.synthetic,
                "derivation": d.derivation,
                "members": counts["dataset"][d.pk],
            }
            for d in datasets
        ],
        "grouping": grouping,
        "manifest_format": "sha256 over '<content sha256> <label sha256> <split>\\n' per member",
    }


def _snapshot_create_audit(*, actor: User, snapshot: Snapshot) -> None:
    audit_record(
        actor=actor,
        action="snapshot.create",
        target=snapshot,
        data={
            "name": snapshot.name,
            "version": snapshot.version,
            "members": snapshot.member_count,
            "manifest_sha256": snapshot.manifest_sha256,
            "seed": snapshot.seed,
            "split_ratios": snapshot.split_ratios,
            "filter": snapshot.filter,
        },
    )


def _labels_by_split(strata: Counter) -> dict[str, dict[str, int]]:
    result: dict[str, dict[str, int]] = defaultdict(dict)
    for (split, label), n in sorted(strata.items()):
        result[label or "(all)"][split] = n
    return dict(result)


def manifest_recompute(*, snapshot: Snapshot) -> str:
    """The manifest hash from the stored members, for verification."""
    digest = hashlib.sha256()
    members = snapshot.members.order_by("position").values_list(
        "content_hash", "choice", "free_text", "split"
    )
    for content, choice, free_text, split in members.iterator(chunk_size=BATCH):
        digest.update(manifest_line(content, label_sha256(answer_join(choice, free_text)), split))
    return digest.hexdigest()


def _response_text(pair_value: Any, field: str, row_number: int) -> str:
    if not isinstance(pair_value, str) or not pair_value.strip():
        raise ValidationError({f"rows[{row_number}].{field}": "must be non-empty text"})
    return pair_value


def _prompt_value(value: Any, row_number: int) -> str | list[dict[str, str]]:
    """A judged prompt: text, or a conversation's turns (kept as turns)."""
    if not conversations.is_conversation(value):
        return _response_text(value, "prompt", row_number)
    try:
        return conversations.messages_checked(value)
    except ConversationError as error:
        raise ValidationError({f"rows[{row_number}].{error.field}": error.reason}) from None


def snapshot_create_from_pairs(
    *,
    actor: User,
    project: Project,
    name: str,
    rows: Iterable[dict[str, Any]],
    seed: int = 0,
    split_ratios: dict[str, float] | None = None,
    license: str = "NOASSERTION",
    synthetic: bool = False,
    source_description: str = "Blind pairwise evaluation judgments made in this portal",
) -> Snapshot:
    """A preference snapshot from pairwise judgments (evaluation calls this).

    Each row is {prompt, chosen, rejected, source, group?}. The rows become items of a new
    dataset (derivation "evaluation", provenance: the judgments, with the licence and
    synthetic flag of the prompts they were made on) with gold labels of method
    "evaluation" (`best` is 0: the chosen response), then are snapshotted like any other
    gold-labelled items, so lineage, immutability, grouped splits and the leakage check
    are the same. `group` (the battle) becomes the item's `split_group`."""
    with transaction.atomic():
        dataset, item_ids = _pairs_dataset_create(
            actor=actor,
            project=project,
            name=name,
            rows=rows,
            provenance={
                "license": license,
                "synthetic": bool(synthetic),
                "source_description": source_description,
            },
        )
        return snapshot_create(
            actor=actor,
            project=project,
            name=name,
            seed=seed,
            split_ratios=split_ratios,
            filter={"datasets": [dataset.pk], "methods": [GoldLabel.Method.EVALUATION]},
            schema={
                "version": None,
                "task_type": TaskType.PREFERENCE,
                "config": normalize_config(TaskType.PREFERENCE, {"mode": "best"}),
            },
        )


def _pairs_dataset_create(
    *,
    actor: User,
    project: Project,
    name: str,
    rows: Iterable[dict[str, Any]],
    provenance: dict[str, Any],
) -> tuple[Dataset, list[int]]:
    digest = hashlib.sha256()
    items: list[Item] = []
    labels: list[dict] = []
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise ValidationError({f"rows[{number}]": "must be an object"})
        prompt = _prompt_value(row.get("prompt"), number)
        chosen = _response_text(row.get("chosen"), "chosen", number)
        rejected = _response_text(row.get("rejected"), "rejected", number)
        payload = {"prompt": prompt, "responses": [chosen, rejected]}
        source = row.get("source", "")
        metadata = {
            "source": source if isinstance(source, str) else canonical_json(source).decode()
        }
        group = row.get("group")
        if group not in (None, ""):
            metadata[GROUP_METADATA_KEY] = str(group)
        payload_hash = content_hash(payload)
        line = f"{payload_hash} {metadata['source']}"
        if GROUP_METADATA_KEY in metadata:
            line += f" {metadata[GROUP_METADATA_KEY]}"
        digest.update(f"{line}\n".encode())
        items.append(
            Item(
                project=project,
                row_number=number,
                payload=payload,
                content_hash=payload_hash,
                metadata=metadata,
                state=Item.State.RESOLVED,
            )
        )
        labels.append({"best": 0, "reason": ""})
    if not items:
        raise ValidationError({"rows": "no judgment rows given"})
    file_sha = digest.hexdigest()
    existing = Dataset.objects.filter(project=project, file_sha256=file_sha).first()
    if existing is not None:
        # The same judgments again: reuse their items so the new version is comparable.
        ids = list(
            Item.objects.filter(dataset=existing).order_by("pk").values_list("pk", flat=True)
        )
        return existing, ids
    dataset = Dataset.objects.create(
        project=project,
        name=f"{name} (evaluation judgments)",
        file_name="judgments.jsonl",
        file_format=Dataset.Format.JSONL,
        file_sha256=file_sha,
        file_bytes=0,
        row_count=len(items),
        source_description=provenance["source_description"],
        # The prompts' own terms (from their prompt set), not a blanket default.
        license=provenance["license"] or "NOASSERTION",
        consent_basis="reviewers' judgments under the project's terms",
        collection_date=timezone.now().date(),
        # The responses are model outputs; the prompts are what their prompt set says. The
        # whole-row flag holds only when both fields are synthetic.
        prompt_synthetic=provenance["synthetic"],
        response_synthetic=True,
        synthetic=provenance["synthetic"],
        derivation="evaluation",
        created_by=actor,
    )
    for item in items:
        item.dataset = dataset
    created = Item.objects.bulk_create(items, batch_size=2000)
    GoldLabel.objects.bulk_create(
        [
            # `value` is the answer property over choice and free_text; the plugin sees fields only.
            GoldLabel(  # type: ignore[misc]
                project=project,
                item=item,
                value=label,
                method=GoldLabel.Method.EVALUATION,
                decided_by=actor,
                reason="pairwise evaluation judgment",
            )
            for item, label in zip(created, labels, strict=True)
        ],
        batch_size=2000,
    )
    audit_record(
        actor=actor,
        action="dataset.create_from_judgments",
        target=dataset,
        data={
            "rows": len(items),
            "sha256": file_sha,
            "license": dataset.license,
            "synthetic": dataset.synthetic,
        },
    )
    return dataset, [i.pk for i in created]


def snapshot_members_by_hash(*, snapshot: Snapshot) -> dict[int, tuple[str, str]]:
    """{item id: (content hash, label sha256)} for comparisons."""
    return {
        item_id: (content, label_sha256(answer_join(choice, free_text)))
        for item_id, content, choice, free_text in snapshot.members.values_list(
            "item_id", "content_hash", "choice", "free_text"
        ).iterator(chunk_size=BATCH)
    }
