import csv
import io
import json
import uuid
import zipfile

import pyarrow.parquet as pq
import pytest
from datasets import load_dataset
from django.urls import reverse
from rest_framework.test import APIClient

from annotation import services
from annotation.importing import content_hash
from annotation.models import Dataset, DatasetUpload, Item
from annotation.selectors import pseudonym, settings_for
from annotation.selectors.exports import ANNOTATION_COLUMNS, ITEM_COLUMNS
from annotation.services import hf_export
from annotation.services.datasets import Provenance, dataset_import_run, dataset_upload_create
from core.models import AuditEvent, Role
from tests.annotation.factories import DatasetFactory, ItemFactory, classification_setup, label_next

pytestmark = pytest.mark.django_db


class Labelled:
    """A classification project: two annotators and an adjudicator have left items agreed,
    adjudicated, disputed, in progress and unlabelled; one honeypot."""

    def __init__(self, project, member_of):
        self.project = project
        classification_setup(project, k=2)
        services.guideline_publish(
            project=project, markdown="Label the sentiment.", published_by=project.created_by
        )
        self.dataset = DatasetFactory(project=project, created_by=project.created_by)
        self.items = [
            ItemFactory(dataset=self.dataset, payload={"text": f"review {n}"}, external_id=f"r{n}")
            for n in range(5)
        ]
        self.honeypot = ItemFactory(
            dataset=self.dataset,
            payload={"text": "known"},
            is_gold=True,
            gold_answer={"labels": ["pos"]},
        )
        self.a = member_of(Role.ANNOTATOR, "alice")
        self.b = member_of(Role.ANNOTATOR, "bob")
        self.judge = member_of(Role.ADJUDICATOR, "judge")
        for label in ("pos", "pos", "pos", "pos"):
            label_next(project, self.a, label)
        for label in ("pos", "neg", "neg"):
            label_next(project, self.b, label)
        services.adjudication_lease_next(project=project, adjudicator=self.judge)
        services.adjudication_resolve(
            project=project,
            item_id=self.items[1].pk,
            adjudicator=self.judge,
            value={"labels": ["neg"]},
            reason="Sarcasm.",
        )
        self.people = [self.a, self.b, self.judge]

    def name(self, user) -> str:
        return pseudonym(settings_for(self.project), user.pk)


@pytest.fixture
def labelled(project, member_of):
    return Labelled(project, member_of)


@pytest.fixture
def engineer_api(engineer):
    api = APIClient()
    api.force_authenticate(engineer)
    return api


def _get(api, project, kind, fmt, **params):
    url = reverse(f"annotation-api:api-export-{kind}", args=[project.pk, fmt])
    response = api.get(url, params)
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return response, body


def _cache(tmp_path) -> str:
    # A cache of its own: `datasets` would otherwise reuse what an earlier run loaded from
    # the same path.
    return str(tmp_path / "hf-cache")


def _assert_pseudonymous(body: bytes, people) -> None:
    for user in people:
        assert user.username.encode() not in body
        assert user.email.encode() not in body


def test_annotations_export_has_a_row_per_answer_with_pseudonyms_and_times(
    labelled, engineer_api, tmp_path
):
    response, body = _get(engineer_api, labelled.project, "annotations", "jsonl")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-ndjson"
    rows = [json.loads(line) for line in body.decode().splitlines()]
    assert [r["stage"] for r in rows] == ["primary"] * 7 + ["adjudication"]
    assert all(list(r) == list(ANNOTATION_COLUMNS) for r in rows)
    by_item = {}
    for r in rows[:7]:
        by_item.setdefault(r["item_id"], []).append((r["annotator"], r["label"]))
    first = labelled.items[0].pk
    a, b = labelled.name(labelled.a), labelled.name(labelled.b)
    assert by_item[first] == [(a, "pos"), (b, "pos")]
    assert all(r["guideline_version"] == 1 and r["schema_version"] == 1 for r in rows[:7])
    assert all(r["seconds_spent"] >= 0 and r["seconds_source"] for r in rows)
    assert all(r["created_at"] <= r["submitted_at"] for r in rows)
    adjudication = rows[-1]
    assert adjudication["item_id"] == labelled.items[1].pk
    assert adjudication["annotator"] == labelled.name(labelled.judge)
    assert adjudication["value"] == {"labels": ["neg"]}
    _assert_pseudonymous(body, labelled.people)
    # The same file loads as a Hugging Face dataset.
    (tmp_path / "a.jsonl").write_bytes(body)
    loaded = load_dataset(
        "json", data_files=str(tmp_path / "a.jsonl"), split="train", cache_dir=_cache(tmp_path)
    )
    assert loaded.num_rows == 8
    assert loaded[0]["annotator"] == labelled.name(labelled.a)


