import hashlib
import io
import itertools
import json
import pickle

import pytest

from annotation.importing import (
    ImportFormat,
    ImportRefused,
    ParsedRow,
    content_hash,
    detect_format,
    file_sha256,
    iter_rows,
)
from core.chain import canonical_json


def _parse(data: bytes, filename: str = "data.jsonl", **options) -> list[ParsedRow]:
    fmt = detect_format(filename)
    return list(iter_rows(io.BytesIO(data), filename=filename, fmt=fmt, **options))


def _refusal(data: bytes, filename: str = "data.jsonl", **options) -> ImportRefused:
    with pytest.raises(ImportRefused) as caught:
        _parse(data, filename, **options)
    return caught.value


def _jsonl(*records) -> bytes:
    return b"".join(json.dumps(record).encode() + b"\n" for record in records)


def _sha(payload: dict) -> str:
    return hashlib.sha256(canonical_json(payload)).hexdigest()


def _where(error: ImportRefused) -> tuple:
    return (error.file, error.line, error.field)


# --- formats -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "fmt"),
    [
        ("data.jsonl", ImportFormat.JSONL),
        ("data.ndjson", ImportFormat.JSONL),
        ("Data.JSONL", ImportFormat.JSONL),
        ("rows.csv", ImportFormat.CSV),
        ("uploads/export.json", ImportFormat.LABEL_STUDIO),
    ],
)
def test_format_is_chosen_by_extension(filename, fmt):
    assert detect_format(filename) == fmt


@pytest.mark.parametrize("filename", ["sheet.xlsx", "data.jsonl.gz", "README"])
def test_unsupported_extension_is_refused_naming_the_file(filename):
    with pytest.raises(ImportRefused) as caught:
        detect_format(filename)

    assert _where(caught.value) == (filename, None, None)
    assert str(caught.value).startswith(f"{filename}: unsupported file type")


# --- JSON Lines ----------------------------------------------------------------------------


def test_jsonl_rows_carry_payload_metadata_external_id_and_line_numbers():
    data = (
        b'{"id": 7, "text": "hello", "meta": {"lang": "en", "slice": "a"}}\n'
        b"\n"
        b'{"text": "hallo", "domain": "support", "nested": {"turns": [1, 2]}}\n'
        b'{"id": "t-3", "text": "hola", "meta": {"lang": "es"}, "domain": "sales"}'
    )

    rows = _parse(data, metadata_fields=["domain"])

    assert [(r.row_number, r.external_id) for r in rows] == [(1, "7"), (3, None), (4, "t-3")]
    assert [r.payload for r in rows] == [
        {"text": "hello"},
        {"text": "hallo", "nested": {"turns": [1, 2]}},
        {"text": "hola"},
    ]
    assert [r.metadata for r in rows] == [
        {"lang": "en", "slice": "a"},
        {"domain": "support"},
        {"lang": "es", "domain": "sales"},
    ]
    assert [r.content_hash for r in rows] == [_sha(r.payload) for r in rows]
    assert all(r.prior_annotations == () for r in rows)


def test_same_payload_with_keys_in_another_order_hashes_the_same():
    first, second, other = _parse(
        b'{"a": 1, "b": {"x": [1, 2], "y": "z"}}\n'
        b'{"b": {"y": "z", "x": [1, 2]}, "a": 1, "id": "ignored", "meta": {"lang": "en"}}\n'
        b'{"a": 2, "b": {"x": [1, 2], "y": "z"}}\n'
    )

    assert first.content_hash == second.content_hash
    assert first.content_hash != other.content_hash


@pytest.mark.parametrize(
    "payload",
    [
        {"text": "naïve café — 日本語 🙂", "n": 1.5, "big": 10**20, "flag": False, "none": None},
        {"z": {"b": [1, {"d": 2, "c": 3}], "a": ""}, "a": '"quoted" \\ \n\t'},
    ],
)
def test_content_hash_is_sha256_of_governance_canonical_json(payload):
    assert content_hash(payload) == _sha(payload)
    assert _parse(json.dumps(payload).encode())[0].content_hash == _sha(payload)


