import datetime
import io
import zipfile

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command

from annotation.importing import content_hash
from annotation.models import Dataset, DatasetUpload, Item
from annotation.services.datasets import Provenance, dataset_import_run, dataset_upload_create
from core.models import AuditEvent

pytestmark = pytest.mark.django_db

PROVENANCE = Provenance(
    source_description="Reviews from a public benchmark",
    license="CC-BY-4.0",
    consent_basis="public release",
    collection_date=datetime.date(2025, 6, 1),
)
FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "text": datasets.Value("string"),
        "label": datasets.ClassLabel(names=["neg", "pos"]),
        "turns": datasets.List({"role": datasets.Value("string"), "n": datasets.Value("int64")}),
    }
)


def _rows(prefix: str, n: int = 3) -> dict:
    return {
        "id": [f"{prefix}-{i}" for i in range(n)],
        "text": [f"{prefix} text {i}" for i in range(n)],
        "label": [i % 2 for i in range(n)],
        "turns": [[{"role": "user", "n": i}] for i in range(n)],
    }


def _hf(prefix: str, n: int = 3) -> datasets.Dataset:
    return datasets.Dataset.from_dict(_rows(prefix, n), features=FEATURES)


def _zip(folder) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, f"{folder.name}/{path.relative_to(folder).as_posix()}")
    return buffer.getvalue()


def _import(project, engineer, data: bytes, name: str, **kwargs) -> DatasetUpload:
    upload = dataset_upload_create(
        project=project,
        uploaded_by=engineer,
        file=io.BytesIO(data),
        file_name=name,
        provenance=PROVENANCE,
        run_now=True,
        **kwargs,
    )
    return dataset_import_run(upload_id=upload.pk)


def _items(upload) -> list[Item]:
    return list(Item.objects.filter(dataset=upload.dataset).order_by("row_number"))


def test_a_parquet_file_imports_with_ids_class_names_and_nested_fields(project, engineer, tmp_path):
    _hf("p").to_parquet(tmp_path / "rows.parquet")

    upload = _import(project, engineer, (tmp_path / "rows.parquet").read_bytes(), "rows.parquet")

    assert upload.status == DatasetUpload.Status.SUCCEEDED, upload.error
    items = _items(upload)
    assert [i.external_id for i in items] == ["p-0", "p-1", "p-2"]
    assert items[1].payload == {
        "text": "p text 1",
        "label": "pos",
        "turns": [{"role": "user", "n": 1}],
    }
    assert items[1].content_hash == content_hash(items[1].payload)
    assert [i.row_number for i in items] == [1, 2, 3]
    assert Dataset.objects.get().file_format == Dataset.Format.PARQUET


def test_a_saved_dataset_dict_folder_imports_every_split_in_order(project, engineer, tmp_path):
    folder = tmp_path / "reviews"
    datasets.DatasetDict({"train": _hf("tr", 3), "test": _hf("te", 2)}).save_to_disk(str(folder))

    upload = _import(project, engineer, _zip(folder), "reviews.zip")

    assert upload.status == DatasetUpload.Status.SUCCEEDED, upload.error
    items = _items(upload)
    assert [i.payload["text"] for i in items] == [
        "tr text 0",
        "tr text 1",
        "tr text 2",
        "te text 0",
        "te text 1",
    ]
    assert [i.metadata["split"] for i in items] == ["train"] * 3 + ["test"] * 2
    assert items[0].external_id == "tr-0"
    assert items[0].payload["label"] == "neg"
    assert Dataset.objects.get().file_format == Dataset.Format.HF_DATASET


def test_a_folder_of_parquet_files_and_a_single_arrow_file_import(project, engineer, tmp_path):
    folder = tmp_path / "hub"
    (folder / "data").mkdir(parents=True)
    _hf("a", 2).to_parquet(folder / "data" / "train-00000-of-00002.parquet")
    _hf("b", 2).to_parquet(folder / "data" / "train-00001-of-00002.parquet")
    _hf("c", 1).to_parquet(folder / "data" / "test-00000-of-00001.parquet")

    upload = _import(project, engineer, _zip(folder), "hub.zip")

    assert upload.status == DatasetUpload.Status.SUCCEEDED, upload.error
    items = _items(upload)
    assert [i.external_id for i in items] == ["c-0", "a-0", "a-1", "b-0", "b-1"]
    assert [i.metadata["split"] for i in items] == ["test"] + ["train"] * 4

    table = pa.table({"text": ["x", "y"], "score": [0.5, 1.5]})
    with (
        pa.OSFile(str(tmp_path / "rows.arrow"), "wb") as sink,
        pa.ipc.new_file(sink, table.schema) as writer,
    ):
        writer.write_table(table)
    upload = _import(project, engineer, (tmp_path / "rows.arrow").read_bytes(), "rows.arrow")
    assert upload.status == DatasetUpload.Status.SUCCEEDED, upload.error
    assert [i.payload for i in _items(upload)] == [
        {"text": "x", "score": 0.5},
        {"text": "y", "score": 1.5},
    ]