def test_annotations_csv_has_the_columns_and_no_names(labelled, engineer_api):
    response, body = _get(engineer_api, labelled.project, "annotations", "csv")

    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(body.decode())))
    assert tuple(rows[0]) == ANNOTATION_COLUMNS
    assert len(rows) == 1 + 8
    label = ANNOTATION_COLUMNS.index("label")
    assert [r[label] for r in rows[1:]].count("neg") == 3
    _assert_pseudonymous(body, labelled.people)


def test_a_csv_cell_a_spreadsheet_would_run_is_quoted(labelled, engineer_api):
    ItemFactory(dataset=labelled.dataset, payload={"text": "x"}, external_id="=HYPERLINK(1)")

    _, body = _get(engineer_api, labelled.project, "items", "csv")

    rows = list(csv.reader(io.StringIO(body.decode())))
    external = [r[ITEM_COLUMNS.index("external_id")] for r in rows[1:]]
    assert "'=HYPERLINK(1)" in external
    assert "=HYPERLINK(1)" not in external


def test_items_export_gives_each_item_its_status_and_labels(labelled, engineer_api):
    response, body = _get(engineer_api, labelled.project, "items", "jsonl")

    rows = {r["item_id"]: r for r in map(json.loads, body.decode().splitlines())}
    statuses = [rows[i.pk]["status"] for i in [*labelled.items, labelled.honeypot]]
    assert statuses == [
        "agreed",
        "adjudicated",
        "disputed",
        "in_progress",
        "unlabelled",
        "honeypot",
    ]
    assert all(list(r) == list(ITEM_COLUMNS) for r in rows.values())
    agreed = rows[labelled.items[0].pk]
    assert agreed["gold_label"] == {"labels": ["pos"]}
    assert agreed["gold_method"] == "unanimous"
    assert [a["annotator"] for a in agreed["annotations"]] == [
        labelled.name(labelled.a),
        labelled.name(labelled.b),
    ]
    assert rows[labelled.items[1].pk]["gold_decided_by"] == labelled.name(labelled.judge)
    assert rows[labelled.honeypot.pk]["honeypot_answer"] == {"labels": ["pos"]}
    assert rows[labelled.items[4].pk]["annotations"] == []
    _assert_pseudonymous(body, labelled.people)


def test_a_dataset_scoped_export_holds_only_that_datasets_items(labelled, engineer_api):
    other = DatasetFactory(project=labelled.project, created_by=labelled.project.created_by)
    ItemFactory(dataset=other, payload={"text": "elsewhere"})

    _, body = _get(engineer_api, labelled.project, "items", "jsonl", dataset=other.pk)

    rows = [json.loads(line) for line in body.decode().splitlines()]
    assert [r["payload"] for r in rows] == [{"text": "elsewhere"}]