def test_metadata_values_are_coerced_to_text():
    (row,) = _parse(_jsonl({"text": "x", "meta": {"age": 42, "score": 0.5, "ok": True, "n": None}}))

    assert row.metadata == {"age": "42", "score": "0.5", "ok": "true", "n": ""}


def test_utf8_byte_order_mark_is_ignored():
    (row,) = _parse(b'\xef\xbb\xbf{"text": "with bom"}\n')

    assert (row.row_number, row.payload) == (1, {"text": "with bom"})


def test_bad_utf8_is_refused_naming_the_line_and_byte():
    data = _jsonl({"text": "ok"}, {"text": "ok"}) + b'{"text": "caf\xe9"}\n'

    error = _refusal(data)

    assert _where(error) == ("data.jsonl", 3, None)
    assert str(error) == (
        "data.jsonl, line 3: not valid UTF-8 (byte 0xe9 at column 14); save the file as UTF-8"
    )


def test_malformed_json_is_refused_naming_line_and_column():
    error = _refusal(_jsonl({"text": "ok"}) + b'{"text" "missing colon"}\n')

    assert _where(error) == ("data.jsonl", 2, None)
    assert str(error) == "data.jsonl, line 2: malformed JSON at column 9: Expecting ':' delimiter"


def test_json_string_broken_across_lines_is_refused_naming_the_first_line():
    error = _refusal(b'{"text": "one\ntwo"}\n')

    assert _where(error) == ("data.jsonl", 1, None)
    assert str(error).endswith("line 1: malformed JSON at column 14: Invalid control character")


@pytest.mark.parametrize(
    ("line", "kind"), [(b"[1, 2]", "a list"), (b'"text"', "a string"), (b"3", "a number")]
)
def test_line_that_is_not_an_object_is_refused(line, kind):
    error = _refusal(_jsonl({"text": "ok"}, {"text": "ok"}) + line + b"\n")

    assert _where(error) == ("data.jsonl", 3, None)
    assert str(error) == f"data.jsonl, line 3: expected a JSON object, got {kind}"


@pytest.mark.parametrize("value", ["missing", None, ""])
def test_missing_required_field_is_refused_naming_line_and_field(value):
    bad = {"label": "x"} if value == "missing" else {"text": value, "label": "x"}

    error = _refusal(_jsonl({"text": "ok", "label": "y"}, bad), required_fields=["text", "label"])

    assert _where(error) == ("data.jsonl", 2, "text")
    assert str(error) == "data.jsonl, line 2, field 'text': missing required field"


def test_required_field_may_be_one_moved_to_metadata():
    (row,) = _parse(
        _jsonl({"text": "x", "lang": "en"}), required_fields=["lang"], metadata_fields=["lang"]
    )

    assert (row.payload, row.metadata) == ({"text": "x"}, {"lang": "en"})


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"text": "x", "meta": {"lang": ["en", "de"]}}, "lang"),
        ({"text": "x", "domain": {"name": "support"}}, "domain"),
        ({"text": "x", "meta": "en"}, "meta"),
        ({"text": "x", "id": [1]}, "id"),
    ],
)
def test_non_scalar_metadata_or_id_is_refused_naming_the_field(record, field):
    error = _refusal(_jsonl(record), metadata_fields=["domain"])

    assert _where(error) == ("data.jsonl", 1, field)
    assert f"data.jsonl, line 1, field '{field}': " in str(error)


@pytest.mark.parametrize(
    ("line", "field", "reason"),
    [
        (b'{"score": NaN}', "score", "NaN is not a JSON value"),
        (b'{"text": "a\\u0000b"}', None, "NUL character"),
        (b'{"text": "\\ud800"}', None, "unpaired UTF-16 surrogate"),
        (b'{"scores": [1, 1e400]}', "scores[1]", "1e400 is out of range (it would be infinite)"),
        (b'{"n": -' + b"9" * 5000 + b"}", "n", "an integer of 5000 digits; at most 4300"),
        (
            b'{"tree": ' + b"[" * 200_000 + b"]" * 200_000 + b"}",
            "tree[0][0][0][0][0][0][0]\u2026",
            "nested more than 100 levels deep",
        ),
    ],
)
def test_values_the_database_cannot_store_are_refused_naming_the_line(line, field, reason):
    error = _refusal(_jsonl({"text": "ok"}) + line + b"\n")

    assert _where(error) == ("data.jsonl", 2, field)
    assert reason in str(error)


