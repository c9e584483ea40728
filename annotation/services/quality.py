"""Data quality checks (duplicates, PII, distributions, leakage, synthetic vs real) run
on a worker with progress, and the curation actions that act on their findings.

An action never edits items: it writes a new version of the dataset (derived_from the
original, which is archived and kept as it was), so every snapshot stays traceable.
"""

import hashlib
import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.db.models.fields.json import KeyTextTransform
from tokenizers import Tokenizer

from annotation import dedup, pii, tasks
from annotation.models import (
    Dataset,
    GoldLabel,
    Item,
    PiiRule,
    QualityCheck,
    Snapshot,
    SnapshotMember,
)
from annotation.schemas import normalize_config
from annotation.split_groups import GROUP_METADATA_KEY, group_keys, straddling_groups
from core import realtime
from core.chain import canonical_json
from core.jobs import runs_under_job_lock
from core.models import Project, User
from core.services.audit import audit_record, content_hash
from core.services.jobs import job_claim, job_fail, job_finish, job_progress

PROGRESS_EVERY = 2000
CHUNK = 5000
MAX_LISTED = 2000  # findings kept in a result; counts always cover everything
MAX_SLICE_VALUES = 30
TRUTHY = {"1", "true", "yes", "y", "synthetic"}
# Curated datasets made only for review never feed a snapshot or a project-wide check.
REVIEW_ONLY = ("spot_check",)
# Metadata that curation writes to trace rows back; never a slice to report on.
LINEAGE_KEYS = {"origin_item", "source_item", "chunk", "token_start", "token_end", "spot_check_of"}


# --- starting and running ------------------------------------------------------------------


