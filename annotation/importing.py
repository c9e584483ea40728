"""Streaming parsers for dataset files: JSON Lines, CSV and Label Studio task exports
(Parquet, Arrow and Hugging Face datasets folders are read by annotation.importing_arrow).

JSON Lines and CSV are read line by line, and a Label Studio export (one JSON document)
task by task through ijson, so a million-row file never sits in memory. Anything wrong
stops the parse with an ImportRefused naming the file, line (or task) and field.

This module is pure: no ORM, no settings, nothing but the standard library and ijson.
"""

import codecs
import csv
import hashlib
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from pathlib import PurePath
from typing import IO, Any

import ijson

from annotation import conversations
from annotation.conversations import ConversationError
from core import strict_json
from core.strict_json import JSONLimitError


class ImportFormat(StrEnum):
    JSONL = "jsonl"
    CSV = "csv"
    LABEL_STUDIO = "labelstudio"
    # Read by annotation.importing_arrow, from a file on disk (Parquet needs to seek).
    PARQUET = "parquet"
    ARROW = "arrow"
    HF_DATASET = "hf_dataset"  # a zip of a datasets folder (save_to_disk, or Parquet files)


TABLE_FORMATS = (ImportFormat.PARQUET, ImportFormat.ARROW, ImportFormat.HF_DATASET)


EXTENSIONS = {
    ".jsonl": ImportFormat.JSONL,
    ".ndjson": ImportFormat.JSONL,
    ".csv": ImportFormat.CSV,
    ".json": ImportFormat.LABEL_STUDIO,
    ".parquet": ImportFormat.PARQUET,
    ".arrow": ImportFormat.ARROW,
    ".zip": ImportFormat.HF_DATASET,
}


@dataclass(frozen=True)
class ParsedRow:
    # JSONL: the line; CSV: the line the record starts on (the header is line 1);
    # Label Studio: the 1-based index of the task in the export.
    row_number: int
    payload: dict[str, Any]
    metadata: dict[str, str]
    content_hash: str
    external_id: str | None = None
    # Label Studio only: the raw `result` list of each existing, non-cancelled annotation.
    prior_annotations: tuple[list, ...] = ()
    # Read under a PreferenceShape: the fields of responses that are empty ("responses[1]"),
    # and the number of turns of a conversational prompt (0: plain text or no shape).
    empty_responses: tuple[str, ...] = ()
    prompt_turns: int = 0


class ImportRefused(Exception):  # noqa: N818 - it reads as what happened to the file
    """Why a file was refused, pointing at the place to fix.

    `unit` names what `line` counts: "line" for JSONL and CSV, "task" for the task index
    in a Label Studio export.
    """

    def __init__(
        self,
        *,
        file: str | None,
        line: int | None = None,
        field: str | None = None,
        reason: str,
        unit: str = "line",
    ):
        self.file, self.line, self.field, self.reason, self.unit = file, line, field, reason, unit
        super().__init__(reason)

    def __str__(self) -> str:
        where = ", ".join(
            part
            for part in (
                self.file,
                None if self.line is None else f"{self.unit} {self.line}",
                None if self.field is None else f"field {self.field!r}",
            )
            if part
        )
        return f"{where}: {self.reason}" if where else self.reason

    def __reduce__(self):
        # Keyword-only arguments would otherwise be lost when a worker pickles the error.
        return _rebuild_refused, (self.file, self.line, self.field, self.reason, self.unit)


def _rebuild_refused(file, line, field, reason, unit) -> ImportRefused:
    return ImportRefused(file=file, line=line, field=field, reason=reason, unit=unit)


EMPTY_RESPONSE_POLICIES = ("keep", "refuse")
_PAIR_FIELDS = ("prompt", "chosen", "rejected")


