"""Large JSON Lines imports parsed by worker processes: the same rows, refusals and
transaction as a serial import (real child processes, real PostgreSQL)."""

import io
import json

import pytest
from cryptography.fernet import Fernet
from django.test import override_settings

from annotation import import_workers
from annotation.importing import ImportFormat, ImportRefused, iter_rows
from annotation.item_rows import ITEM_COLUMNS, OPEN, ItemRows
from annotation.models import DatasetUpload, Item
from annotation.services.datasets import import_workers_for
from core import keys
from core.fields import decrypt_json
from tests.annotation.test_datasets import _upload
from tests.portal.factories import MembershipFactory, ProjectFactory

pytestmark = pytest.mark.django_db

ROWS = [
    {"id": "a-1", "text": "first", "meta": {"lang": "en", "priority": "0.5"}},
    {"text": "ünïcödé ✓", "meta": {"lang": "de"}},
    {"id": 3, "text": "a honeypot", "gold_answer": {"labels": ["pos"]}},
    {"text": "<script>alert(1)</script>", "extra": [1, 2, {"deep": None}]},
    {"id": "a-5", "text": "last"},
]
LINES = [(json.dumps(row) + "\n").encode() for row in ROWS]
# A blank line is skipped but still counted, as in a serial parse.
LINES.insert(2, b"   \n")


def _job(key: str) -> import_workers.Job:
    return import_workers.Job(
        filename="rows.jsonl",
        required=("text",),
        metadata_fields=(),
        project_id=7,
        dataset_id=9,
        sha256="ab" * 32,
        key=key,
    )


def _readable(row: tuple, key: str) -> tuple:
    """A COPY row with its ciphertexts decrypted (each encryption draws a fresh IV)."""
    fernet = Fernet(key)
    values = list(row)
    for index in (4, 13):
        if values[index] is not None:
            values[index] = json.loads(fernet.decrypt(values[index].encode()))
    return tuple(values)


def test_workers_make_the_rows_a_serial_parse_makes_in_file_order():
    key = Fernet.generate_key().decode()
    job = _job(key)
    serial_rows = ItemRows(job.project_id, job.dataset_id, job.sha256, Fernet(key))
    parsed = iter_rows(
        io.BytesIO(b"".join(LINES)),
        filename=job.filename,
        fmt=ImportFormat.JSONL,
        required_fields=job.required,
    )
    serial = [_readable(serial_rows.copy_row(row), key) for row in parsed]

    # Chunks of two lines over two workers: every chunk boundary and hand-over is crossed.
    parallel = list(import_workers.copy_rows(iter(LINES), job, workers=2, chunk_lines=2))

    assert [_readable(row, key) for row in parallel] == serial
    assert [row[2] for row in parallel] == [1, 2, 4, 5, 6]  # line numbers, blank line 3
    gold = _readable(parallel[2], key)
    assert (gold[4], gold[12], gold[13]) == ({"text": "a honeypot"}, True, {"labels": ["pos"]})


def test_the_first_refusal_in_file_order_is_raised_with_its_line():
    lines = [*LINES, b'{"text": "fine"}\n', b'{"text": oops}\n', b'{"no_text": 1}\n']

    with pytest.raises(ImportRefused) as refused:
        list(
            import_workers.copy_rows(
                iter(lines), _job(Fernet.generate_key().decode()), workers=2, chunk_lines=2
            )
        )

    assert (refused.value.file, refused.value.line) == ("rows.jsonl", 8)
    assert "malformed JSON" in refused.value.reason


def test_a_worker_that_dies_is_reported_not_waited_for():
    with pytest.raises(RuntimeError, match="an import worker stopped"):
        list(import_workers.copy_rows(iter(LINES), _job("not a fernet key"), workers=2))


