import pytest
from playwright.sync_api import expect

from core.models import Role
from tests.e2e.conftest import log_in
from tests.e2e.steps import dossier_build_download_verify
from tests.governance.factories import gate_passed, lineage_fixture
from tests.portal.factories import MembershipFactory, UserFactory, password_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_compliance_user_finds_a_version_downloads_its_dossier_and_verifies_it(
    page, project, celery_worker, tmp_path
):
    engineer = UserFactory(username="erin")
    MembershipFactory(project=project, role=Role.ENGINEER, user=engineer)
    officer = UserFactory(username="cora")
    MembershipFactory(project=project, role=Role.COMPLIANCE, user=officer)
    lineage = lineage_fixture(project, engineer, n_items=12)
    gate_passed(lineage.version, engineer)

    log_in(page, "cora", password_for("cora"))
    page.get_by_role("link", name="Compliance").click()
    page.get_by_test_id("version-search").fill("support-bot")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name="support-bot v1").click()
    dossier_build_download_verify(page, tmp_path / "dossier.zip", timeout=90_000)
    page.get_by_role("link", name="Access log").click()
    expect(page.get_by_test_id("downloads")).to_contain_text("cora")