@dataclass(frozen=True)
class PreferenceShape:
    """How an import reads the rows of a preference task (fields from the project's label
    schema, the mapping from the upload): conversational prompts are checked turn by turn,
    empty responses are listed or refused, and with `pairs` each row's chosen/rejected pair
    (hh-rlhf transcripts or TRL's preference shapes) becomes the prompt and its two
    replies, the chosen one first."""

    prompt_field: str = "prompt"
    responses_field: str = "responses"
    empty_responses: str = "keep"  # or "refuse": one empty response refuses the file
    pairs: bool = False

    def apply(
        self, payload: dict[str, Any], refuse: partial[ImportRefused]
    ) -> tuple[dict[str, Any], tuple[str, ...], int]:
        """(payload, fields of its empty responses, turns of its prompt); raises the
        refusal naming the field."""
        try:
            if self.pairs:
                prompt, chosen, rejected = conversations.preference_pair(payload)
                rest = {
                    k: v for k, v in payload.items() if k not in ("prompt", "chosen", "rejected")
                }
                payload = {
                    **rest,
                    self.prompt_field: prompt,
                    self.responses_field: [chosen, rejected],
                }
            prompt = payload.get(self.prompt_field)
            turns = 0
            if conversations.is_conversation(prompt):
                payload[self.prompt_field] = conversations.messages_checked(
                    prompt, self.prompt_field
                )
                turns = len(prompt)
        except ConversationError as error:
            raise refuse(field=error.field or None, reason=error.reason) from None
        responses = payload.get(self.responses_field)
        empty: list[str] = []
        if isinstance(responses, list):
            empty = [
                f"{self.responses_field}[{i}]"
                for i, response in enumerate(responses)
                if conversations.is_empty_response(response)
            ]
        if empty and self.empty_responses == "refuse":
            raise refuse(
                field=empty[0],
                reason="is empty, and the label schema refuses rows with an empty response",
            )
        return payload, tuple(empty), turns


@dataclass
class ImportReport:
    """What an import noticed in the rows it kept, for the upload's report and the audit
    log: rows with an empty response (counted, and listed by line up to LISTED) and rows
    whose prompt is a conversation."""

    LISTED = 500

    responses_field: str | None = None  # None: responses were not checked (no shape)
    empty_response_rows: int = 0
    empty_responses: list[dict[str, Any]] = field(default_factory=list)
    conversations: int = 0

    def note(self, line: int, empty: tuple[str, ...], turns: int) -> None:
        if empty:
            self.empty_response_rows += 1
            if len(self.empty_responses) < self.LISTED:
                self.empty_responses.append({"line": line, "fields": list(empty)})
        if turns:
            self.conversations += 1

    def note_row(self, row: "ParsedRow") -> None:
        self.note(row.row_number, row.empty_responses, row.prompt_turns)

    def as_dict(self) -> dict[str, Any]:
        return {
            "responses_field": self.responses_field,
            "empty_response_rows": self.empty_response_rows,
            "empty_responses": self.empty_responses,
            "empty_responses_listed": len(self.empty_responses),
            "conversations": self.conversations,
        }