def _params_validated(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    cleaned: dict[str, Any] = {}
    if kind in (QualityCheck.Kind.DUPLICATES, QualityCheck.Kind.LEAKAGE):
        threshold = params.get("threshold", 0.8)
        try:
            threshold = float(threshold)
        except (TypeError, ValueError):
            raise ValidationError({"threshold": "must be a number"}) from None
        if not 0.5 <= threshold <= 1.0:
            raise ValidationError({"threshold": "is a Jaccard similarity from 0.5 to 1"})
        cleaned["threshold"] = threshold
    if kind in (QualityCheck.Kind.DISTRIBUTIONS, QualityCheck.Kind.SYNTHETIC):
        path = str(params.get("tokenizer_path") or "").strip()
        if path:
            cleaned["tokenizer_path"] = path
    return cleaned


@transaction.atomic
def quality_check_start(
    *,
    actor: User,
    project: Project,
    kind: str,
    dataset: Dataset | None = None,
    snapshot: Snapshot | None = None,
    params: dict[str, Any] | None = None,
    run_now: bool = False,
) -> QualityCheck:
    """Queue a check on the default queue (or run it here with `run_now`). Leakage needs a
    snapshot; the others look at one dataset or, without one, the whole project."""
    if kind not in QualityCheck.Kind.values:
        raise ValidationError({"kind": f"is one of {', '.join(QualityCheck.Kind.values)}"})
    if kind == QualityCheck.Kind.LEAKAGE and snapshot is None:
        raise ValidationError({"snapshot": "leakage is checked between the splits of a snapshot"})
    if dataset is not None and dataset.project_id != project.pk:
        raise ValidationError({"dataset": "is not a dataset of this project"})
    if snapshot is not None and snapshot.project_id != project.pk:
        raise ValidationError({"snapshot": "is not a snapshot of this project"})
    check = QualityCheck.objects.create(
        project=project,
        kind=kind,
        dataset=dataset,
        snapshot=snapshot,
        params=_params_validated(kind, params or {}),
        created_by=actor,
    )
    audit_record(
        actor=actor,
        action="quality_check.start",
        target=check,
        data={
            "kind": kind,
            "dataset": getattr(dataset, "pk", None),
            "snapshot": getattr(snapshot, "pk", None),
        },
    )
    if run_now:
        transaction.on_commit(partial(quality_check_run, check_id=check.pk))
    else:
        transaction.on_commit(lambda: tasks.quality_check_task.delay(check.pk))
    return check


@runs_under_job_lock(QualityCheck, "check_id")
def quality_check_run(*, check_id: int) -> QualityCheck:
    """Run a queued check; a duplicate delivery finds it claimed and returns."""
    claimed = job_claim(QualityCheck, pk=check_id)
    check = QualityCheck.objects.select_related("project", "dataset", "snapshot").get(pk=check_id)
    if not claimed:
        return check
    runner = RUNNERS[check.kind]
    try:
        result = runner(check, _progress_reporter(check))
    except (ValidationError, OSError, ValueError) as error:
        message = "; ".join(getattr(error, "messages", None) or [str(error)])
        job_fail(QualityCheck, pk=check.pk, error=message)
    else:
        job_finish(QualityCheck, pk=check.pk, result=result, done=check.total)
    check.refresh_from_db()
    realtime.push_to_project(
        project_id=check.project_id,
        event={"type": "quality.check", "check": check.pk, "status": check.status},
    )
    return check


def _progress_reporter(check: QualityCheck) -> Callable[[int], None]:
    def report(done: int) -> None:
        job_progress(QualityCheck, pk=check.pk, done=done)
        realtime.push_to_project(
            project_id=check.project_id,
            event={"type": "quality.check", "check": check.pk, "done": done, "total": check.total},
        )

    return report


def _set_total(check: QualityCheck, total: int) -> None:
    check.total = total
    job_progress(QualityCheck, pk=check.pk, total=total)


# --- what a check looks at ----------------------------------------------------------------


def scope_items(*, project: Project, dataset: Dataset | None = None) -> QuerySet[Item]:
    """Live items of one dataset, or of every live dataset of the project (honeypots and
    review-only copies left out)."""
    if dataset is not None:
        return Item.objects.filter(project=project, dataset=dataset, is_gold=False)
    return Item.objects.filter(
        project=project, is_gold=False, dataset__status=Dataset.Status.READY
    ).exclude(dataset__derivation__in=REVIEW_ONLY)


def is_synthetic(dataset_synthetic: bool, metadata: dict | None) -> bool:
    flag = (metadata or {}).get("synthetic")
    return bool(dataset_synthetic) or flag is True or str(flag).lower() in TRUTHY


def _rows(items: QuerySet[Item]) -> Iterator[tuple]:
    values = items.order_by("pk").values_list(
        "pk", "payload", "content_hash", "dataset_id", "metadata", "dataset__synthetic"
    )
    yield from values.iterator(chunk_size=CHUNK)


def _counted(rows: Iterable, report: Callable[[int], None]) -> Iterator:
    for count, row in enumerate(rows, start=1):
        yield row
        if count % PROGRESS_EVERY == 0:
            report(count)


# --- the checks ----------------------------------------------------------------------------


def _run_duplicates(check: QualityCheck, report: Callable[[int], None]) -> dict:
    items = scope_items(project=check.project, dataset=check.dataset)
    _set_total(check, items.count())
    hashes: list[tuple[int, str]] = []
    texts: dict[int, str] = {}
    dataset_of: dict[int, int] = {}
    synthetic = 0
    for item_id, payload, _, dataset_id, metadata, ds_synthetic in _counted(_rows(items), report):
        text = dedup.payload_text(payload)
        # Exact: the same text, whatever the field layout or JSON spacing.
        hashes.append((item_id, hashlib.sha256(" ".join(text.split()).encode()).hexdigest()))
        texts[item_id] = text
        dataset_of[item_id] = dataset_id
        synthetic += is_synthetic(ds_synthetic, metadata)
    exact = dedup.exact_clusters(hashes)
    in_exact = {i for group in exact for i in group[1:]}
    # Near duplicates among what is left once each exact cluster is one row.
    near = dedup.near_clusters(
        ((i, t) for i, t in texts.items() if i not in in_exact), threshold=check.params["threshold"]
    )
    report(len(texts))
    return {
        "items": len(texts),
        "synthetic": synthetic,
        "threshold": check.params["threshold"],
        "exact_clusters": exact,
        "near_clusters": near,
        "redundant_items": sum(len(g) - 1 for g in exact) + sum(len(g) - 1 for g in near),
        "cross_dataset_clusters": sum(
            1 for g in exact + near if len({dataset_of[i] for i in g}) > 1
        ),
    }


def pii_recognizers(project: Project) -> list[pii.Recognizer]:
    rules = PiiRule.objects.filter(project=project).order_by("name").values_list("name", "pattern")
    return [*pii.custom_recognizers(list(rules)), *pii.BUILTIN]


def _run_pii(check: QualityCheck, report: Callable[[int], None]) -> dict:
    items = scope_items(project=check.project, dataset=check.dataset)
    _set_total(check, items.count())
    recognizers = pii_recognizers(check.project)
    counts: Counter = Counter()
    findings: list[dict] = []
    flagged = scanned = synthetic = 0
    for item_id, payload, _, _, metadata, ds_synthetic in _counted(_rows(items), report):
        scanned += 1
        synthetic += is_synthetic(ds_synthetic, metadata)
        found = pii.scan_payload(payload, recognizers)
        if not found:
            continue
        flagged += 1
        spans = [
            {"path": path, "kind": s.kind, "start": s.start, "end": s.end}
            for path, path_spans in found.items()
            for s in path_spans
        ]
        counts.update(s["kind"] for s in spans)
        if len(findings) < MAX_LISTED:
            # Spans only: the matched text is the personal data itself.
            findings.append({"item": item_id, "spans": spans})
    return {
        "items": scanned,
        "synthetic": synthetic,
        "items_with_pii": flagged,
        "counts": dict(sorted(counts.items())),
        "findings": findings,
        "listed": len(findings),
        "rules": [r.kind for r in recognizers if r.kind not in pii.PLACEHOLDER_KINDS],
    }


def local_tokenizer(path: str) -> Tokenizer:
    """The fast tokenizer saved with a base model (its tokenizer.json); no network."""
    try:
        return Tokenizer.from_file(str(Path(path) / "tokenizer.json"))
    except Exception as error:  # noqa: BLE001 - the Rust library raises plain Exception
        raise ValidationError(
            {"tokenizer_path": f"cannot load {path}/tokenizer.json: {error}"}
        ) from None


def token_counter(path: str | None) -> tuple[Callable[[str], int], str]:
    """Token counts by a local tokenizer folder (a base model's), else an approximation."""
    if not path:
        return dedup.approx_tokens, "approximate (words and punctuation)"
    tokenizer = local_tokenizer(path)
    return (lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids)), path