def test_escaped_backslash_before_u0000_is_not_mistaken_for_nul():
    (row,) = _parse(b'{"text": "C:\\\\u0000"}\n')

    assert row.payload == {"text": "C:\\u0000"}


def test_file_over_the_limit_is_refused_after_the_rows_that_fit():
    data = _jsonl(*({"text": f"row {i}"} for i in range(10)))
    line_length = len(data) // 10
    rows = []

    with pytest.raises(ImportRefused) as caught:
        rows.extend(iter_rows(io.BytesIO(data), filename="data.jsonl", fmt="jsonl", max_bytes=50))

    assert len(rows) == 50 // line_length
    assert _where(caught.value) == ("data.jsonl", None, None)
    assert str(caught.value) == "data.jsonl: file is larger than the limit of 50 bytes"


def test_limit_stops_reading_inside_one_endless_line():
    stream = io.BytesIO(b'{"text": "' + b"x" * 1_000_000 + b'"}\n')

    with pytest.raises(ImportRefused, match="larger than the limit of 1000 bytes"):
        list(iter_rows(stream, filename="big.jsonl", fmt=ImportFormat.JSONL, max_bytes=1000))

    assert stream.tell() <= 1001


def test_file_exactly_at_the_limit_is_accepted():
    data = _jsonl({"text": "a"}, {"text": "b"})

    assert len(_parse(data, max_bytes=len(data))) == 2


@pytest.mark.parametrize("max_bytes", [None, 1 << 30])
def test_jsonl_is_read_lazily(max_bytes):
    data = _jsonl(*({"id": i, "text": f"short text {i}"} for i in range(200_000)))
    stream = io.BytesIO(data)

    rows = list(
        itertools.islice(
            iter_rows(stream, filename="data.jsonl", fmt=ImportFormat.JSONL, max_bytes=max_bytes),
            10,
        )
    )

    assert [r.external_id for r in rows] == [str(i) for i in range(10)]
    assert not stream.closed  # abandoning the parse leaves the caller's stream alone
    assert stream.tell() < len(data) // 1000


# --- CSV -----------------------------------------------------------------------------------


def test_csv_rows_split_into_payload_metadata_and_id():
    data = b"id,text,lang,notes\r\nt-1,first,en,\r\n,second,fr,keep\r\n"

    rows = _parse(data, "rows.csv", metadata_fields=["lang"])

    assert [(r.row_number, r.external_id) for r in rows] == [(2, "t-1"), (3, None)]
    assert [r.payload for r in rows] == [
        {"text": "first", "notes": ""},
        {"text": "second", "notes": "keep"},
    ]
    assert [r.metadata for r in rows] == [{"lang": "en"}, {"lang": "fr"}]
    assert [r.content_hash for r in rows] == [_sha(r.payload) for r in rows]


def test_csv_hash_does_not_depend_on_column_order():
    (first,) = _parse(b"text,label\nhi,pos\n", "a.csv")
    (second,) = _parse(b"label,text\npos,hi\n", "b.csv")

    assert first.content_hash == second.content_hash == _sha({"text": "hi", "label": "pos"})


def test_csv_multi_line_quoted_field_keeps_the_next_records_starting_line():
    data = b'\xef\xbb\xbftext,label\n"line one\nline two\nline three",a\nafter,b\n\nlast,c\n'

    rows = _parse(data, "rows.csv")

    assert [(r.row_number, r.payload["text"]) for r in rows] == [
        (2, "line one\nline two\nline three"),
        (5, "after"),
        (7, "last"),
    ]


def test_csv_ragged_row_is_refused_naming_its_line():
    data = b'text,label\n"two\nlines",a\nonly-one-field\n'

    error = _refusal(data, "rows.csv")

    assert _where(error) == ("rows.csv", 4, None)
    assert str(error) == "rows.csv, line 4: expected 2 fields as in the header, found 1"


