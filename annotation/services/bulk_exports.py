"""Bulk exports of a project's labels, beside the snapshot's training exports: every
answer (for one's own agreement analysis) and every item with its status and labels, in
the formats other tools load: JSON Lines, CSV, a Hugging Face `datasets` folder (Parquet
and a dataset card, zipped), Label Studio's task JSON and Argilla v2 record dicts.

Every export streams (annotation.selectors.exports reads in chunks from server-side
cursors), and is read inside one transaction, under REPEATABLE READ on PostgreSQL, so
the rows are one consistent picture even though the Parquet export reads them twice.
Annotators are pseudonyms throughout. Opening an export is audited.
"""

import io
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from django.core.exceptions import ValidationError
from django.db import connection, transaction

from annotation.conversations import is_conversation
from annotation.models import Dataset, GoldLabel, LabelSchema, TaskType
from annotation.schemas import normalize_config
from annotation.selectors import current_schema
from annotation.selectors import exports as rows_of
from annotation.services import hf_export
from core.db import on_postgresql
from core.models import Project, User
from core.services.audit import audit_record
from core.spreadsheets import csv_writer

KIND_ANNOTATIONS, KIND_ITEMS = "annotations", "items"
# Which formats each kind of export comes in.
EXPORT_FORMATS = {
    KIND_ANNOTATIONS: ("jsonl", "csv", "hf"),
    KIND_ITEMS: ("jsonl", "csv", "hf", "labelstudio", "argilla"),
}
FORMAT_LABELS = {
    "jsonl": "JSON Lines",
    "csv": "CSV",
    "hf": "Hugging Face datasets (Parquet + card, zip)",
    "labelstudio": "Label Studio JSON",
    "argilla": "Argilla v2 records (JSON Lines)",
}
_CONTENT = {
    "jsonl": ("application/x-ndjson", "jsonl"),
    "csv": ("text/csv; charset=utf-8", "csv"),
    "hf": ("application/zip", "zip"),
    "labelstudio": ("application/json", "json"),
    "argilla": ("application/x-ndjson", "jsonl"),
}
# Argilla user ids are UUIDs: each pseudonym gets a fixed one (uuid5), which says no more
# about the person than the pseudonym does.
ARGILLA_NAMESPACE = uuid.UUID("8d2f3c4e-5b7a-4f0e-9c1d-2a6b8e4f7c30")
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


@dataclass(frozen=True)
class ExportStream:
    chunks: Iterator[bytes]
    content_type: str
    filename: str


def export_formats_validate(kind: str, fmt: str) -> None:
    if kind not in EXPORT_FORMATS:
        raise ValidationError({"kind": f"is one of {', '.join(EXPORT_FORMATS)}"})
    if fmt not in EXPORT_FORMATS[kind]:
        raise ValidationError(
            {"fmt": f"{kind} export as {', '.join(EXPORT_FORMATS[kind])}, not {fmt!r}"}
        )


def bulk_export_open(
    *, actor: User, project: Project, kind: str, fmt: str, dataset: Dataset | None = None
) -> ExportStream:
    """Check the request, record it in the audit log, and return the export's stream;
    the rows are read as the stream is consumed. `dataset` (of `project`, checked by the
    caller) narrows the export to its items."""
    export_formats_validate(kind, fmt)
    dataset_id = dataset.pk if dataset is not None else None
    audit_record(
        actor=actor,
        action="annotation.export",
        target=dataset if dataset is not None else project,
        project_id=project.pk,
        data={"kind": kind, "format": fmt, "dataset": dataset_id},
    )
    content_type, extension = _CONTENT[fmt]
    scope = f"dataset-{dataset_id}" if dataset_id else project.slug
    return ExportStream(
        chunks=_consistent(lambda: _chunks(project, kind, fmt, dataset_id)),
        content_type=content_type,
        filename=f"{kind}-{scope}.{extension}",
    )


def _consistent(make: Callable[[], Iterator[bytes]]) -> Iterator[bytes]:
    """The chunks read in one transaction: REPEATABLE READ where it is the outermost one
    (a test's or a caller's transaction is kept as it is)."""
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost and on_postgresql():
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        yield from make()