def _histogram(values: Sequence[float]) -> dict:
    edges = dedup.shared_edges(values)
    return {"edges": edges, "counts": dedup.histogram_counts(values, edges)}


def _label_name(value: Any) -> str:
    if isinstance(value, dict):
        for key in ("labels", "match", "best"):
            if key in value:
                got = value[key]
                return ", ".join(got) if isinstance(got, list) else str(got)
    return "(free text)"


def _run_distributions(check: QualityCheck, report: Callable[[int], None]) -> dict:
    items = scope_items(project=check.project, dataset=check.dataset)
    _set_total(check, items.count())
    count_tokens, tokenizer = token_counter(check.params.get("tokenizer_path"))
    # Label names come from the plain schema choices; free text shows as "(free text)".
    labels_of = dict(
        GoldLabel.objects.filter(item__in=items).values_list("item_id", "choice").iterator(CHUNK)
    )
    chars: list[int] = []
    tokens: list[int] = []
    labels: Counter = Counter()
    slices: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    synthetic = 0
    for item_id, payload, _, _, metadata, ds_synthetic in _counted(_rows(items), report):
        text = dedup.payload_text(payload)
        chars.append(len(text))
        tokens.append(count_tokens(text))
        label = _label_name(labels_of[item_id]) if item_id in labels_of else None
        if label is not None:
            labels[label] += 1
        synthetic += is_synthetic(ds_synthetic, metadata)
        for key, value in (metadata or {}).items():
            if key in LINEAGE_KEYS:
                continue
            bucket = slices[key]
            if str(value) not in bucket and len(bucket) >= MAX_SLICE_VALUES:
                continue
            row = bucket.setdefault(str(value), {"items": 0, "chars": 0, "labels": Counter()})
            row["items"] += 1
            row["chars"] += len(text)
            if label is not None:
                row["labels"][label] += 1
    counts = sorted(labels.values())
    return {
        "items": len(chars),
        "synthetic": synthetic,
        "labelled": sum(counts),
        "labels": dict(labels.most_common()),
        "imbalance": round(counts[-1] / counts[0], 3) if counts else None,
        "tokenizer": tokenizer,
        "chars": _histogram(chars),
        "tokens": _histogram(tokens),
        "slices": {
            key: {
                value: {
                    "items": row["items"],
                    "mean_chars": round(row["chars"] / row["items"], 1),
                    "labels": dict(row["labels"].most_common()),
                }
                for value, row in sorted(bucket.items())
            }
            for key, bucket in sorted(slices.items())
        },
    }