def test_csv_duplicate_header_is_refused_naming_the_column():
    error = _refusal(b"text,label, text\na,b,c\n", "rows.csv")

    assert _where(error) == ("rows.csv", 1, "text")
    assert str(error).startswith("rows.csv, line 1, field 'text': column name appears more")


def test_csv_empty_header_name_is_refused_naming_its_position():
    error = _refusal(b"text,,label\na,b,c\n", "rows.csv")

    assert _where(error) == ("rows.csv", 1, None)
    assert "column 2 of the header row has no name" in str(error)


def test_csv_without_header_is_refused():
    error = _refusal(b"", "rows.csv")

    assert _where(error) == ("rows.csv", None, None)
    assert "a header row is needed" in str(error)


def test_csv_unclosed_quote_is_refused_at_the_record_where_it_opens():
    error = _refusal(b'text,label\nfine,a\n"never closed,b\nmore,c\n', "rows.csv")

    assert _where(error) == ("rows.csv", 3, None)
    assert str(error) == "rows.csv, line 3: a quoted field is never closed"


def test_csv_missing_required_value_is_refused_naming_line_and_field():
    error = _refusal(b"text,label\na,x\n,y\n", "rows.csv", required_fields=["text"])

    assert _where(error) == ("rows.csv", 3, "text")
    assert str(error) == "rows.csv, line 3, field 'text': missing required field"


def test_csv_bad_utf8_is_refused_naming_the_line():
    error = _refusal(b"text,label\nok,a\nfa\xc3\x28il,b\n", "rows.csv")

    assert _where(error) == ("rows.csv", 3, None)
    assert "not valid UTF-8 (byte 0xc3 at column 3)" in str(error)


def test_csv_nul_character_is_refused_naming_the_line():
    error = _refusal(b"text,label\nok,a\nnul\x00here,b\n", "rows.csv")

    assert _where(error) == ("rows.csv", 3, None)


def test_csv_over_the_limit_is_refused():
    error = _refusal(b"text\n" + b"row\n" * 100, "rows.csv", max_bytes=64)

    assert str(error) == "rows.csv: file is larger than the limit of 64 bytes"


def test_csv_is_read_lazily():
    data = b"id,text\n" + b"".join(b"%d,row %d\n" % (i, i) for i in range(200_000))
    stream = io.BytesIO(data)

    rows = list(itertools.islice(iter_rows(stream, filename="r.csv", fmt=ImportFormat.CSV), 10))

    assert rows[-1].row_number == 11
    assert stream.tell() < len(data) // 1000


# --- Label Studio --------------------------------------------------------------------------

LABEL_STUDIO_EXPORT = [
    {
        "id": 101,
        "data": {"text": "great product", "source": "review"},
        "meta": {"lang": "en"},
        "annotations": [
            {"result": [{"type": "choices", "value": {"choices": ["positive"]}}]},
            {"result": [], "was_cancelled": True},
        ],
        "predictions": [{"result": [{"value": {"choices": ["negative"]}}]}],
    },
    {"id": 102, "data": {"text": "meh", "source": "chat"}},
]


def test_label_studio_tasks_become_rows_with_prior_annotations():
    data = json.dumps(LABEL_STUDIO_EXPORT).encode()

    first, second = _parse(data, "export.json", metadata_fields=["source"])

    assert (first.row_number, first.external_id) == (1, "101")
    assert first.payload == {"text": "great product"}
    assert first.metadata == {"lang": "en", "source": "review"}
    assert first.prior_annotations == ([{"type": "choices", "value": {"choices": ["positive"]}}],)
    assert first.content_hash == _sha({"text": "great product"})
    assert (second.row_number, second.external_id, second.metadata) == (
        2,
        "102",
        {"source": "chat"},
    )
    assert second.prior_annotations == ()


def test_label_studio_single_task_object_is_accepted():
    (row,) = _parse(json.dumps({"data": {"text": "alone"}}).encode(), "export.json")

    assert (row.row_number, row.external_id, row.payload) == (1, None, {"text": "alone"})


