import datetime
import io
import json
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.test import override_settings

from annotation.importing import ImportRefused
from annotation.models import Dataset, DatasetUpload, Item
from annotation.services.datasets import Provenance, dataset_import_run, dataset_upload_create
from core.models import AuditEvent

pytestmark = pytest.mark.django_db

PROVENANCE = Provenance(
    source_description="Support tickets exported 2025-06",
    license="CC-BY-4.0",
    consent_basis="terms of service §4",
    collection_date=datetime.date(2025, 6, 1),
    synthetic=False,
)


def _jsonl(rows):
    return io.BytesIO("".join(json.dumps(r) + "\n" for r in rows).encode())


def _upload(project, engineer, data: bytes | io.BytesIO, name="rows.jsonl", **kwargs):
    stream = data if isinstance(data, io.BytesIO) else io.BytesIO(data)
    upload = dataset_upload_create(
        project=project,
        uploaded_by=engineer,
        file=stream,
        file_name=name,
        provenance=PROVENANCE,
        run_now=True,
        **kwargs,
    )
    return dataset_import_run(upload_id=upload.pk)


def test_jsonl_rows_become_items_with_hash_row_and_metadata(project, engineer):
    upload = _upload(
        project,
        engineer,
        _jsonl(
            [
                {"id": "t-1", "text": "hello", "meta": {"lang": "en"}},
                {"id": "t-2", "text": "hallo", "meta": {"lang": "de"}},
            ]
        ),
    )

    assert upload.status == DatasetUpload.Status.SUCCEEDED, upload.error
    dataset = Dataset.objects.get()
    assert (dataset.row_count, dataset.license, dataset.synthetic) == (2, "CC-BY-4.0", False)
    first, second = Item.objects.order_by("row_number")
    assert (first.row_number, first.external_id, first.payload) == (1, "t-1", {"text": "hello"})
    assert second.metadata == {"lang": "de"}
    assert len(first.content_hash) == 64
    assert AuditEvent.objects.filter(action="dataset.import").count() == 1


def test_csv_with_metadata_columns(project, engineer):
    data = b"id,text,lang\n1,first,en\n2,second,fr\n"

    upload = _upload(project, engineer, data, name="rows.csv", metadata_fields=["lang"])

    assert upload.status == DatasetUpload.Status.SUCCEEDED, upload.error
    assert list(Item.objects.order_by("row_number").values_list("payload", "metadata")) == [
        ({"text": "first"}, {"lang": "en"}),
        ({"text": "second"}, {"lang": "fr"}),
    ]


def test_label_studio_export(project, engineer):
    data = json.dumps([{"id": 7, "data": {"text": "from LS"}, "annotations": []}]).encode()

    upload = _upload(project, engineer, data, name="export.json")

    assert upload.status == DatasetUpload.Status.SUCCEEDED, upload.error
    assert Item.objects.get().payload == {"text": "from LS"}


def test_malformed_line_fails_naming_file_and_line_and_keeps_nothing(project, engineer):
    data = b'{"text": "ok"}\n{"text": "ok too"}\n{"text": oops}\n'

    upload = _upload(project, engineer, data, name="bad.jsonl")

    assert upload.status == DatasetUpload.Status.FAILED
    assert "bad.jsonl" in upload.error
    assert "line 3" in upload.error
    assert not Item.objects.exists()
    assert not Dataset.objects.exists()
    assert not Path(upload.stored_path).exists()


def test_missing_required_field_names_line_and_field(project, engineer):
    data = b'{"text": "ok"}\n{"title": "no text"}\n'

    upload = _upload(project, engineer, data, name="rows.jsonl", required_fields=["text"])

    assert "line 2" in upload.error
    assert "'text'" in upload.error
    assert not Item.objects.exists()


def test_bad_encoding_is_refused_naming_the_line(project, engineer):
    data = b'{"text": "fine"}\n' + '{"text": "caf\xe9"}\n'.encode("latin-1")

    upload = _upload(project, engineer, data)

    assert upload.status == DatasetUpload.Status.FAILED
    assert "line 2" in upload.error
    assert "UTF-8" in upload.error