def test_only_large_json_lines_files_on_several_cores_go_to_workers():
    big = 64 * 1024**2
    with override_settings(PORTAL_IMPORT_PARALLEL_MIN_BYTES=1024, PORTAL_IMPORT_WORKERS=2):
        assert import_workers_for(ImportFormat.JSONL, big) in (0, 2)  # 0 on a 1-core machine
        assert import_workers_for(ImportFormat.JSONL, 100) == 0
        assert import_workers_for(ImportFormat.CSV, big) == 0
        assert import_workers_for(ImportFormat.LABEL_STUDIO, big) == 0
    with override_settings(PORTAL_IMPORT_PARALLEL_MIN_BYTES=1024, PORTAL_IMPORT_WORKERS=1):
        assert import_workers_for(ImportFormat.JSONL, big) == 0


def test_item_rows_write_the_models_columns():
    assert OPEN == Item.State.OPEN
    assert set(ITEM_COLUMNS) <= {field.attname for field in Item._meta.concrete_fields}


def _items(project) -> list[tuple]:
    return list(
        Item.objects.filter(project=project)
        .order_by("row_number")
        .values_list(
            "row_number",
            "external_id",
            "payload",
            "content_hash",
            "metadata",
            "priority",
            "random_key",
            "is_gold",
            "gold_answer",
        )
    )


@pytest.fixture
def two_projects(engineer):
    projects = [ProjectFactory(), ProjectFactory()]
    for project in projects:
        MembershipFactory(project=project, user=engineer, role="engineer")
    return projects


@pytest.mark.skipif(
    not import_workers_for(ImportFormat.JSONL, 1 << 60), reason="one core: no workers"
)
def test_an_import_through_workers_stores_what_a_serial_import_stores(two_projects, engineer):
    serial_project, parallel_project = two_projects
    data = b"".join(LINES)

    serial = _upload(serial_project, engineer, data, required_fields=["text"])
    with override_settings(PORTAL_IMPORT_PARALLEL_MIN_BYTES=0):
        parallel = _upload(parallel_project, engineer, data, required_fields=["text"])

    assert serial.status == parallel.status == DatasetUpload.Status.SUCCEEDED
    assert parallel.rows_done == 5
    assert _items(parallel_project) == _items(serial_project)


@pytest.mark.skipif(
    not import_workers_for(ImportFormat.JSONL, 1 << 60), reason="one core: no workers"
)
@override_settings(PORTAL_IMPORT_PARALLEL_MIN_BYTES=0)
def test_a_refused_import_through_workers_keeps_nothing(project, engineer):
    upload = _upload(project, engineer, b"".join([*LINES, b"[1, 2]\n"]), name="bad.jsonl")

    assert upload.status == DatasetUpload.Status.FAILED
    assert upload.error == "bad.jsonl, line 7: expected a JSON object, got a list"
    assert not Item.objects.filter(project=project).exists()


def test_decrypting_a_worker_row_with_the_configured_keys():
    """The worker encrypts under the configured primary key: the portal reads its rows."""
    job = _job(keys.primary_encryption_key())
    (row, *_) = import_workers.copy_rows(iter(LINES[:1]), job, workers=1)

    assert decrypt_json(row[4]) == {"text": "first"}


@pytest.mark.parametrize(
    ("line", "field"),
    [
        (b'{"text": "x", "score": 1e400}\n', "score"),
        (b'{"text": "x", "n": ' + b"7" * 5000 + b"}\n", "n"),
        (b'{"text": ' + b"[" * 200_000 + b"]" * 200_000 + b"}\n", "text[0][0][0][0][0][0][0]…"),
    ],
)
def test_workers_refuse_numbers_and_nesting_past_the_limits_with_line_and_field(line, field):
    lines = [*LINES, line]

    with pytest.raises(ImportRefused) as refused:
        list(
            import_workers.copy_rows(
                iter(lines), _job(Fernet.generate_key().decode()), workers=2, chunk_lines=2
            )
        )

    assert (refused.value.file, refused.value.line, refused.value.field) == (
        "rows.jsonl",
        7,
        field,
    )