def _run_synthetic(check: QualityCheck, report: Callable[[int], None]) -> dict:
    items = scope_items(project=check.project, dataset=check.dataset)
    _set_total(check, items.count())
    count_tokens, tokenizer = token_counter(check.params.get("tokenizer_path"))
    lengths: dict[str, dict[str, list[int]]] = {
        "synthetic": {"chars": [], "tokens": []},
        "real": {"chars": [], "tokens": []},
    }
    for _, payload, _, _, metadata, ds_synthetic in _counted(_rows(items), report):
        text = dedup.payload_text(payload)
        group = lengths["synthetic" if is_synthetic(ds_synthetic, metadata) else "real"]
        group["chars"].append(len(text))
        group["tokens"].append(count_tokens(text))
    result: dict[str, Any] = {
        "items": sum(len(g["chars"]) for g in lengths.values()),
        "synthetic": len(lengths["synthetic"]["chars"]),
        "real": len(lengths["real"]["chars"]),
        "tokenizer": tokenizer,
    }
    for measure in ("chars", "tokens"):
        syn, real = lengths["synthetic"][measure], lengths["real"][measure]
        edges = dedup.shared_edges(syn, real)
        result[measure] = {
            "edges": edges,
            "synthetic": dedup.histogram_counts(syn, edges),
            "real": dedup.histogram_counts(real, edges),
            "divergence": dedup.divergence(syn, real),
        }
    return result


def _run_leakage(check: QualityCheck, report: Callable[[int], None]) -> dict:
    """Items of one snapshot in different splits that are the same (content hash), share
    a prompt or a battle (the keys the split groups by), or are near duplicates."""
    snapshot = check.snapshot
    if snapshot is None:  # quality_check_start gives a leakage check its snapshot
        raise ValueError("A leakage check needs a snapshot.")
    _set_total(check, snapshot.member_count)
    schema = snapshot.stats.get("schema") or {}
    task_type = schema.get("task_type") or snapshot.task_type
    config = schema.get("config") or normalize_config(task_type, {})
    members = (
        SnapshotMember.objects.filter(snapshot=snapshot)
        .annotate(split_group=KeyTextTransform(GROUP_METADATA_KEY, "item__metadata"))
        .order_by("position")
        .values_list("item_id", "content_hash", "split", "item__payload", "split_group")
    )
    split_of: dict[int, str] = {}
    hashes: list[tuple[int, str]] = []
    texts: dict[int, str] = {}
    keyed: list[tuple[int, list[str], str]] = []
    rows = _counted(members.iterator(chunk_size=CHUNK), report)
    for item_id, digest, split, payload, split_group in rows:
        split_of[item_id] = split
        hashes.append((item_id, digest))
        texts[item_id] = dedup.payload_text(payload)
        keys = group_keys(
            task_type=task_type,
            config=config,
            content_sha256=digest,
            payload=payload,
            split_group=split_group,
        )
        keyed.append((item_id, keys, split))

    def leaking(groups: list[list[int]]) -> list[dict]:
        return [
            {"items": g, "splits": sorted({split_of[i] for i in g})}
            for g in groups
            if len({split_of[i] for i in g}) > 1
        ]

    exact = leaking(dedup.exact_clusters(hashes))
    exact_sets = [set(g["items"]) for g in exact]
    shared = [
        g for g in straddling_groups(keyed) if not any(set(g["items"]) <= s for s in exact_sets)
    ]
    known = exact_sets + [set(g["items"]) for g in shared]
    near = leaking(dedup.near_clusters(texts.items(), threshold=check.params["threshold"]))
    near = [g for g in near if not any(set(g["items"]) <= s for s in known)]
    return {
        "items": len(texts),
        "synthetic": snapshot.stats.get("synthetic", {}),
        "threshold": check.params["threshold"],
        "exact": exact[:MAX_LISTED],
        "shared_prompt": shared[:MAX_LISTED],
        "near": near[:MAX_LISTED],
        "leaks": len(exact) + len(shared) + len(near),
        "clean": not exact and not shared and not near,
    }


