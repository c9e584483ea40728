"""Parquet and Arrow files, and Hugging Face `datasets` folders, as rows for the importer.

A folder is uploaded as a zip: what `Dataset.save_to_disk` or `DatasetDict.save_to_disk`
writes (state.json and its Arrow files, one folder per split), or a folder of Parquet
files (the Hub's `data/train-00000-of-00001.parquet` layout). Rows are read a batch at a
time, so a large file never sits in memory, and go through the same checks as a JSON
Lines row (importing.record_row): `id` and `meta` columns, metadata fields, required
fields, the preference shape. A refusal names the file (inside the zip), the row within
it and the field.

A `datasets` ClassLabel column (its names are in the file's schema metadata) is imported
as the label names, not their numbers; the split a file belongs to becomes the row's
`split` metadata. Values JSON cannot hold are refused: binary data, NaN and infinity.

Pure: no ORM, no settings; pyarrow and the standard library.
"""

import datetime
import decimal
import json
import math
import re
import shutil
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from annotation.importing import (
    ImportFormat,
    ImportRefused,
    ParsedRow,
    PreferenceShape,
    _contains_nul,
    record_row,
)
from core import strict_json

BATCH_ROWS = 1000
# A zip may hold more than its own size once extracted (Arrow files compress well), but
# not without bound.
EXTRACT_FACTOR = 4
SPLIT_NAME = re.compile(r"(?:^|/)(train|validation|valid|dev|test)(?:[-_./]|$)")


@dataclass(frozen=True)
class TableFile:
    path: Path
    name: str  # as errors show it: the upload's name, and the file's path inside a zip
    kind: str  # "parquet" or "arrow"
    split: str | None = None


def _class_labels(schema: pa.Schema, fallback: dict[str, Any] | None) -> dict[str, list[str]]:
    """{column: label names} of the top-level ClassLabel columns `datasets` recorded in
    the schema's metadata (or in a save_to_disk folder's dataset_info.json)."""
    features: Any = None
    raw = (schema.metadata or {}).get(b"huggingface")
    if raw:
        try:
            features = json.loads(raw).get("info", {}).get("features")
        except (ValueError, AttributeError):
            features = None
    if not isinstance(features, dict):
        features = fallback
    if not isinstance(features, dict):
        return {}
    return {
        name: [str(n) for n in feature["names"]]
        for name, feature in features.items()
        if isinstance(feature, dict)
        and feature.get("_type") == "ClassLabel"
        and isinstance(feature.get("names"), list)
    }


_BINARY_REASON = (
    "holds binary data (an image or audio?), which cannot be imported; drop the column, "
    "or store a path or URL instead"
)


def _jsonable(value: Any, path: list[str | int], refuse: partial[ImportRefused]) -> Any:
    """A value of a table's row as JSON holds it; refuses what JSON cannot hold."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise refuse(
                field=strict_json.path_text(path),
                reason="is NaN or infinite, which cannot be stored; write null for a missing value",
            )
        return value
    if len(path) > strict_json.MAX_DEPTH:
        raise refuse(
            field=strict_json.path_text(path),
            reason=f"nested more than {strict_json.MAX_DEPTH} levels deep",
        )
    if isinstance(value, dict):
        return {str(k): _jsonable(v, [*path, str(k)], refuse) for k, v in value.items()}
    if isinstance(value, list):
        # A map column reads as a list of (key, value) tuples: it becomes an object.
        if value and all(isinstance(v, tuple) and len(v) == 2 for v in value):
            return {str(k): _jsonable(v, [*path, str(k)], refuse) for k, v in value}
        return [_jsonable(v, [*path, i], refuse) for i, v in enumerate(value)]
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        raise refuse(field=strict_json.path_text(path), reason=_BINARY_REASON)
    raise refuse(
        field=strict_json.path_text(path),
        reason=f"holds a {type(value).__name__}, which cannot be imported as JSON",
    )


def _batches(table: TableFile) -> tuple[pa.Schema, int, Iterator[pa.RecordBatch]]:
    """The file's schema, its row count (-1: not known before reading) and its batches."""
    refuse = partial(ImportRefused, file=table.name)
    if table.kind == "parquet":
        try:
            parquet = pq.ParquetFile(table.path)
        except (pa.ArrowInvalid, OSError) as error:
            raise refuse(reason=f"not a readable Parquet file ({error})") from None
        return (
            parquet.schema_arrow,
            parquet.metadata.num_rows,
            parquet.iter_batches(batch_size=BATCH_ROWS),
        )
    source = pa.memory_map(str(table.path))
    try:
        reader = pa.ipc.open_file(source)
    except pa.ArrowInvalid:
        pass
    else:
        batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
        return reader.schema, -1, batches
    # `datasets` writes the Arrow streaming format.
    source.seek(0)
    try:
        stream = pa.ipc.open_stream(source)
    except pa.ArrowInvalid as error:
        raise refuse(reason=f"not a readable Arrow IPC file or stream ({error})") from None
    return stream.schema, -1, iter(stream)


