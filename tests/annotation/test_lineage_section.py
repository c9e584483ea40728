import pytest

from annotation.models import DatasetUpload
from annotation.selectors.lineage import (
    lineage_section,
    snapshot_disagreement_rows,
    snapshot_figures,
)
from tests.governance.factories import lineage_fixture

pytestmark = pytest.mark.django_db


def test_the_section_lists_the_snapshots_their_datasets_and_the_audit_targets(project, engineer):
    fixture = lineage_fixture(project, engineer, n_items=5)
    upload = DatasetUpload.objects.create(
        project=project, file_name="rows.jsonl", dataset=fixture.dataset, created_by=engineer
    )

    section = lineage_section(snapshot_ids=[fixture.snapshot.pk])

    assert [(s["id"], s["member_count"]) for s in section.snapshots] == [(fixture.snapshot.pk, 5)]
    assert [(d["id"], d["license"]) for d in section.datasets] == [
        (fixture.dataset.pk, "CC-BY-4.0")
    ]
    assert section.datasets[0]["synthetic_share"]["rows"] == 5
    assert section.edges == [
        (f"dataset:{fixture.dataset.pk}", f"snapshot:{fixture.snapshot.pk}", "items")
    ]
    assert section.audit_targets == {
        "annotation.snapshot": [fixture.snapshot.pk],
        "annotation.dataset": [fixture.dataset.pk],
        "annotation.datasetupload": [upload.pk],
    }


def test_the_section_of_no_snapshots_is_empty(project, engineer):
    lineage_fixture(project, engineer, n_items=2)

    section = lineage_section(snapshot_ids=[])

    assert (section.snapshots, section.datasets, section.edges) == ([], [], [])
    assert all(ids == [] for ids in section.audit_targets.values())


def test_figures_and_disagreements_are_read_by_snapshot_id(project, engineer):
    fixture = lineage_fixture(project, engineer, n_items=10)

    figures = snapshot_figures(snapshot_id=fixture.snapshot.pk)
    rows = snapshot_disagreement_rows(snapshot_id=fixture.snapshot.pk)

    # Items 0 and 5 disagreed and were adjudicated: one row per label given to them.
    assert (figures["items"], figures["annotations"], figures["adjudicated"]) == (10, 20, 2)
    assert len(rows) == 4
    assert {r[0] for r in rows} == {str(fixture.snapshot.pk)}
    assert all(r[3].startswith("A-") for r in rows)