def _chunks(project: Project, kind: str, fmt: str, dataset_id: int | None) -> Iterator[bytes]:
    columns: tuple[str, ...]
    if kind == KIND_ANNOTATIONS:

        def rows() -> Iterator[dict[str, Any]]:
            return rows_of.annotation_export_rows(project=project, dataset_id=dataset_id)

        columns = rows_of.ANNOTATION_COLUMNS
    else:

        def rows() -> Iterator[dict[str, Any]]:
            return rows_of.item_export_rows(project=project, dataset_id=dataset_id)

        columns = rows_of.ITEM_COLUMNS
    if fmt == "jsonl":
        return _jsonl(rows())
    if fmt == "csv":
        return _csv(rows(), columns)
    schema = _schema_of(project)
    if fmt == "labelstudio":
        return _label_studio(rows(), schema)
    if fmt == "argilla":
        return _argilla(rows(), schema)
    return _hf(project, kind, rows, dataset_id)


def _jsonl(rows: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    for row in rows:
        yield (_encode(row) + "\n").encode("utf-8")


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return _encode(value)
    return value


def _csv(rows: Iterator[dict[str, Any]], columns: tuple[str, ...]) -> Iterator[bytes]:
    buffer = io.StringIO()
    # Cells a spreadsheet would run as formulas (=, +, -, @) are quoted (core.spreadsheets).
    writer = csv_writer(buffer)
    writer.writerow(columns)
    for number, row in enumerate(rows, start=1):
        writer.writerow([_csv_cell(row[c]) for c in columns])
        if number % 500 == 0:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


@dataclass(frozen=True)
class _Schema:
    task_type: str | None
    config: dict[str, Any]


def _schema_of(project: Project) -> _Schema:
    schema: LabelSchema | None = current_schema(project)
    if schema is None:
        return _Schema(None, {})
    return _Schema(schema.task_type, normalize_config(schema.task_type, schema.config))


# --- Label Studio --------------------------------------------------------------------


def label_studio_result(schema: _Schema, value: dict[str, Any] | None) -> list[dict[str, Any]]:
    """An answer as Label Studio result regions: choices for labels, matches and the best
    response, ratings per criterion, text areas for written answers and reasons. The
    control names are the answer's keys; the object they label is the schema's field."""
    if not value:
        return []
    config = schema.config
    target = (
        config.get("text_field") or config.get("prompt_field") or config.get("left_field") or "text"
    )

    def region(name: str, kind: str, content: dict[str, Any]) -> dict[str, Any]:
        return {"from_name": name, "to_name": target, "type": kind, "value": content}

    result = []
    if "labels" in value:
        result.append(region("label", "choices", {"choices": list(value["labels"])}))
    if "match" in value:
        result.append(region("match", "choices", {"choices": [value["match"]]}))
    if "best" in value:
        result.append(region("best", "choices", {"choices": [str(value["best"])]}))
    if "ranking" in value:
        ranking = ",".join(str(i) for i in value["ranking"])
        result.append(region("ranking", "textarea", {"text": [ranking]}))
    for criterion, score in (value.get("ratings") or {}).items():
        result.append(region(criterion, "rating", {"rating": score}))
    if value.get("response"):
        result.append(region("response", "textarea", {"text": [value["response"]]}))
    if value.get("steps"):
        result.append(region("steps", "textarea", {"text": list(value["steps"])}))
    if value.get("reason"):
        result.append(region("reason", "textarea", {"text": [value["reason"]]}))
    return result


def label_studio_task(row: dict[str, Any], schema: _Schema) -> dict[str, Any]:
    """One item as a Label Studio task: `data` is the payload (a honeypot's known answer
    under `gold_answer`, as the importer reads it), `meta` the item's metadata, each answer
    an annotation, an adjudicated gold label a ground-truth annotation and any other gold
    label a prediction. Keys Label Studio does not know (`external_id`, `status`,
    `annotator`) ride along for our own importer and for readers."""
    data = dict(row["payload"] or {})
    if row["honeypot_answer"] is not None:
        data["gold_answer"] = row["honeypot_answer"]
    annotations = [
        {
            "result": label_studio_result(schema, label["value"]),
            "created_at": label["submitted_at"],
            "lead_time": label["seconds_spent"],
            "was_cancelled": False,
            "ground_truth": False,
            "annotator": label["annotator"],
        }
        for label in row["annotations"]
    ]
    predictions = []
    method = row["gold_method"]
    if method == GoldLabel.Method.ADJUDICATED:
        annotations.append(
            {
                "result": label_studio_result(schema, row["gold_label"]),
                "was_cancelled": False,
                "ground_truth": True,
                "annotator": row["gold_decided_by"],
            }
        )
    elif method is not None:
        predictions.append(
            {
                "model_version": f"gold-{method}",
                "score": 1.0,
                "result": label_studio_result(schema, row["gold_label"]),
            }
        )
    return {
        "id": row["item_id"],
        "external_id": row["external_id"],
        "status": row["status"],
        "data": data,
        "meta": row["metadata"],
        "annotations": annotations,
        "predictions": predictions,
    }


def _label_studio(rows: Iterator[dict[str, Any]], schema: _Schema) -> Iterator[bytes]:
    """A JSON list of tasks, one task to a line, written as the rows arrive."""
    separator = b"[\n"
    for row in rows:
        yield separator + _encode(label_studio_task(row, schema)).encode("utf-8")
        separator = b",\n"
    yield b"[]\n" if separator == b"[\n" else b"\n]\n"


# --- Argilla ---------------------------------------------------------------------------


def argilla_answers(schema: _Schema, value: dict[str, Any] | None) -> dict[str, Any]:
    """An answer as Argilla question values: `label` (LabelQuestion) or `labels`
    (MultiLabelQuestion), `match`, `best` (the response index as text), `ranking`
    (RankingQuestion), one RatingQuestion per criterion, `response`, `step_<n>` and
    `reason` (TextQuestion)."""
    if not value:
        return {}
    answers: dict[str, Any] = {}
    if "labels" in value:
        labels = list(value["labels"])
        if schema.config.get("multi"):
            answers["labels"] = labels
        elif labels:
            answers["label"] = labels[0]
    if "match" in value:
        answers["match"] = value["match"]
    if "best" in value:
        answers["best"] = str(value["best"])
    if "ranking" in value:
        answers["ranking"] = [str(i) for i in value["ranking"]]
    answers.update(value.get("ratings") or {})
    if value.get("response"):
        answers["response"] = value["response"]
    for number, step in enumerate(value.get("steps") or []):
        answers[f"step_{number}"] = step
    if value.get("reason"):
        answers["reason"] = value["reason"]
    return answers


def _argilla_field(value: Any) -> Any:
    # Text fields take text, chat fields a conversation; anything else goes as JSON text.
    if isinstance(value, str) or is_conversation(value):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def argilla_user_id(pseudonym: str | None) -> str:
    return str(uuid.uuid5(ARGILLA_NAMESPACE, pseudonym or "unknown"))


def argilla_record(row: dict[str, Any], schema: _Schema) -> dict[str, Any]:
    """One item as the dict `argilla.Record.from_dict` reads (Record.to_dict's shape):
    payload fields as fields, each answer as submitted responses of its annotator, the
    gold label as the suggestion of the method that reached it."""
    responses: dict[str, list[dict[str, Any]]] = {}
    for label in row["annotations"]:
        user_id = argilla_user_id(label["annotator"])
        for question, answer in argilla_answers(schema, label["value"]).items():
            responses.setdefault(question, []).append(
                {"value": answer, "user_id": user_id, "status": "submitted"}
            )
    agent = f"tuning-portal/{row['gold_method']}" if row["gold_method"] else None
    suggestions = {
        question: {"value": answer, "score": None, "agent": agent}
        for question, answer in argilla_answers(schema, row["gold_label"]).items()
    }
    metadata = {
        **(row["metadata"] or {}),
        "item_id": row["item_id"],
        "dataset_id": row["dataset_id"],
        "external_id": row["external_id"],
        "status": row["status"],
    }
    return {
        "id": str(row["item_id"]),
        "fields": {k: _argilla_field(v) for k, v in (row["payload"] or {}).items()},
        "metadata": metadata,
        "suggestions": suggestions,
        "responses": responses,
        "vectors": {},
        "_server_id": None,
    }


def _argilla(rows: Iterator[dict[str, Any]], schema: _Schema) -> Iterator[bytes]:
    for row in rows:
        yield (_encode(argilla_record(row, schema)) + "\n").encode("utf-8")


# --- Hugging Face datasets -------------------------------------------------------------


def _item_hf_row(row: dict[str, Any]) -> dict[str, Any]:
    """An item row with its payload's fields as columns of their own (a field named like
    one of ours is kept as `data_<name>`)."""
    flat = {k: v for k, v in row.items() if k != "payload"}
    for name, value in (row["payload"] or {}).items():
        flat[f"data_{name}" if name in rows_of.ITEM_COLUMNS else name] = value
    return flat


def _hf(
    project: Project,
    kind: str,
    rows: Callable[[], Iterator[dict[str, Any]]],
    dataset_id: int | None,
) -> Iterator[bytes]:
    datasets = list(Dataset.objects.filter(project=project).order_by("pk"))
    if dataset_id is not None:
        datasets = [d for d in datasets if d.pk == dataset_id]
    if kind == KIND_ITEMS:

        def flat_rows() -> Iterator[dict[str, Any]]:
            return (_item_hf_row(row) for row in rows())

        count_by: tuple[str, ...] = ("status",)
    else:
        flat_rows = rows
        count_by = ("stage",)

    def card(schema: pa.Schema, plan: hf_export.ColumnPlan, written: hf_export.Written) -> str:
        return _card(project, kind, datasets, schema, plan, written)

    return hf_export.hf_zip_chunks(flat_rows, card=card, count_by=count_by)


_CARD_ABOUT = {
    KIND_ITEMS: (
        "Every item with its current status and its labels: the payload's fields as "
        "columns, `status` ({statuses}), the gold label and how it was reached "
        "(`gold_method`), and each live answer in `annotations`."
    ),
    KIND_ANNOTATIONS: (
        "Every live answer, one row each: the annotators' answers (`stage` primary) and "
        "the adjudicators' gold labels (`stage` adjudication), with created and submitted "
        "times, the lead time in seconds (`seconds_spent`, and whether the browser or the "
        "server measured it), and the schema and guideline versions the answer was given "
        "under."
    ),
}


def _card(
    project: Project,
    kind: str,
    datasets: list[Dataset],
    schema: pa.Schema,
    plan: hf_export.ColumnPlan,
    written: hf_export.Written,
) -> str:
    about = _CARD_ABOUT[kind].format(statuses=", ".join(rows_of.ITEM_STATUSES))
    label_schema = current_schema(project)
    if label_schema is not None:
        about += f" Task: {TaskType(label_schema.task_type).label}."
    lines = [
        hf_export.card_header(
            license=hf_export.card_yaml_license([d.license for d in datasets]),
            pretty_name=f"{project.name}: {kind}",
        ),
        f"# {project.name}: {kind}",
        "",
        f"Exported from the Tuning Portal. {about}",
        "",
        f"Rows: {written.rows}.",
        "",
    ]
    for name, counts in written.counts.items():
        if counts:
            shown = ", ".join(f"{k}: {n}" for k, n in sorted(counts.items()))
            lines += [f"By `{name}`: {shown}.", ""]
    lines += [
        "## Annotators",
        "",
        "Annotators appear only as pseudonyms (`A-` and six hex digits): stable within this "
        "project, keyed by a secret of the project, never a username, an email or a user id.",
        "",
        "## Columns",
        "",
        hf_export.schema_table(schema, plan),
        "",
    ]
    if plan.json_columns:
        names = ", ".join(f"`{c}`" for c in sorted(plan.json_columns))
        lines += [
            f"Columns whose values have no single type are JSON text: {names}.",
            "",
        ]
    lines += ["## Source datasets", ""]
    for d in datasets:
        generated = [
            part
            for part, flag in (
                ("prompts", d.synthetic or d.prompt_synthetic),
                ("responses", d.synthetic or d.response_synthetic),
            )
            if flag
        ]
        synthetic = f"model-generated {' and '.join(generated)}" if generated else "not synthetic"
        lines.append(
            f"- {d.name} (id {d.pk}): licence {d.license}; {d.source_description.strip()}; "
            f"consent basis: {d.consent_basis}; collected {d.collection_date}; {synthetic}; "
            f"file sha256 {d.file_sha256}"
        )
    lines += [
        "",
        "## Loading",
        "",
        "```python",
        "from datasets import load_dataset",
        'ds = load_dataset("path/to/this/folder", split="train")',
        "```",
        "",
    ]
    return "\n".join(lines)