def _rows_of(
    table: TableFile,
    *,
    first: int,
    required: Sequence[str],
    metadata_fields: Sequence[str],
    shape: PreferenceShape | None,
    features: dict[str, Any] | None,
) -> Iterator[ParsedRow]:
    schema, _, batches = _batches(table)
    labels = _class_labels(schema, features)
    number = first
    row_in_file = 0
    try:
        for batch in batches:
            for start in range(0, batch.num_rows, BATCH_ROWS):
                for values in batch.slice(start, BATCH_ROWS).to_pylist():
                    row_in_file += 1
                    refuse = partial(ImportRefused, file=table.name, line=row_in_file, unit="row")
                    record = _record(values, labels, refuse)
                    row = record_row(number, record, required, metadata_fields, shape, refuse)
                    if table.split and "split" not in row.metadata:
                        row.metadata["split"] = table.split
                    number += 1
                    yield row
    except (pa.ArrowInvalid, OSError) as error:
        raise ImportRefused(
            file=table.name, line=row_in_file + 1, unit="row", reason=f"cannot be read ({error})"
        ) from None


def _record(
    values: dict[str, Any], labels: dict[str, list[str]], refuse: partial[ImportRefused]
) -> dict[str, Any]:
    record = {}
    for name, value in values.items():
        names = labels.get(name)
        if names is not None and isinstance(value, int) and not isinstance(value, bool):
            if value == -1:  # `datasets` marks a missing label so
                value = None
            elif 0 <= value < len(names):
                value = names[value]
            else:
                raise refuse(field=name, reason=f"label {value} is not one of {len(names)} names")
        record[name] = _jsonable(value, [name], refuse)
    if _contains_nul(record):
        raise refuse(reason="contains a NUL character, which the database cannot store")
    return record


# --- zipped folders -------------------------------------------------------------------


