import pytest

from tests.governance.factories import dpo_version, lineage_fixture
from training.models import ModelVersion
from training.selectors.lineage import lineage_section

pytestmark = pytest.mark.django_db


@pytest.fixture
def chain(project, engineer):
    fixture = lineage_fixture(project, engineer, n_items=3)
    fixture.child = dpo_version(fixture, engineer)
    return fixture


def test_the_section_holds_the_version_what_it_came_from_and_the_audit_targets(chain):
    v1, v2 = chain.version, chain.child

    section = lineage_section(version=v2)

    assert [v["id"] for v in section.versions] == [v1.pk, v2.pk]
    assert [(j["id"], j["parent_version"], j["snapshot"]) for j in section.jobs] == [
        (chain.job.pk, None, chain.snapshot.pk),
        (v2.job_id, v1.pk, chain.snapshot.pk),
    ]
    assert [b["weights_sha256"] for b in section.base_models] == ["b" * 64]
    assert section.version_ids == [v1.pk, v2.pk]
    assert section.snapshot_ids == [chain.snapshot.pk]
    assert section.audit_targets == {
        "training.modelversion": [v1.pk, v2.pk],
        "training.trainingjob": [chain.job.pk, v2.job_id],
        "training.basemodel": [chain.base_model.pk],
    }


def test_the_sections_edges_stop_at_the_snapshots_which_annotation_traces(chain):
    section = lineage_section(version=chain.child)

    assert (f"snapshot:{chain.snapshot.pk}", f"job:{chain.child.job_id}", "training data") in (
        section.edges
    )
    assert (f"version:{chain.version.pk}", f"job:{chain.child.job_id}", "trained from") in (
        section.edges
    )
    assert not [e for e in section.edges if e[0].startswith("dataset:")]


def test_the_sections_version_row_is_the_object_passed_in_and_curves_only_numbers(chain):
    ModelVersion.objects.filter(pk=chain.child.pk).update(stage="canary")

    section = lineage_section(version=chain.child)

    assert section.version["stage"] == "candidate"  # as the caller holds it
    assert section.versions[-1]["stage"] == "canary"  # as read with the lineage
    assert section.version["checkpoint_sha256"] == {"a.bin": "1" * 64, "b.bin": "2" * 64}
    assert section.jobs[-1]["curves"] == {"loss": [[1, 0.5]]}