# Keyed by the kind as stored (a Kind is a str).
RUNNERS: dict[str, Callable[[QualityCheck, Callable[[int], None]], dict]] = {
    QualityCheck.Kind.DUPLICATES: _run_duplicates,
    QualityCheck.Kind.PII: _run_pii,
    QualityCheck.Kind.DISTRIBUTIONS: _run_distributions,
    QualityCheck.Kind.SYNTHETIC: _run_synthetic,
    QualityCheck.Kind.LEAKAGE: _run_leakage,
}


# --- curation actions: each writes new dataset versions ------------------------------------


def _derived_sha(source: Dataset, derivation: str, rows_digest: str) -> str:
    return hashlib.sha256(f"{source.file_sha256}:{derivation}:{rows_digest}".encode()).hexdigest()


def dataset_derive(
    *,
    actor: User,
    source: Dataset,
    derivation: str,
    rows: Iterable[tuple[dict, dict, Item | None, bool]],
    name: str | None = None,
    archive_source: bool = True,
    gold_transform: Callable[[Any], Any] | None = None,
) -> Dataset:
    """A new version of `source` from (payload, metadata, copied-from item, keep gold)
    rows. Gold labels of copied items come along, through `gold_transform` if given. The
    source is archived unless told not to. Caller holds a transaction."""
    digest = hashlib.sha256()
    new_items: list[Item] = []
    golds: list[tuple[int, GoldLabel | None]] = []
    source_golds = {
        g.item_id: g for g in GoldLabel.objects.filter(item__dataset=source).iterator(CHUNK)
    }
    for number, (payload, metadata, origin, keep_gold) in enumerate(rows, start=1):
        if origin is not None and "origin_item" not in metadata:
            # Lineage: a curated row names the first item it descends from.
            metadata = {**metadata, "origin_item": str(origin.pk)}
        digest.update(canonical_json(payload) + b"\n")
        gold = source_golds.get(origin.pk) if (origin is not None and keep_gold) else None
        new_items.append(
            Item(
                project_id=source.project_id,
                row_number=number,
                external_id=origin.external_id if origin is not None else "",
                payload=payload,
                content_hash=hashlib.sha256(canonical_json(payload)).hexdigest(),
                metadata=metadata,
                state=Item.State.RESOLVED if gold is not None else Item.State.OPEN,
                priority=origin.priority if origin is not None else 0.0,
                random_key=origin.random_key if origin is not None else number,
            )
        )
        golds.append((len(new_items) - 1, gold))
    if not new_items:
        raise ValidationError({"dataset": "the new version would hold no rows"})
    file_sha = _derived_sha(source, derivation, digest.hexdigest())
    same = Dataset.objects.filter(project_id=source.project_id, file_sha256=file_sha).first()
    if same is not None:
        raise ValidationError(
            {"dataset": f"this version already exists as dataset “{same.name}” (id {same.pk})"}
        )
    dataset = Dataset.objects.create(
        project_id=source.project_id,
        name=name or f"{source.name} ({derivation})",
        file_name=source.file_name,
        file_format=source.file_format,
        file_sha256=file_sha,
        file_bytes=0,
        row_count=len(new_items),
        source_description=source.source_description,
        license=source.license,
        consent_basis=source.consent_basis,
        collection_date=source.collection_date,
        synthetic=source.synthetic,
        prompt_synthetic=source.prompt_synthetic,
        response_synthetic=source.response_synthetic,
        derived_from=source,
        derivation=derivation,
        created_by=actor,
    )
    for item in new_items:
        item.dataset = dataset
    created = Item.objects.bulk_create(new_items, batch_size=2000)
    GoldLabel.objects.bulk_create(
        [
            # `value` is the answer property over choice and free_text; the plugin sees fields only.
            GoldLabel(  # type: ignore[misc]
                project_id=source.project_id,
                item=created[index],
                value=gold_transform(gold.value) if gold_transform else gold.value,
                method=gold.method,
                decided_by_id=gold.decided_by_id,
                reason=gold.reason,
                annotation_ids=gold.annotation_ids,
            )
            for index, gold in golds
            if gold is not None
        ],
        batch_size=2000,
    )
    if archive_source:
        Dataset.objects.filter(pk=source.pk).update(status=Dataset.Status.ARCHIVED)
    audit_record(
        actor=actor,
        action=f"dataset.derive.{derivation}",
        target=dataset,
        data={"source": source.pk, "rows": len(new_items), "sha256": dataset.file_sha256},
    )
    return dataset


