"""Streaming parsers for dataset files: JSON Lines, CSV and Label Studio task exports.

Rows are yielded one at a time so a million-row file never sits in memory; anything
wrong stops the parse with an ImportRefused naming the file, line and field."""

import codecs
import csv
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import PurePath
from typing import Any, BinaryIO

from governance.models import canonical_json


class ImportFormat(StrEnum):
    JSONL = "jsonl"
    CSV = "csv"
    LABEL_STUDIO = "labelstudio"


EXTENSIONS = {
    ".jsonl": ImportFormat.JSONL,
    ".ndjson": ImportFormat.JSONL,
    ".csv": ImportFormat.CSV,
    ".json": ImportFormat.LABEL_STUDIO,
}


@dataclass(frozen=True)
class ParsedRow:
    row_number: int
    payload: dict[str, Any]
    metadata: dict[str, str]
    content_hash: str
    external_id: str | None = None
    prior_annotations: tuple = field(default=())


class ImportRefused(Exception):  # noqa: N818 - it reads as what happened to the file
    def __init__(
        self, *, file: str | None, line: int | None = None, field: str | None = None, reason: str
    ):
        self.file, self.line, self.field, self.reason = file, line, field, reason
        super().__init__(reason)

    def __str__(self) -> str:
        parts = [
            p
            for p in (
                self.file,
                f"line {self.line}" if self.line else None,
                f"field {self.field!r}" if self.field else None,
            )
            if p
        ]
        return ", ".join(parts) + (": " if parts else "") + self.reason


def detect_format(filename: str) -> ImportFormat:
    suffix = PurePath(filename).suffix.lower()
    if suffix not in EXTENSIONS:
        raise ImportRefused(
            file=filename,
            reason=(
                f"unsupported file type {suffix or '(none)'}; use .jsonl, .csv or a Label Studio "
                ".json export"
            ),
        )
    return EXTENSIONS[suffix]


def content_hash(payload: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(payload)).hexdigest()


