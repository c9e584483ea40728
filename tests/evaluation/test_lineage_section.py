import pytest

from evaluation.selectors.lineage import lineage_section
from tests.governance.factories import dpo_version, gate_passed, lineage_fixture

pytestmark = pytest.mark.django_db


def test_the_section_reports_the_versions_own_gates_and_audits_its_parents_too(project, engineer):
    fixture = lineage_fixture(project, engineer, n_items=2)
    child = dpo_version(fixture, engineer)
    parent_run = gate_passed(fixture.version, engineer)
    own_run = gate_passed(child, engineer, passed=False)

    section = lineage_section(
        model_version_id=child.pk, lineage_version_ids=[fixture.version.pk, child.pk]
    )

    assert [(g["id"], g["gate"], g["passed"]) for g in section.evaluation["gates"]] == [
        (own_run.pk, "no regression", False)
    ]
    assert section.evaluation["gates"][0]["results"][0]["reason"] == "flagged groups: es"
    assert [c["label"] for c in section.evaluation["contestants"]] == [child.name]
    assert (section.evaluation["offline_metrics"], section.evaluation["ratings"]) == ([], [])
    assert sorted(section.audit_targets["evaluation.gaterun"]) == sorted(
        [parent_run.pk, own_run.pk]
    )


def test_a_version_never_evaluated_has_an_empty_section(project, engineer):
    fixture = lineage_fixture(project, engineer, n_items=2)

    section = lineage_section(
        model_version_id=fixture.version.pk, lineage_version_ids=[fixture.version.pk]
    )

    assert section.evaluation == {
        "contestants": [],
        "offline_metrics": [],
        "ratings": [],
        "gates": [],
    }
    assert section.audit_targets == {"evaluation.gaterun": []}