def test_the_command_imports_a_saved_dataset_folder(project, engineer, tmp_path):
    folder = tmp_path / "saved"
    _hf("s", 4).save_to_disk(str(folder))
    out = io.StringIO()

    call_command(
        "import_dataset",
        project.slug,
        str(folder),
        license="CC-BY-4.0",
        source="a saved dataset",
        consent="public release",
        user=engineer.username,
        stdout=out,
        stderr=io.StringIO(),
    )

    assert "imported 4 rows" in out.getvalue()
    assert Item.objects.filter(project=project).count() == 4
    with pytest.raises(CommandError, match="already imported"):
        call_command(
            "import_dataset",
            project.slug,
            str(folder),
            license="CC-BY-4.0",
            source="again",
            consent="public release",
            user=engineer.username,
            stdout=io.StringIO(),
            stderr=io.StringIO(),
        )


def _assert_refused_and_nothing_kept(upload, project, message):
    assert upload.status == DatasetUpload.Status.FAILED
    assert upload.error == message
    assert not Dataset.objects.filter(project=project).exists()
    assert not Item.objects.filter(project=project).exists()
    assert AuditEvent.objects.filter(action="dataset.import.failed").count() == 1


def test_a_bad_value_deep_in_a_saved_folder_is_named_and_nothing_is_imported(
    project, engineer, tmp_path
):
    folder = tmp_path / "broken"
    rows = _rows("ok", 3)
    rows["score"] = [1.0, 2.0, float("nan")]
    features = datasets.Features({**FEATURES, "score": datasets.Value("float64")})
    datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(_rows("ok", 2) | {"score": [1.0, 2.0]}, features),
            "test": datasets.Dataset.from_dict(rows, features),
        }
    ).save_to_disk(str(folder))

    upload = _import(project, engineer, _zip(folder), "broken.zip")

    _assert_refused_and_nothing_kept(
        upload,
        project,
        "broken.zip/broken/test/data-00000-of-00001.arrow, row 3, field 'score': is NaN or "
        "infinite, which cannot be stored; write null for a missing value",
    )


def test_binary_columns_and_unreadable_files_are_refused(project, engineer, tmp_path):
    pq.write_table(
        pa.table({"text": ["a", "b"], "image": [b"\x89PNG", b"\x89PNG"]}), tmp_path / "img.parquet"
    )

    upload = _import(project, engineer, (tmp_path / "img.parquet").read_bytes(), "img.parquet")

    _assert_refused_and_nothing_kept(
        upload,
        project,
        "img.parquet, row 1, field 'image': holds binary data (an image or audio?), which "
        "cannot be imported; drop the column, or store a path or URL instead",
    )
    upload = _import(project, engineer, b"PAR1 not really", "fake.parquet")
    assert upload.status == DatasetUpload.Status.FAILED
    assert upload.error.startswith("fake.parquet: not a readable Parquet file")
    upload = _import(project, engineer, _zip(tmp_path / "img.parquet"), "empty.zip")
    assert upload.error == (
        "empty.zip: holds no Hugging Face datasets folder (state.json or dataset_dict.json) "
        "and no .parquet or .arrow files"
    )
    assert not Item.objects.filter(project=project).exists()


def test_a_zip_member_pointing_outside_the_folder_is_refused(project, engineer):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../escape.parquet", b"x")

    upload = _import(project, engineer, buffer.getvalue(), "evil.zip")

    assert upload.status == DatasetUpload.Status.FAILED
    assert upload.error == "evil.zip/../escape.parquet: points outside the folder"
    assert not Item.objects.filter(project=project).exists()