@override_settings(PORTAL_MAX_UPLOAD_BYTES=64)
def test_file_over_the_limit_is_refused_before_import(project, engineer):
    with pytest.raises(ValidationError, match="larger than the limit of 64 bytes"):
        _upload(project, engineer, b'{"text": "' + b"x" * 100 + b'"}\n', name="big.jsonl")

    assert not DatasetUpload.objects.exists()


def test_same_file_twice_is_reported(project, engineer):
    data = _jsonl([{"text": "once"}]).getvalue()
    _upload(project, engineer, data, name="a.jsonl")

    with pytest.raises(ValidationError, match="already imported as dataset"):
        _upload(project, engineer, data, name="copy.jsonl")

    assert Item.objects.count() == 1


def test_provenance_is_required(project, engineer):
    missing = Provenance(
        source_description=" ",
        license="",
        consent_basis="",
        collection_date=datetime.date(2025, 1, 1),
        synthetic=True,
    )

    with pytest.raises(ValidationError) as error:
        dataset_upload_create(
            project=project,
            uploaded_by=engineer,
            file=_jsonl([{"t": 1}]),
            file_name="x.jsonl",
            provenance=missing,
        )

    assert {"source_description", "license", "consent_basis"} <= set(error.value.message_dict)


def test_unsupported_extension_is_refused(project, engineer):
    with pytest.raises(ImportRefused, match="x.xlsx"):
        dataset_upload_create(
            project=project,
            uploaded_by=engineer,
            file=io.BytesIO(b"x"),
            file_name="x.xlsx",
            provenance=PROVENANCE,
        )


def test_gold_rows_become_honeypots(project, engineer):
    _upload(
        project,
        engineer,
        _jsonl(
            [
                {"text": "plain"},
                {"text": "known", "gold_answer": {"labels": ["pos"]}},
            ]
        ),
    )

    gold = Item.objects.get(is_gold=True)
    assert gold.payload == {"text": "known"}
    assert gold.gold_answer == {"labels": ["pos"]}


def test_duplicate_delivery_of_the_import_task_changes_nothing(project, engineer):
    upload = _upload(project, engineer, _jsonl([{"text": "a"}]))

    again = dataset_import_run(upload_id=upload.pk)

    assert again.status == DatasetUpload.Status.SUCCEEDED
    assert Item.objects.count() == 1


BAD_VALUES = [
    (b'{"text": "x", "score": 1e400}', "field 'score'", "out of range"),
    (b'{"text": "x", "n": ' + b"7" * 5000 + b"}", "field 'n'", "5000 digits"),
    (b'{"text": ' + b"[" * 200_000 + b"]" * 200_000 + b"}", "field 'text[0]", "nested"),
    (b'{"text": "x", "meta": {"priority": "1e400"}}', "field 'priority'", "not a finite number"),
]


@pytest.mark.parametrize(("line", "field", "reason"), BAD_VALUES)
def test_numbers_and_nesting_past_the_limits_fail_the_upload_naming_line_and_field(
    project, engineer, line, field, reason
):
    data = b'{"text": "ok"}\n' + line + b"\n"

    upload = _upload(project, engineer, data, name="bad.jsonl", metadata_fields=["priority"])

    assert upload.status == DatasetUpload.Status.FAILED
    assert upload.error.startswith(f"bad.jsonl, line 2, {field}")
    assert reason in upload.error
    assert not Item.objects.exists()
    assert not Path(upload.stored_path).exists()  # the raw file is not left behind


def test_a_number_past_the_limits_in_a_label_studio_upload_fails_it(project, engineer):
    data = b'[{"data": {"text": "ok"}}, {"data": {"text": "x", "score": -1e400}}]'

    upload = _upload(project, engineer, data, name="export.json")

    assert upload.status == DatasetUpload.Status.FAILED
    assert upload.error.startswith("export.json, task 2, field 'data.score'")
    assert not Item.objects.exists()


def test_a_csv_priority_past_the_limits_fails_the_upload(project, engineer):
    data = b"text,priority\nok,1\nbad,1e400\n"

    upload = _upload(project, engineer, data, name="rows.csv", metadata_fields=["priority"])

    assert upload.status == DatasetUpload.Status.FAILED
    assert upload.error == "rows.csv, line 3, field 'priority': is not a finite number"