@pytest.mark.parametrize(
    ("document", "kind"), [("just text", "not a list"), ({"tasks": []}, "an object without 'data'")]
)
def test_label_studio_file_that_is_not_a_task_list_is_refused(document, kind):
    error = _refusal(json.dumps(document).encode(), "export.json")

    assert _where(error) == ("export.json", None, None)
    assert str(error) == (
        f"export.json: expected a Label Studio export (a JSON list of tasks), got {kind}"
    )


def test_label_studio_task_without_data_is_refused_naming_the_task():
    data = json.dumps([{"data": {"text": "ok"}}, {"id": 5, "annotations": []}]).encode()

    error = _refusal(data, "export.json")

    assert _where(error) == ("export.json", 2, "data")
    assert str(error) == "export.json, task 2, field 'data': each task needs a 'data' object"


def test_label_studio_missing_required_field_names_the_task():
    error = _refusal(json.dumps(LABEL_STUDIO_EXPORT).encode(), "export.json", required_fields=["x"])

    assert _where(error) == ("export.json", 1, "x")
    assert str(error) == "export.json, task 1, field 'x': missing required field"


def test_label_studio_malformed_json_names_the_physical_line():
    error = _refusal(b'[\n  {"data": {"text": "ok"}},\n  {"data": }\n]', "export.json")

    assert _where(error) == ("export.json", 3, None)
    assert "malformed JSON at column 12" in str(error)


@pytest.mark.parametrize(
    ("value", "field", "reason"),
    [
        (b"1e400", "data.score", "1e400 is out of range (it would be infinite)"),
        (b"9" * 5000, "data.score", "an integer of 5000 digits; at most 4300"),
        (b"[" * 200_000 + b"]" * 200_000, "data.score[0][0][0][0][0]", "nested more than 100"),
        (b"NaN", "data.score", "NaN is not a JSON value"),
    ],
)
def test_label_studio_numbers_and_nesting_past_the_limits_name_task_and_field(value, field, reason):
    data = b'[{"data": {"text": "ok"}},\n {"data": {"text": "x", "score": ' + value + b"}}]"

    error = _refusal(data, "export.json")

    assert (error.file, error.line, error.unit) == ("export.json", 2, "task")
    assert reason in str(error)
    assert (error.field or "").startswith(field)


def test_label_studio_export_is_parsed_task_by_task_not_read_whole():
    tasks = b",".join(b'{"data": {"text": "row %d"}}' % i for i in range(200_000))
    stream = io.BytesIO(b"[" + tasks + b"]")

    rows = iter_rows(stream, filename="export.json", fmt=ImportFormat.LABEL_STUDIO)
    first = next(rows)

    assert first.payload == {"text": "row 0"}
    assert stream.tell() < len(stream.getvalue()) // 10


def test_label_studio_over_the_limit_is_refused_before_parsing():
    data = json.dumps(LABEL_STUDIO_EXPORT).encode()
    stream = io.BytesIO(data)

    with pytest.raises(ImportRefused) as caught:
        list(iter_rows(stream, filename="export.json", fmt="labelstudio", max_bytes=100))

    assert str(caught.value) == "export.json: file is larger than the limit of 100 bytes"
    assert stream.tell() == 101


# --- the error and the file hash -----------------------------------------------------------


def test_refusal_message_leaves_out_parts_it_does_not_know():
    assert str(ImportRefused(file=None, reason="empty")) == "empty"
    assert (
        str(ImportRefused(file="a.csv", field="lang", reason="bad")) == "a.csv, field 'lang': bad"
    )


def test_refusal_survives_pickling_with_its_location():
    error = ImportRefused(file="t.json", line=4, field="data", reason="bad", unit="task")

    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes

    assert (_where(copy), copy.reason, str(copy)) == (_where(error), "bad", str(error))


def test_file_sha256_hashes_the_whole_stream_and_rewinds():
    data = b"x" * 3000 + b"tail"
    stream = io.BytesIO(data)
    stream.seek(10)

    assert file_sha256(stream, chunk_size=1024) == hashlib.sha256(data).hexdigest()
    assert stream.tell() == 0