def test_hugging_face_exports_load_with_datasets_and_carry_a_card(labelled, engineer_api, tmp_path):
    response, body = _get(engineer_api, labelled.project, "items", "hf")

    assert response.status_code == 200
    assert response["Content-Disposition"].endswith('.zip"')
    folder = tmp_path / "items"
    zipfile.ZipFile(io.BytesIO(body)).extractall(folder)
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlicense: cc-by-4.0\n")
    assert "By `status`: adjudicated: 1, agreed: 1, disputed: 1" in card
    loaded = load_dataset(str(folder), split="train", cache_dir=_cache(tmp_path))
    assert loaded.num_rows == 6
    first = loaded[0]
    assert first["text"] == "review 0"
    assert first["status"] == "agreed"
    assert first["gold_label"] == {"labels": ["pos"]}
    assert first["annotations"][0]["annotator"] == labelled.name(labelled.a)

    _, body = _get(engineer_api, labelled.project, "annotations", "hf")
    folder = tmp_path / "answers"
    zipfile.ZipFile(io.BytesIO(body)).extractall(folder)
    answers = load_dataset(
        "parquet",
        data_files=str(folder / "data" / "*.parquet"),
        split="train",
        cache_dir=_cache(tmp_path),
    )
    assert answers.num_rows == 8
    assert answers["stage"].count("adjudication") == 1
    _assert_pseudonymous(body, labelled.people)


def test_hugging_face_export_keeps_mixed_fields_as_json_text(project, engineer_api, tmp_path):
    classification_setup(project)
    dataset = DatasetFactory(project=project, created_by=project.created_by)
    ItemFactory(dataset=dataset, payload={"text": "a", "extra": "words"})
    ItemFactory(dataset=dataset, payload={"text": "b", "extra": [1, 2]})

    _, body = _get(engineer_api, project, "items", "hf")

    folder = tmp_path / "items"
    zipfile.ZipFile(io.BytesIO(body)).extractall(folder)
    loaded = load_dataset(str(folder), split="train", cache_dir=_cache(tmp_path))
    assert [json.loads(v) for v in loaded["extra"]] == ["words", [1, 2]]
    assert loaded["text"] == ["a", "b"]
    assert "| `extra` | JSON text |" in (folder / "README.md").read_text()


def test_label_studio_export_imports_back_through_our_importer(
    labelled, engineer, engineer_api, tmp_path
):
    response, body = _get(engineer_api, labelled.project, "items", "labelstudio")

    tasks = json.loads(body)
    assert len(tasks) == 6
    agreed = tasks[0]
    assert agreed["data"] == {"text": "review 0"}
    region = {"from_name": "label", "to_name": "text", "type": "choices"}
    assert [a["result"] for a in agreed["annotations"]] == [
        [{**region, "value": {"choices": ["pos"]}}]
    ] * 2
    assert agreed["predictions"][0]["model_version"] == "gold-unanimous"
    assert tasks[1]["annotations"][-1]["ground_truth"] is True
    upload = dataset_upload_create(
        project=labelled.project,
        uploaded_by=engineer,
        file=io.BytesIO(body),
        file_name="tasks.json",
        provenance=Provenance("round trip", "CC-BY-4.0", "terms", labelled.dataset.collection_date),
        run_now=True,
    )
    upload = dataset_import_run(upload_id=upload.pk)

    assert upload.status == DatasetUpload.Status.SUCCEEDED, upload.error
    again = list(Item.objects.filter(dataset=upload.dataset).order_by("row_number"))
    before = [*labelled.items, labelled.honeypot]
    assert [i.content_hash for i in again] == [content_hash(i.payload) for i in before]
    assert [i.external_id for i in again[:5]] == ["r0", "r1", "r2", "r3", "r4"]
    assert [i.is_gold for i in again] == [False] * 5 + [True]
    assert again[-1].gold_answer == {"labels": ["pos"]}


def test_argilla_records_carry_responses_and_the_gold_suggestion(labelled, engineer_api):
    _, body = _get(engineer_api, labelled.project, "items", "argilla")

    records = [json.loads(line) for line in body.decode().splitlines()]
    assert len(records) == 6
    first = records[0]
    assert set(first) == {
        "id",
        "fields",
        "metadata",
        "suggestions",
        "responses",
        "vectors",
        "_server_id",
    }
    assert first["fields"] == {"text": "review 0"}
    assert [r["value"] for r in first["responses"]["label"]] == ["pos", "pos"]
    user_ids = {r["user_id"] for r in first["responses"]["label"]}
    assert len(user_ids) == 2
    assert all(uuid.UUID(u).version == 5 for u in user_ids)
    assert first["suggestions"]["label"] == {
        "value": "pos",
        "score": None,
        "agent": "tuning-portal/unanimous",
    }
    assert first["metadata"]["status"] == "agreed"
    _assert_pseudonymous(body, labelled.people)