def _finished(check: QualityCheck, kind: str) -> None:
    if check.kind != kind or check.status != QualityCheck.Status.SUCCEEDED:
        raise ValidationError({"check": f"needs a finished {kind} check"})


def _items_by_dataset(check: QualityCheck) -> dict[Dataset, list[Item]]:
    grouped: dict[Dataset, list[Item]] = defaultdict(list)
    items = scope_items(project=check.project, dataset=check.dataset).select_related("dataset")
    for item in items.order_by("dataset_id", "row_number", "pk").iterator(CHUNK):
        grouped[item.dataset].append(item)
    return grouped


@transaction.atomic
def duplicates_keep_one(*, actor: User, check: QualityCheck) -> list[Dataset]:
    """Keep the first (lowest id) item of every duplicate cluster; every dataset that loses
    rows gets a new version without them."""
    _finished(check, QualityCheck.Kind.DUPLICATES)
    drop = {
        i
        for group in check.result["exact_clusters"] + check.result["near_clusters"]
        for i in group[1:]
    }
    versions: list[Dataset] = []
    emptied: list[int] = []
    for source, items in _items_by_dataset(check).items():
        if not any(item.pk in drop for item in items):
            continue
        rows = [(item.payload, item.metadata, item, True) for item in items if item.pk not in drop]
        if not rows:  # every row is a copy of one kept elsewhere: retire the dataset
            Dataset.objects.filter(pk=source.pk).update(status=Dataset.Status.ARCHIVED)
            emptied.append(source.pk)
            continue
        versions.append(
            dataset_derive(actor=actor, source=source, derivation="deduplicated", rows=rows)
        )
    if not versions and not emptied:
        raise ValidationError({"check": "no duplicates of live datasets to remove"})
    audit_record(
        actor=actor,
        action="quality.duplicates.keep_one",
        target=check,
        data={"dropped": len(drop), "datasets": [d.pk for d in versions], "retired": emptied},
    )
    return versions


@transaction.atomic
def pii_apply(*, actor: User, check: QualityCheck, action: str) -> list[Dataset]:
    """`redact`: PII replaced by typed placeholders ([EMAIL], ...); `drop`: rows with PII
    left out. Either way into new dataset versions; the originals are archived as they were
    (and only engineers can read them)."""
    _finished(check, QualityCheck.Kind.PII)
    if action not in ("redact", "drop"):
        raise ValidationError({"action": "is 'redact' or 'drop'"})
    recognizers = pii_recognizers(check.project)
    versions = []
    for source, items in _items_by_dataset(check).items():
        flagged = {i.pk for i in items if pii.scan_payload(i.payload, recognizers)}
        if not flagged:
            continue
        if action == "drop":
            rows = [(i.payload, i.metadata, i, True) for i in items if i.pk not in flagged]
            versions.append(
                dataset_derive(actor=actor, source=source, derivation="pii_dropped", rows=rows)
            )
            continue
        rows = [(pii.redact_payload(i.payload, recognizers), i.metadata, i, True) for i in items]
        # Answers quote the text (a writing task's response, say): redact them too.
        dataset = dataset_derive(
            actor=actor,
            source=source,
            derivation="pii_redacted",
            rows=rows,
            gold_transform=partial(pii.redact_payload, recognizers=recognizers),
        )
        versions.append(dataset)
    if not versions:
        raise ValidationError({"check": "no PII left in live datasets"})
    audit_record(
        actor=actor,
        action=f"quality.pii.{action}",
        target=check,
        data={"datasets": [d.pk for d in versions]},
    )
    return versions