def file_sha256(stream: BinaryIO, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    while chunk := stream.read(chunk_size):
        digest.update(chunk)
    stream.seek(0)
    return digest.hexdigest()


class _Lines:
    """Decoded lines of a binary stream with their numbers, counting bytes for the limit."""

    def __init__(self, stream: BinaryIO, filename: str, max_bytes: int | None):
        self.stream, self.filename, self.max_bytes = stream, filename, max_bytes
        self.bytes_read = 0
        self.number = 0

    def __iter__(self) -> Iterator[str]:
        for raw in self.stream:
            self.number += 1
            self.bytes_read += len(raw)
            if self.max_bytes is not None and self.bytes_read > self.max_bytes:
                raise ImportRefused(
                    file=self.filename,
                    reason=f"file is larger than the limit of {self.max_bytes} bytes",
                )
            if self.number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise ImportRefused(
                    file=self.filename,
                    line=self.number,
                    reason=(
                        f"not valid UTF-8 (byte 0x{raw[error.start]:02x} at column "
                        f"{error.start + 1}); save the file as UTF-8"
                    ),
                ) from None


def _split(
    record: dict[str, Any], *, filename: str, line: int, metadata_fields: Sequence[str]
) -> tuple[dict, dict[str, str], str | None]:
    payload = dict(record)
    metadata: dict[str, str] = {}
    meta = payload.pop("meta", None)
    if meta is not None and not isinstance(meta, dict):
        raise ImportRefused(file=filename, line=line, field="meta", reason="must be an object")
    for name, value in [
        *(meta or {}).items(),
        *((f, payload.pop(f)) for f in metadata_fields if f in payload),
    ]:
        if isinstance(value, (dict, list)):
            raise ImportRefused(
                file=filename,
                line=line,
                field=name,
                reason="metadata values must be text or numbers",
            )
        metadata[str(name)] = "" if value is None else str(value)
    external = payload.pop("id", None)
    return payload, metadata, None if external is None else str(external)


def _check_required(payload: dict, required: Sequence[str], filename: str, line: int) -> None:
    for name in required:
        if payload.get(name) in (None, ""):
            raise ImportRefused(
                file=filename, line=line, field=name, reason="missing required field"
            )


def _row(
    record: dict,
    *,
    filename: str,
    line: int,
    required: Sequence[str],
    metadata_fields: Sequence[str],
    prior: tuple = (),
) -> ParsedRow:
    payload, metadata, external = _split(
        record, filename=filename, line=line, metadata_fields=metadata_fields
    )
    _check_required(payload, required, filename, line)
    return ParsedRow(line, payload, metadata, content_hash(payload), external, prior)


def _iter_jsonl(lines: _Lines, filename: str, required, metadata_fields) -> Iterator[ParsedRow]:
    for text in lines:
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as error:
            raise ImportRefused(
                file=filename,
                line=lines.number,
                reason=(f"malformed JSON at column {error.colno}: {error.msg}"),
            ) from None
        if not isinstance(record, dict):
            raise ImportRefused(
                file=filename,
                line=lines.number,
                reason=(f"expected a JSON object, got {type(record).__name__}"),
            )
        yield _row(
            record,
            filename=filename,
            line=lines.number,
            required=required,
            metadata_fields=metadata_fields,
        )


def _iter_csv(lines: _Lines, filename: str, required, metadata_fields) -> Iterator[ParsedRow]:
    reader = csv.reader(iter(lines))
    try:
        header = next(reader)
    except StopIteration:
        raise ImportRefused(
            file=filename, line=1, reason="empty file; a header row is needed"
        ) from None
    names = [h.strip() for h in header]
    if any(not n for n in names):
        raise ImportRefused(file=filename, line=1, reason="a column has an empty name")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ImportRefused(
            file=filename, line=1, field=duplicates[0], reason="column name appears twice"
        )
    start = lines.number + 1
    for values in reader:
        line, start = start, lines.number + 1
        if not values:
            continue
        if len(values) != len(names):
            raise ImportRefused(
                file=filename,
                line=line,
                reason=(f"expected {len(names)} fields, found {len(values)}"),
            )
        yield _row(
            dict(zip(names, values, strict=True)),
            filename=filename,
            line=line,
            required=required,
            metadata_fields=metadata_fields,
        )


def _iter_label_studio(
    stream: BinaryIO, filename: str, required, metadata_fields, max_bytes: int | None
) -> Iterator[ParsedRow]:
    # A task export is one JSON document, so it is read whole, bounded by the size limit.
    raw = stream.read() if max_bytes is None else stream.read(max_bytes + 1)
    if max_bytes is not None and len(raw) > max_bytes:
        raise ImportRefused(
            file=filename, reason=f"file is larger than the limit of {max_bytes} bytes"
        )
    try:
        document = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise ImportRefused(
            file=filename, reason="not valid UTF-8; save the file as UTF-8"
        ) from None
    except json.JSONDecodeError as error:
        raise ImportRefused(
            file=filename,
            line=error.lineno,
            reason=f"malformed JSON at column {error.colno}: {error.msg}",
        ) from None
    tasks = [document] if isinstance(document, dict) and "data" in document else document
    if not isinstance(tasks, list):
        raise ImportRefused(file=filename, reason="expected a list of Label Studio tasks")
    for number, task in enumerate(tasks, start=1):
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise ImportRefused(
                file=filename, line=number, field="data", reason="each task needs a 'data' object"
            )
        record = dict(task["data"])
        if "meta" in task:
            record["meta"] = task["meta"]
        if "id" in task:
            record["id"] = task["id"]
        prior = tuple(
            a.get("result", []) for a in task.get("annotations") or [] if isinstance(a, dict)
        )
        yield _row(
            record,
            filename=filename,
            line=number,
            required=required,
            metadata_fields=metadata_fields,
            prior=prior,
        )


def iter_rows(
    stream: BinaryIO,
    *,
    filename: str,
    fmt: ImportFormat,
    required_fields: Sequence[str] = (),
    metadata_fields: Sequence[str] = (),
    max_bytes: int | None = None,
) -> Iterator[ParsedRow]:
    """Yield the file's rows in order; raise ImportRefused at the first bad one."""
    if fmt == ImportFormat.LABEL_STUDIO:
        yield from _iter_label_studio(stream, filename, required_fields, metadata_fields, max_bytes)
        return
    lines = _Lines(stream, filename, max_bytes)
    if fmt == ImportFormat.JSONL:
        yield from _iter_jsonl(lines, filename, required_fields, metadata_fields)
    else:
        yield from _iter_csv(lines, filename, required_fields, metadata_fields)