def test_opening_an_export_is_audited(labelled, engineer, engineer_api):
    _get(engineer_api, labelled.project, "items", "csv", dataset=labelled.dataset.pk)

    event = AuditEvent.objects.filter(action="annotation.export").get()
    assert event.data == {"kind": "items", "format": "csv", "dataset": labelled.dataset.pk}


@pytest.mark.parametrize(
    "role", [Role.ANNOTATOR, Role.ADJUDICATOR, Role.REVIEWER, Role.COMPLIANCE, Role.ADMIN]
)
def test_only_engineers_may_export(labelled, member_of, client, role):
    user = member_of(role, f"who-{role}")
    api = APIClient()
    api.force_authenticate(user)
    client.force_login(user)

    for kind in ("annotations", "items"):
        response, _ = _get(api, labelled.project, kind, "jsonl")
        assert response.status_code == 403
        page = client.get(reverse(f"annotation:export-{kind}", args=[labelled.project.pk, "csv"]))
        assert page.status_code == 403
    assert not AuditEvent.objects.filter(action="annotation.export").exists()


def test_an_unknown_format_or_a_strangers_dataset_is_refused(
    labelled, engineer_api, other_project, client, engineer
):
    response, body = _get(engineer_api, labelled.project, "annotations", "labelstudio")
    assert response.status_code == 400
    assert b"annotations export as jsonl, csv, hf" in body

    foreign = DatasetFactory(project=other_project, created_by=other_project.created_by)
    response, _ = _get(engineer_api, labelled.project, "items", "jsonl", dataset=foreign.pk)
    assert response.status_code == 404
    client.force_login(engineer)
    url = reverse("annotation:export-items", args=[labelled.project.pk, "xml"])
    assert client.get(url).status_code == 400
    assert not AuditEvent.objects.filter(action="annotation.export").exists()


def test_the_datasets_pages_show_the_export_buttons_to_engineers_only(
    labelled, engineer, compliance, client
):
    client.force_login(engineer)
    url = reverse("annotation:dataset", args=[labelled.project.pk, labelled.dataset.pk])
    page = client.get(url)
    assert f"exports/items/hf/?dataset={labelled.dataset.pk}".encode() in page.content
    page = client.get(reverse("annotation:datasets", args=[labelled.project.pk]))
    assert b'data-testid="export-annotations-csv"' in page.content

    client.force_login(compliance)
    page = client.get(reverse("annotation:datasets", args=[labelled.project.pk]))
    assert page.status_code == 200
    assert b"label-exports" not in page.content
    assert Dataset.objects.filter(project=labelled.project).count() == 1


def test_column_types_are_unified_across_chunks_and_mixed_ones_become_json():
    rows = [
        {"n": 1, "meta": {"a": "x"}, "mixed": "text", "empty": None},
        {"n": 2, "meta": {"a": "y"}, "mixed": "more", "empty": None},
        {"n": 2.5, "meta": {"b": 3}, "mixed": [1, 2], "empty": None, "late": True},
    ]

    plan = hf_export.plan_columns(rows, chunk=2)

    schema = plan.schema()
    assert str(schema.field("n").type) == "double"
    assert str(schema.field("meta").type) == "struct<a: string, b: int64>"
    assert str(schema.field("empty").type) == "string"
    assert str(schema.field("late").type) == "bool"
    assert plan.json_columns == {"mixed"}


def test_the_zipped_folder_holds_every_chunk_as_a_row_group():
    rows = [{"i": i, "text": f"row {i}"} for i in range(5)]

    body = b"".join(hf_export.hf_zip_chunks(lambda: iter(rows), card=lambda *_: "card", chunk=2))

    archive = zipfile.ZipFile(io.BytesIO(body))
    assert archive.read("README.md") == b"card"
    parquet = pq.ParquetFile(io.BytesIO(archive.read(hf_export.DATA_FILE)))
    assert parquet.metadata.num_row_groups == 3
    assert parquet.read().to_pylist() == rows
