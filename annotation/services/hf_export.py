"""Exports as a Hugging Face `datasets` folder, zipped: `data/train-00000-of-00001.parquet`
and a dataset card (`README.md`) whose YAML header tells `datasets.load_dataset(folder)`
where the data is.

Parquet needs one schema for the whole file, and rows are plain JSON: the columns' Arrow
types are inferred in a first pass over the rows (each column's chunks unified, ints
widening to floats, structs merging their fields); a column whose values no one type
holds (text in one row, a list in another) is written as JSON text, and the card says
which. The second pass writes a row group per chunk and sends each as it is made, so
memory holds a chunk, never the export; the zip is written for a stream that cannot seek.
"""

import io
import json
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

CHUNK = 5000
DATA_FILE = "data/train-00000-of-00001.parquet"
_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode


class _Sink(io.RawIOBase):
    """A write-only file that keeps what is written until `take`n: the zip writes into it,
    the response sends what it took. It can tell, not seek (zipfile then writes data
    descriptors)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        self._position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._position

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


class _Entry:
    """A zip member open for writing, as the Parquet writer wants a file: it tells its
    position; closing is left to the zip."""

    def __init__(self, raw: Any):
        self._raw = raw
        self._position = 0
        self.closed = False

    def write(self, data: Any) -> int:
        written = self._raw.write(data)
        self._position += len(data)
        return written

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def _has_empty_struct(kind: pa.DataType) -> bool:
    # Parquet cannot store a struct with no fields (an empty JSON object everywhere).
    if pa.types.is_struct(kind):
        return kind.num_fields == 0 or any(_has_empty_struct(f.type) for f in kind)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _has_empty_struct(kind.value_type)
    return False


@dataclass
class ColumnPlan:
    """Each column's Arrow type, in first-seen order; JSON columns hold JSON text."""

    types: dict[str, pa.DataType | None] = field(default_factory=dict)
    json_columns: set[str] = field(default_factory=set)

    def add_chunk(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            for name in row:
                self.types.setdefault(name, None)
        for name, known in self.types.items():
            if name in self.json_columns:
                continue
            try:
                found = pa.array([row.get(name) for row in rows]).type
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
                self.json_columns.add(name)
                continue
            if _has_empty_struct(found):
                self.json_columns.add(name)
            elif known is None or pa.types.is_null(known):
                self.types[name] = found
            elif not pa.types.is_null(found) and found != known:
                try:
                    unified = pa.unify_schemas(
                        [pa.schema([(name, known)]), pa.schema([(name, found)])],
                        promote_options="permissive",
                    )
                except (pa.ArrowInvalid, pa.ArrowTypeError):
                    self.json_columns.add(name)
                else:
                    self.types[name] = unified.field(name).type

    def schema(self) -> pa.Schema:
        fields = []
        for name, kind in self.types.items():
            if name in self.json_columns or kind is None or pa.types.is_null(kind):
                kind = pa.string()
            fields.append(pa.field(name, kind))
        return pa.schema(fields)

    def encoded(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not self.json_columns:
            return rows
        return [
            {
                k: (_json(v) if k in self.json_columns and v is not None else v)
                for k, v in row.items()
            }
            for row in rows
        ]


def _chunks(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def plan_columns(rows: Iterable[dict[str, Any]], *, chunk: int = CHUNK) -> ColumnPlan:
    plan = ColumnPlan()
    for part in _chunks(rows, chunk):
        plan.add_chunk(part)
    return plan


@dataclass
class Written:
    """What the second pass saw, for the dataset card."""

    rows: int = 0
    counts: dict[str, dict[str, int]] = field(default_factory=dict)


def hf_zip_chunks(
    rows: Callable[[], Iterator[dict[str, Any]]],
    *,
    card: Callable[[pa.Schema, ColumnPlan, Written], str],
    count_by: tuple[str, ...] = (),
    chunk: int = CHUNK,
) -> Iterator[bytes]:
    """The bytes of the zipped folder. `rows()` is called twice (plan, then write) and must
    give the same rows both times (the caller reads them under one snapshot); `card` makes
    README.md from the schema, the plan and what was written; `count_by` names columns
    whose values the card counts."""
    written = Written(counts={name: {} for name in count_by})
    sink = _Sink()
    with zipfile.ZipFile(sink, mode="w", compression=zipfile.ZIP_STORED) as archive:
        with archive.open(DATA_FILE, mode="w", force_zip64=True) as raw:
            # The member's header is yielded first, so a server that sends parts as they
            # come starts the download while the plan reads.
            yield sink.take()
            plan = plan_columns(rows(), chunk=chunk)
            schema = plan.schema()
            writer = pq.ParquetWriter(_Entry(raw), schema, compression="zstd")
            for part in _chunks(rows(), chunk):
                written.rows += len(part)
                for name in count_by:
                    tally = written.counts[name]
                    for row in part:
                        key = str(row.get(name))
                        tally[key] = tally.get(key, 0) + 1
                writer.write_table(pa.Table.from_pylist(plan.encoded(part), schema=schema))
                yield sink.take()
            if written.rows == 0:
                writer.write_table(schema.empty_table())
            writer.close()
        archive.writestr(
            zipfile.ZipInfo("README.md", date_time=(1980, 1, 1, 0, 0, 0)),
            card(schema, plan, written),
            compress_type=zipfile.ZIP_DEFLATED,
        )
    yield sink.take()


def card_yaml_license(licenses: list[str]) -> str:
    """The card's `license:` value: the one SPDX id every dataset shares, lower-cased as
    the Hub writes ids, or "other"."""
    distinct = sorted({item.strip() for item in licenses if item.strip()})
    if len(distinct) == 1 and distinct[0].lower() != "proprietary":
        return distinct[0].lower()
    return "other"


def card_header(*, license: str, pretty_name: str) -> str:
    """The YAML block that `datasets` reads: where the data files are."""
    return (
        "---\n"
        f"license: {license}\n"
        f"pretty_name: {json.dumps(pretty_name, ensure_ascii=False)}\n"
        "configs:\n"
        "- config_name: default\n"
        "  data_files:\n"
        "  - split: train\n"
        f"    path: {DATA_FILE}\n"
        "---\n"
    )


def schema_table(schema: pa.Schema, plan: ColumnPlan) -> str:
    lines = ["| column | type |", "| --- | --- |"]
    for column in schema:
        kind = "JSON text" if column.name in plan.json_columns else str(column.type)
        lines.append(f"| `{column.name}` | {kind.replace('|', '/')} |")
    return "\n".join(lines)
