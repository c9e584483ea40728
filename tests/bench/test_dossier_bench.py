import time

import pytest

from core import keys
from governance.dossier.build import dossier_build
from governance.services.approvals import use_declaration_set
from governance.services.dossiers import dossier_verify
from tests.governance.factories import gate_passed, lineage_fixture

pytestmark = pytest.mark.django_db

ITEMS = 100_000
ANSWERS_PER_ITEM = 3


@pytest.fixture
def big_lineage(project, engineer):
    fixture = lineage_fixture(
        project, engineer, n_items=ITEMS, n_annotators=12, per_item=ANSWERS_PER_ITEM
    )
    gate_passed(fixture.version, engineer)
    use_declaration_set(
        actor=engineer,
        version=fixture.version,
        intended_use="Support replies.",
        license="Apache-2.0",
        commercial_use=True,
    )
    return fixture


def test_dossier_for_100k_items_builds_in_30_s_and_verifies_in_5_s(big_lineage, report):
    key = keys.signing_key()

    start = time.perf_counter()
    built = dossier_build(big_lineage.version, key)
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    result = dossier_verify(data=built.data)
    verify_s = time.perf_counter() - start

    report("dossier_build_100k_items_s", build_s, "s")
    report("verify_dossier_s", verify_s, "s")
    report("dossier_100k_items_bytes", len(built.data), "bytes")
    assert result.ok, result.problem
    assert build_s <= 30
    assert verify_s <= 5