def _extract(archive_path: Path, into: Path, name: str, max_bytes: int) -> None:
    """Extract a zip's regular files, refusing members that would land outside `into`
    and a total past `max_bytes` (counted as written, whatever the headers claim)."""
    try:
        archive = zipfile.ZipFile(archive_path)
    except zipfile.BadZipFile:
        raise ImportRefused(file=name, reason="not a readable zip file") from None
    budget = max_bytes
    with archive:
        for member in archive.infolist():
            if member.is_dir():
                continue
            inner = PurePosixPath(member.filename)
            if inner.is_absolute() or ".." in inner.parts:
                raise ImportRefused(
                    file=f"{name}/{member.filename}", reason="points outside the folder"
                )
            if (member.external_attr >> 16) & 0o170000 == 0o120000:
                continue  # a symbolic link: not followed
            target = into.joinpath(*inner.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as source, open(target, "wb") as out:
                while chunk := source.read(1 << 20):
                    budget -= len(chunk)
                    if budget < 0:
                        raise ImportRefused(
                            file=name,
                            reason=f"holds more than {max_bytes} bytes once extracted",
                        )
                    out.write(chunk)


def _json_file(path: Path, name: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise ImportRefused(file=name, reason=f"is not valid JSON ({error})") from None


def _saved_dataset(folder: Path, root: Path, name: str, split: str | None) -> list[TableFile]:
    """The Arrow files of one `Dataset.save_to_disk` folder, in its own order."""
    state_name = f"{name}/{(folder / 'state.json').relative_to(root).as_posix()}"
    state = _json_file(folder / "state.json", state_name)
    files = state.get("_data_files") if isinstance(state, dict) else None
    if not isinstance(files, list) or not files:
        raise ImportRefused(file=state_name, field="_data_files", reason="lists no data files")
    found = []
    for entry in files:
        filename = entry.get("filename") if isinstance(entry, dict) else None
        path = folder / str(filename)
        if not filename or not path.is_file() or PurePosixPath(str(filename)).name != filename:
            raise ImportRefused(
                file=state_name,
                field="_data_files",
                reason=f"names {filename!r}, which is not in the folder",
            )
        shown = f"{name}/{path.relative_to(root).as_posix()}"
        found.append(TableFile(path, shown, "arrow", split))
    return found


def _folder_tables(root: Path, name: str) -> tuple[list[TableFile], dict[str, Any] | None]:
    """The data files of an extracted folder, in order, and its `datasets` features."""
    markers = sorted(
        (p for p in root.rglob("*") if p.name in ("dataset_dict.json", "state.json")),
        key=lambda p: (len(p.relative_to(root).parts), p.as_posix()),
    )
    if markers:
        top = markers[0]
        folder = top.parent
        if top.name == "dataset_dict.json":
            splits = _json_file(top, f"{name}/{top.relative_to(root).as_posix()}")
            names = splits.get("splits") if isinstance(splits, dict) else None
            if not isinstance(names, list) or not names:
                raise ImportRefused(
                    file=f"{name}/{top.relative_to(root).as_posix()}",
                    field="splits",
                    reason="lists no splits",
                )
            tables = []
            features = None
            for split in names:
                if not (folder / str(split) / "state.json").is_file():
                    raise ImportRefused(
                        file=name, reason=f"split {split!r} has no folder with a state.json"
                    )
                tables += _saved_dataset(folder / str(split), root, name, str(split))
                features = features or _features(folder / str(split))
            return tables, features
        return _saved_dataset(folder, root, name, None), _features(folder)
    for suffix, kind in ((".parquet", "parquet"), (".arrow", "arrow")):
        paths = sorted(p for p in root.rglob(f"*{suffix}") if p.is_file())
        if paths:
            tables = []
            for path in paths:
                relative = path.relative_to(root).as_posix()
                match = SPLIT_NAME.search(relative)
                split = match.group(1) if match else None
                tables.append(TableFile(path, f"{name}/{relative}", kind, split))
            return tables, None
    raise ImportRefused(
        file=name,
        reason=(
            "holds no Hugging Face datasets folder (state.json or dataset_dict.json) and no "
            ".parquet or .arrow files"
        ),
    )


def _features(folder: Path) -> dict[str, Any] | None:
    info = folder / "dataset_info.json"
    if not info.is_file():
        return None
    try:
        features = json.loads(info.read_text(encoding="utf-8")).get("features")
    except (ValueError, AttributeError, UnicodeDecodeError):
        return None
    return features if isinstance(features, dict) else None


def table_rows(
    path: Path,
    *,
    filename: str,
    fmt: ImportFormat,
    workdir: Path,
    required_fields: Sequence[str] = (),
    metadata_fields: Sequence[str] = (),
    max_bytes: int,
    shape: PreferenceShape | None = None,
) -> Iterator[ParsedRow]:
    """The rows of a Parquet file, an Arrow file or a zipped datasets folder at `path`
    (plaintext, on disk: Parquet is read from its end), in order, numbered from 1 across
    files. A zip is extracted under `workdir`, which the caller removes. Raises
    ImportRefused at the first bad file or row; rows before it were fine."""
    if fmt == ImportFormat.PARQUET:
        tables, features = [TableFile(path, filename, "parquet")], None
    elif fmt == ImportFormat.ARROW:
        tables, features = [TableFile(path, filename, "arrow")], None
    else:
        folder = workdir / "extracted"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        _extract(path, folder, filename, max_bytes * EXTRACT_FACTOR)
        tables, features = _folder_tables(folder, filename)
    number = 1
    for table in tables:
        for row in _rows_of(
            table,
            first=number,
            required=tuple(required_fields),
            metadata_fields=tuple(metadata_fields),
            shape=shape,
            features=features,
        ):
            number = row.row_number + 1
            yield row