@transaction.atomic
def synthetic_spot_check(
    *, actor: User, project: Project, n: int, seed: int = 0, dataset: Dataset | None = None
) -> Dataset:
    """Sample `n` synthetic rows into a review-only dataset whose items enter the
    annotation queue first (high priority); it never feeds snapshots."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 10_000:
        raise ValidationError({"n": "is a number of rows from 1 to 10000"})
    candidates = [
        item
        for item in scope_items(project=project, dataset=dataset)
        .select_related("dataset")
        .order_by("pk")
        .iterator(CHUNK)
        if is_synthetic(item.dataset.synthetic, item.metadata)
    ]
    if not candidates:
        raise ValidationError({"n": "there are no synthetic rows to sample"})
    # Seeded, not secret: the same seed must draw the same rows again.
    rng = random.Random(seed)  # noqa: S311
    sample = sorted(rng.sample(candidates, min(n, len(candidates))), key=lambda i: i.pk)
    source = sample[0].dataset
    rows = [
        (item.payload, {**item.metadata, "spot_check_of": str(item.pk)}, None, False)
        for item in sample
    ]
    review = dataset_derive(
        actor=actor,
        source=source,
        derivation="spot_check",
        rows=rows,
        name=f"Spot check of {len(sample)} synthetic rows (seed {seed})",
        archive_source=False,
    )
    Item.objects.filter(dataset=review).update(priority=1_000_000.0)
    return review


_WORDS = re.compile(r"\S+\s*")


@transaction.atomic
def dataset_chunk(
    *,
    actor: User,
    dataset: Dataset,
    field: str,
    max_tokens: int,
    overlap: int,
    tokenizer_path: str | None = None,
) -> Dataset:
    """Split the `field` text of each item into windows of at most `max_tokens` tokens,
    consecutive windows sharing `overlap` tokens. Each chunk keeps its source item id, its
    position and its token range in metadata. Tokens are a base model's tokenizer's when
    `tokenizer_path` is given, else whitespace-separated words."""
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 2:
        raise ValidationError({"max_tokens": "must be a whole number of at least 2"})
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < max_tokens:
        raise ValidationError({"overlap": f"must be from 0 to {max_tokens - 1}"})
    split = _token_splitter(tokenizer_path)
    rows = []
    step = max_tokens - overlap
    for item in Item.objects.filter(dataset=dataset).order_by("row_number", "pk").iterator(CHUNK):
        text = item.payload.get(field)
        if not isinstance(text, str):
            raise ValidationError({"field": f"item {item.pk} has no text field {field!r}"})
        pieces = split(text)
        starts = range(0, max(len(pieces) - overlap, 1), step)
        for position, start in enumerate(starts):
            window = pieces[start : start + max_tokens]
            payload = {**item.payload, field: "".join(window).strip()}
            metadata = {
                **item.metadata,
                "source_item": str(item.pk),
                "chunk": str(position),
                "token_start": str(start),
                "token_end": str(start + len(window)),
            }
            rows.append((payload, metadata, item, False))
    return dataset_derive(
        actor=actor,
        source=dataset,
        derivation="chunked",
        rows=rows,
        name=f"{dataset.name} (chunks of {max_tokens}, overlap {overlap})",
        archive_source=False,
    )


def _token_splitter(path: str | None) -> Callable[[str], list[str]]:
    """Text to a list of pieces whose concatenation is the text again."""
    if not path:
        return _WORDS.findall
    tokenizer = local_tokenizer(path)

    def split(text: str) -> list[str]:
        offsets = tokenizer.encode(text, add_special_tokens=False).offsets
        if not offsets:
            return [text] if text else []
        bounds = [start for start, _ in offsets] + [len(text)]
        bounds[0] = 0
        return [text[bounds[i] : bounds[i + 1]] for i in range(len(offsets))]

    return split


@transaction.atomic
def pii_rule_add(*, actor: User, project: Project, name: str, pattern: str) -> PiiRule:
    name = (name or "").strip().upper()
    if not pii.RULE_NAME.match(name):
        raise ValidationError({"name": "upper-case letters, digits and _, 2 to 40 characters"})
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise ValidationError({"pattern": f"is not a valid regular expression: {error}"}) from None
    if compiled.match(""):
        raise ValidationError({"pattern": "matches the empty string"})
    if PiiRule.objects.filter(project=project, name=name).exists():
        raise ValidationError({"name": f"the project already has a rule {name}"})
    rule = PiiRule.objects.create(project=project, name=name, pattern=pattern, created_by=actor)
    audit_record(
        actor=actor,
        action="pii_rule.add",
        target=rule,
        # A rule can spell out the very names it hunts for: the log keeps its hash.
        data={"name": name, "pattern_sha256": content_hash(pattern)},
    )
    return rule