def _shaped(
    payload: dict[str, Any], shape: PreferenceShape | None, refuse: partial[ImportRefused]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The payload as stored and the ParsedRow fields its shape adds."""
    if shape is None:
        return payload, {}
    payload, empty, turns = shape.apply(payload, refuse)
    return payload, {"empty_responses": empty, "prompt_turns": turns}


def detect_format(filename: str) -> ImportFormat:
    suffix = PurePath(filename).suffix.lower()
    if suffix not in EXTENSIONS:
        raise ImportRefused(
            file=filename,
            reason=(
                f"unsupported file type {suffix or '(no extension)'}; use .jsonl, .ndjson, .csv, "
                "a Label Studio .json export, .parquet, .arrow, or a .zip of a Hugging Face "
                "datasets folder"
            ),
        )
    return EXTENSIONS[suffix]


# The same bytes as governance.models.canonical_json; a test pins the two together. json.dumps
# with keyword arguments builds a new JSONEncoder on every call (about 0.9 µs, a sixth of the
# time per short row), and sharing one also keeps this module free of Django imports.
_canonical_encode = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
).encode


def canonical_text(value: Any) -> str:
    return _canonical_encode(value)


def content_hash(payload: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical_encode(payload).encode("utf-8")).hexdigest()


def file_sha256(stream: IO[bytes], chunk_size: int = 1 << 20) -> str:
    """Hash the whole of a seekable stream and leave it rewound for the parser."""
    stream.seek(0)
    digest = hashlib.sha256()
    while chunk := stream.read(chunk_size):
        digest.update(chunk)
    stream.seek(0)
    return digest.hexdigest()


def _malformed(error: json.JSONDecodeError) -> str:
    # The messages end in "at" because json appends the position, which we report ourselves.
    what = error.msg.removesuffix(" at").removesuffix(" starting")
    return f"malformed JSON at column {error.colno}: {what}"


_JSON_TYPE_NAMES = {
    list: "a list",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "true/false",
    type(None): "null",
}


# PostgreSQL text and jsonb cannot hold NUL, so such a row would fail far from its line.
_NUL_REASON = "contains a NUL character, which the database cannot store"


def _bounded_lines(stream: IO[bytes], filename: str, max_bytes: int) -> Iterator[bytes]:
    budget = max_bytes
    # readline with a limit stops at the limit even inside one endless line.
    while raw := stream.readline(budget + 1):
        budget -= len(raw)
        if budget < 0:
            raise ImportRefused(
                file=filename, reason=f"file is larger than the limit of {max_bytes} bytes"
            )
        yield raw


def _raw_lines(stream: IO[bytes], filename: str, max_bytes: int | None) -> Iterator[bytes]:
    lines = iter(stream) if max_bytes is None else _bounded_lines(stream, filename, max_bytes)
    first = next(lines, b"")
    if first.startswith(codecs.BOM_UTF8):
        first = first[len(codecs.BOM_UTF8) :]
    if first:
        yield first
    # Not `yield from`: closing this generator early would then close the caller's stream.
    for raw in lines:  # noqa: UP028
        yield raw


def _not_utf8(filename: str, line: int, raw: bytes, error: UnicodeDecodeError) -> ImportRefused:
    line_start = raw.rfind(b"\n", 0, error.start) + 1
    column = len(raw[line_start : error.start].decode("utf-8")) + 1
    return ImportRefused(
        file=filename,
        line=line,
        reason=(
            f"not valid UTF-8 (byte 0x{raw[error.start]:02x} at column {column}); "
            "save the file as UTF-8"
        ),
    )


def _decoded_lines(raw_lines: Iterable[bytes], filename: str) -> Iterator[str]:
    for number, raw in enumerate(raw_lines, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise _not_utf8(filename, number, raw, error) from None
        if "\x00" in text:
            raise ImportRefused(file=filename, line=number, reason=_NUL_REASON)
        yield text


def _contains_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_contains_nul(k) or _contains_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_contains_nul(v) for v in value)
    return False


def _as_text(value: Any, field: str, refuse: partial[ImportRefused]) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    raise refuse(field=field, reason="must be text or a number, not a list or object")


def _take_metadata(
    payload: dict[str, Any],
    meta: Any,
    external: Any,
    *,
    metadata_fields: Sequence[str],
    refuse: partial[ImportRefused],
) -> tuple[dict[str, str], str | None]:
    """Move `metadata_fields` out of `payload` (in place); return the metadata and external id."""
    metadata: dict[str, str] = {}
    if meta is not None:
        if type(meta) is not dict:
            raise refuse(field="meta", reason="must be an object of text values")
        for name, value in meta.items():
            metadata[name] = value if type(value) is str else _as_text(value, name, refuse)
    for name in metadata_fields:
        if name in payload:
            value = payload.pop(name)
            metadata[name] = value if type(value) is str else _as_text(value, name, refuse)
    if external is None or external == "":
        return metadata, None
    return metadata, _as_text(external, "id", refuse)


def _check_required(
    payload: dict[str, Any],
    metadata: dict[str, str],
    external_id: str | None,
    required: Sequence[str],
    refuse: partial[ImportRefused],
) -> None:
    for name in required:
        value = payload.get(name)
        if value is None or value == "":
            # A required field the caller also moved to the metadata, or the id, counts too.
            if metadata.get(name) or (name == "id" and external_id):
                continue
            raise refuse(field=name, reason="missing required field")


def _hash(payload: dict[str, Any], refuse: partial[ImportRefused]) -> str:
    try:
        return hashlib.sha256(_canonical_encode(payload).encode("utf-8")).hexdigest()
    except UnicodeEncodeError:
        # A lone "\ud800"-style escape is valid JSON but has no UTF-8 form to store or hash.
        raise refuse(reason="contains an unpaired UTF-16 surrogate escape") from None


def _jsonl_row(
    number: int,
    raw: bytes,
    filename: str,
    required: Sequence[str],
    metadata_fields: Sequence[str],
    shape: PreferenceShape | None = None,
) -> ParsedRow | None:
    """Line `number` of a JSON Lines file as a row; None for a blank line."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _not_utf8(filename, number, raw, error) from None
    if text.isspace():
        return None
    refuse = partial(ImportRefused, file=filename, line=number)
    try:
        # NaN, Infinity, 1e400, 5,000-digit integers and deep nesting are refused here
        # with their field: PostgreSQL, the encryption or the stack would fail on them.
        record = strict_json.decode(text)
    except json.JSONDecodeError as error:
        raise refuse(reason=_malformed(error)) from None
    except JSONLimitError as error:
        raise refuse(field=error.path, reason=error.reason) from None
    if type(record) is not dict:
        kind = _JSON_TYPE_NAMES.get(type(record), type(record).__name__)
        raise refuse(reason=f"expected a JSON object, got {kind}")
    # The substring test is a cheap filter; only a hit pays for the walk.
    if "\\u0000" in text and _contains_nul(record):
        raise refuse(reason=_NUL_REASON)
    return record_row(number, record, required, metadata_fields, shape, refuse)


def record_row(
    number: int,
    record: dict[str, Any],
    required: Sequence[str],
    metadata_fields: Sequence[str],
    shape: PreferenceShape | None,
    refuse: partial[ImportRefused],
) -> ParsedRow:
    """A decoded record (a JSON object, or a table's row) as row `number`: its `meta` and
    `id` taken out, `metadata_fields` moved to the metadata, required fields checked and
    the shape applied. `record` is changed in place."""
    metadata, external_id = _take_metadata(
        record,
        record.pop("meta", None),
        record.pop("id", None),
        metadata_fields=metadata_fields,
        refuse=refuse,
    )
    if required:
        _check_required(record, metadata, external_id, required, refuse)
    record, notes = _shaped(record, shape, refuse)
    return ParsedRow(number, record, metadata, _hash(record, refuse), external_id, **notes)


def jsonl_lines(stream: IO[bytes], filename: str, max_bytes: int | None) -> Iterator[bytes]:
    """The raw lines of a JSON Lines file (a leading BOM dropped), refusing a file over
    `max_bytes` as soon as it is passed."""
    return _raw_lines(stream, filename, max_bytes)


def jsonl_rows(
    lines: Iterable[bytes],
    filename: str,
    required: Sequence[str],
    metadata_fields: Sequence[str],
    *,
    first_line: int = 1,
    shape: PreferenceShape | None = None,
) -> Iterator[ParsedRow]:
    """The rows of raw JSON Lines `lines`, the first of which is line `first_line` of the
    file (an import's worker process parses a chunk from the middle); blank lines count."""
    for number, raw in enumerate(lines, start=first_line):
        row = _jsonl_row(number, raw, filename, required, metadata_fields, shape)
        if row is not None:
            yield row


def _iter_jsonl(
    stream: IO[bytes],
    filename: str,
    required: Sequence[str],
    metadata_fields: Sequence[str],
    max_bytes: int | None,
    shape: PreferenceShape | None,
) -> Iterator[ParsedRow]:
    return jsonl_rows(
        _raw_lines(stream, filename, max_bytes), filename, required, metadata_fields, shape=shape
    )


def _csv_header(reader: Iterator[list[str]], filename: str) -> list[str]:
    refuse = partial(ImportRefused, file=filename, line=1)
    try:
        header = next(reader)
    except StopIteration:
        raise ImportRefused(
            file=filename, reason="the file is empty; a header row is needed"
        ) from None
    except csv.Error as error:
        raise refuse(reason=f"malformed CSV header: {error}") from None
    names = [name.strip() for name in header]
    if not names:
        raise refuse(reason="the first line must be the header row naming the columns")
    for position, name in enumerate(names, start=1):
        if not name:
            raise refuse(reason=f"column {position} of the header row has no name")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise refuse(field=name, reason="column name appears more than once in the header")
        seen.add(name)
    return names


def _iter_csv(
    stream: IO[bytes],
    filename: str,
    required: Sequence[str],
    metadata_fields: Sequence[str],
    max_bytes: int | None,
    shape: PreferenceShape | None,
) -> Iterator[ParsedRow]:
    # csv.reader pulls decoded lines one at a time and joins the lines of a quoted multi-line
    # field itself; its line_num counts the lines pulled, which gives each record's first line.
    # strict=True makes an unclosed quote an error instead of swallowing the rest of the file.
    lines = _decoded_lines(_raw_lines(stream, filename, max_bytes), filename)
    reader = csv.reader(lines, strict=True)
    names = _csv_header(reader, filename)
    width = len(names)
    id_index = names.index("id") if "id" in names else None
    metadata_columns = [(i, name) for i, name in enumerate(names) if name in metadata_fields]
    payload_columns = [
        (i, name) for i, name in enumerate(names) if i != id_index and name not in metadata_fields
    ]
    start = reader.line_num + 1
    try:
        for values in reader:
            number, start = start, reader.line_num + 1
            if not values or (len(values) == 1 and width > 1 and not values[0].strip()):
                continue  # a blank line
            refuse = partial(ImportRefused, file=filename, line=number)
            if len(values) != width:
                raise refuse(
                    reason=f"expected {width} fields as in the header, found {len(values)}"
                )
            payload = {name: values[i] for i, name in payload_columns}
            metadata = {name: values[i] for i, name in metadata_columns}
            external_id = (values[id_index] or None) if id_index is not None else None
            if required:
                _check_required(payload, metadata, external_id, required, refuse)
            payload, notes = _shaped(payload, shape, refuse)
            yield ParsedRow(number, payload, metadata, _hash(payload, refuse), external_id, **notes)
    except csv.Error as error:
        if "field limit" in str(error):
            reason = f"a field is longer than {csv.field_size_limit()} characters; use JSONL"
        elif "end of data" in str(error):
            reason = "a quoted field is never closed"
        else:
            reason = f"malformed CSV: {error}"
        raise ImportRefused(file=filename, line=start, reason=reason) from None


# A syntax error in an export up to this size is located exactly (line and column).
EXACT_SYNTAX_ERROR_BYTES = 8 * 1024**2


class _ExportReader:
    """The bytes of a Label Studio export for ijson, a leading BOM dropped, refused once
    past `max_bytes`; counts lines so that a syntax error can say where it is."""

    def __init__(self, stream: IO[bytes], filename: str, max_bytes: int | None):
        self.stream, self.filename, self.max_bytes = stream, filename, max_bytes
        self.read_bytes = 0
        self.lines_before_last = 1  # the line the last chunk read starts on
        self.lines_after_last = 1
        self.first = True

    def read(self, size: int = -1) -> bytes:
        if self.max_bytes is not None:
            # One byte past the limit is enough to refuse; never read further.
            room = self.max_bytes + 1 - self.read_bytes
            size = room if size < 0 else min(size, room)
        chunk = self.stream.read(size)
        if self.first:
            self.first = False
            if chunk.startswith(codecs.BOM_UTF8):
                chunk = chunk[len(codecs.BOM_UTF8) :]
        self.read_bytes += len(chunk)
        if self.max_bytes is not None and self.read_bytes > self.max_bytes:
            raise ImportRefused(
                file=self.filename,
                reason=f"file is larger than the limit of {self.max_bytes} bytes",
            )
        self.lines_before_last = self.lines_after_last
        self.lines_after_last += chunk.count(b"\n")
        return chunk

    def locate_syntax_error(self) -> ImportRefused | None:
        """The exact line and column of the error ijson met, from the standard library's
        decoder over what was read: only for a file read from the start that is small
        enough to decode whole; None otherwise."""
        seekable = getattr(self.stream, "seekable", lambda: False)()
        if not seekable or self.read_bytes > EXACT_SYNTAX_ERROR_BYTES:
            return None
        self.stream.seek(0)
        raw = self.stream.read(self.read_bytes + len(codecs.BOM_UTF8))
        raw = raw.removeprefix(codecs.BOM_UTF8)[: self.read_bytes]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            return _not_utf8(self.filename, raw.count(b"\n", 0, error.start) + 1, raw, error)
        try:
            strict_json.decode(text)
        except json.JSONDecodeError as error:
            return ImportRefused(file=self.filename, line=error.lineno, reason=_malformed(error))
        except JSONLimitError as error:
            return ImportRefused(file=self.filename, field=error.path, reason=error.reason)
        return None


_YAJL_REASONS = {
    "integer overflow": "an integer beyond 64 bits; write it as a string",
    "numeric (floating point) overflow": "a number out of range (it would be infinite)",
    "invalid bytes in UTF8 string": "not valid UTF-8; save the file as UTF-8",
}


class _TaskBuilder:
    """Builds each task of an export from ijson's events, keeping the path to where it
    is, so that a refusal names the task and the field within it."""

    def __init__(self, events: Iterator[tuple[str, Any]], reader: _ExportReader):
        self.events, self.reader = events, reader
        self.task = 0  # the task being read, 1-based; 0 before the first
        self.path: list[str | int] = []  # within the task

    def refused(self, reason: str, *, field: str | None = None) -> ImportRefused:
        if self.task:
            return ImportRefused(
                file=self.reader.filename, line=self.task, unit="task", field=field, reason=reason
            )
        return ImportRefused(file=self.reader.filename, field=field, reason=reason)

    def next_event(self) -> tuple[str, Any]:
        try:
            return next(self.events)
        except ijson.JSONError as error:
            raise self._syntax(error) from None

    def _syntax(self, error: Exception) -> ImportRefused:
        exact = self.reader.locate_syntax_error()
        if exact is not None and exact.field is None:
            return exact  # malformed or not UTF-8: the physical line and column
        field = strict_json.path_text(self.path)
        if exact is not None:
            # A value past a limit: the task and the field within it, as for other refusals.
            return self.refused(exact.reason, field=field)
        message = str(error).splitlines()[0] if str(error) else "the file ends too early"
        detail = message.split(": ", 1)[-1].strip()
        reason = _YAJL_REASONS.get(detail)
        if reason is not None:
            return self.refused(reason, field=field)
        first, last = self.reader.lines_before_last, self.reader.lines_after_last
        where = f"line {first}" if first == last else f"lines {first} to {last}"
        return self.refused(f"malformed JSON ({detail}), {where}", field=field)

    def value(self, event: str, value: Any, depth: int) -> Any:
        """The value that starts with (event, value), `depth` containers deep already."""
        if event == "number":
            if isinstance(value, float) and not math.isfinite(value):
                raise self.refused(_YAJL_REASONS["numeric (floating point) overflow"])
            return value
        if event not in ("start_map", "start_array"):
            return value
        root: dict | list = {} if event == "start_map" else []
        parents: list[tuple[dict | list, Any]] = []
        current, key = root, None
        self.path.append(0)  # placeholder for the first child
        while True:
            event, value = self.next_event()
            if event == "map_key":
                key = self.path[-1] = value
                continue
            if event in ("end_map", "end_array"):
                self.path.pop()
                if not parents:
                    return root
                current, key = parents.pop()
                if isinstance(current, list):
                    self.path[-1] = len(current)
                continue
            if isinstance(current, list):
                self.path[-1] = len(current)
            if event in ("start_map", "start_array"):
                if depth + len(parents) + 2 > strict_json.MAX_DEPTH:
                    raise self.refused(
                        f"nested more than {strict_json.MAX_DEPTH} levels deep",
                        field=strict_json.path_text(self.path),
                    )
                child: dict | list = {} if event == "start_map" else []
                if isinstance(current, list):
                    current.append(child)
                else:
                    current[key] = child
                parents.append((current, key))
                current, key = child, None
                self.path.append(0)
                continue
            if event == "number" and isinstance(value, float) and not math.isfinite(value):
                raise self.refused(
                    _YAJL_REASONS["numeric (floating point) overflow"],
                    field=strict_json.path_text(self.path),
                )
            if isinstance(current, list):
                current.append(value)
            else:
                current[key] = value

    def tasks(self) -> Iterator[tuple[int, Any]]:
        event, value = self.next_event()
        if event == "start_map":
            self.task = 1
            document = self.value(event, value, 0)
            self._end()
            if "data" not in document:
                self.task = 0
                raise self.refused(
                    "expected a Label Studio export (a JSON list of tasks), "
                    "got an object without 'data'"
                )
            yield 1, document
            return
        if event != "start_array":
            raise self.refused(
                "expected a Label Studio export (a JSON list of tasks), got not a list"
            )
        while True:
            self.task += 1
            self.path = []
            event, value = self.next_event()
            if event == "end_array":
                self.task = 0
                self._end()
                return
            yield self.task, self.value(event, value, 1)

    def _end(self) -> None:
        """Reads to the end, so that anything after the document is refused."""
        for _ in iter(self.next_event, None):  # pragma: no branch - raises or ends
            pass


def _label_studio_tasks(
    stream: IO[bytes], filename: str, max_bytes: int | None
) -> Iterator[tuple[int, Any]]:
    """(task number, task) for each task of an export, built as the file is read: an
    export is one JSON document, but only one task of it is in memory at a time."""
    reader = _ExportReader(stream, filename, max_bytes)
    # use_float: the C parser's arbitrary-size integers crash the process on one of more
    # digits than int() converts; with it, integers are 64-bit and floats are checked.
    events = ijson.basic_parse(reader, use_float=True)
    return _TaskBuilder(events, reader).tasks()


def _prior_annotations(task: dict, refuse: partial[ImportRefused]) -> tuple[list, ...]:
    annotations = task.get("annotations") or []
    if not isinstance(annotations, list):
        raise refuse(field="annotations", reason="must be a list")
    prior = []
    for annotation in annotations:
        if not isinstance(annotation, dict) or annotation.get("was_cancelled"):
            continue  # a skipped task carries no answer
        result = annotation.get("result") or []
        if not isinstance(result, list):
            raise refuse(field="annotations", reason="each annotation's result must be a list")
        prior.append(result)
    return tuple(prior)


def _iter_label_studio(
    stream: IO[bytes],
    filename: str,
    required: Sequence[str],
    metadata_fields: Sequence[str],
    max_bytes: int | None,
    shape: PreferenceShape | None,
) -> Iterator[ParsedRow]:
    for number, task in _label_studio_tasks(stream, filename, max_bytes):
        refuse = partial(ImportRefused, file=filename, line=number, unit="task")
        if not isinstance(task, dict):
            raise refuse(reason="each task must be a JSON object")
        payload = task.get("data")
        if not isinstance(payload, dict):
            raise refuse(field="data", reason="each task needs a 'data' object")
        if _contains_nul(task):
            raise refuse(reason=_NUL_REASON)
        # Only the task's own "id" and "meta" are special; keys inside "data" are content.
        # Our own export keeps an item's external id beside the task id (Label Studio's).
        metadata, external_id = _take_metadata(
            payload,
            task.get("meta"),
            task.get("external_id") or task.get("id"),
            metadata_fields=metadata_fields,
            refuse=refuse,
        )
        if required:
            _check_required(payload, metadata, external_id, required, refuse)
        prior = _prior_annotations(task, refuse)
        payload, notes = _shaped(payload, shape, refuse)
        yield ParsedRow(
            number, payload, metadata, _hash(payload, refuse), external_id, prior, **notes
        )


_PARSERS = {
    ImportFormat.JSONL: _iter_jsonl,
    ImportFormat.CSV: _iter_csv,
    ImportFormat.LABEL_STUDIO: _iter_label_studio,
}


def iter_rows(
    stream: IO[bytes],
    *,
    filename: str,
    fmt: ImportFormat,
    required_fields: Sequence[str] = (),
    metadata_fields: Sequence[str] = (),
    max_bytes: int | None = None,
    shape: PreferenceShape | None = None,
) -> Iterator[ParsedRow]:
    """Yield the file's rows in order; raise ImportRefused at the first bad one.

    Rows yielded before a refusal were fine, so a caller that writes as it goes must roll
    back on refusal. A required field may also be satisfied by a metadata field or the id
    (required fields are the file's own, checked before `shape` maps the row).
    """
    if fmt in TABLE_FORMATS:
        raise ValueError(f"{fmt} files are read from disk by annotation.importing_arrow")
    parser = _PARSERS[ImportFormat(fmt)]
    return parser(
        stream, filename, tuple(required_fields), tuple(metadata_fields), max_bytes, shape
    )
