"""A model version's page and API show the whole lineage the dossier's lineage.json holds,
with links only to what the caller may open."""

import io
import json
import zipfile

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from governance.services.dossiers import dossier_request
from tests.evaluation.factories import model_version
from tests.governance.factories import lineage_fixture
from training.models import ModelVersion, TrainingJob

pytestmark = pytest.mark.django_db


@pytest.fixture
def lineage(project, engineer):
    """The fixture's version, trained (as DPO would be) from an earlier version of its own
    project, so the lineage has two versions and two jobs."""
    fixture = lineage_fixture(project, engineer, n_items=6)
    parent = model_version(project, "support-bot sft")
    TrainingJob.objects.filter(pk=fixture.job.pk).update(parent_version=parent)
    ModelVersion.objects.filter(pk=fixture.version.pk).update(parent=parent)
    fixture.version.refresh_from_db()
    return fixture


def _page(client, user, version):
    client.force_login(user)
    return client.get(reverse("training:version", args=[version.project_id, version.pk]))


def _api(user, version):
    api = APIClient()
    api.force_authenticate(user)
    url = reverse("training-api:api-model-version", args=[version.project_id, version.pk])
    return api.get(url)


def test_the_version_page_links_every_step_from_dataset_to_version(client, engineer, lineage):
    project_id = lineage.version.project_id

    body = _page(client, engineer, lineage.version).content.decode()

    section = body[body.index('id="lineage"') :]
    dataset_url = reverse("annotation:dataset", args=[project_id, lineage.dataset.pk])
    snapshot_url = reverse("annotation:snapshot", args=[project_id, lineage.snapshot.pk])
    job_url = reverse("training:job", args=[project_id, lineage.job.pk])
    parent_url = reverse("training:version", args=[project_id, lineage.version.parent_id])
    for url in (dataset_url, snapshot_url, job_url, parent_url):
        assert f'href="{url}"' in section, url
    assert lineage.dataset.file_sha256 in section
    assert lineage.snapshot.manifest_sha256 in section
    assert lineage.base_model.weights_sha256 in section
    # Sources first: dataset, then snapshot, then job, then this version.
    order = [section.index(s) for s in (dataset_url, snapshot_url, job_url)]
    assert order == sorted(order)
    assert section.index(job_url) < section.index("(this version)")


def test_the_version_api_holds_the_lineage_the_dossier_records(engineer, compliance, lineage):
    response = _api(engineer, lineage.version)
    dossier = dossier_request(actor=compliance, version=lineage.version, run_now=True)
    with open(dossier.file_path, "rb") as handle:
        recorded = json.loads(zipfile.ZipFile(io.BytesIO(handle.read())).read("lineage.json"))

    assert response.status_code == 200
    nodes = {n["key"]: n for n in response.json()["lineage"]["nodes"]}
    expected = {
        *(f"dataset:{d['id']}" for d in recorded["datasets"]),
        *(f"snapshot:{s['id']}" for s in recorded["snapshots"]),
        *(f"job:{j['id']}" for j in recorded["jobs"]),
        *(f"version:{v['id']}" for v in recorded["versions"]),
        *(f"base:{b['id']}" for b in recorded["base_models"]),
    }
    assert set(nodes) == expected
    edges = {(e["from"], e["to"], e["relation"]) for e in response.json()["lineage"]["edges"]}
    assert edges == {tuple(e) for e in recorded["edges"]}
    dataset = nodes[f"dataset:{lineage.dataset.pk}"]
    assert dataset["hashes"] == {"file sha256": recorded["datasets"][0]["file_sha256"]}
    assert dataset["url"] == reverse(
        "annotation:dataset", args=[lineage.version.project_id, lineage.dataset.pk]
    )
    snapshot = nodes[f"snapshot:{lineage.snapshot.pk}"]
    assert snapshot["hashes"] == {"manifest sha256": lineage.snapshot.manifest_sha256}
    assert snapshot["api_url"] == reverse(
        "annotation-api:api-snapshot", args=[lineage.version.project_id, lineage.snapshot.pk]
    )
    assert nodes[f"version:{lineage.version.pk}"]["current"] is True


def test_a_lineage_step_in_a_project_the_caller_cannot_read_is_shown_without_name_or_link(
    client, engineer, other_project, lineage
):
    # Services keep a lineage inside one project; should a row ever point elsewhere, the
    # page must still not hand out what the caller may not read.
    foreign = model_version(other_project, "their secret base version")
    ModelVersion.objects.filter(pk=lineage.version.parent_id).update(parent=foreign)

    body = _page(client, engineer, lineage.version).content.decode()
    nodes = _api(engineer, lineage.version).json()["lineage"]["nodes"]

    assert "their secret base version" not in body
    assert reverse("training:version", args=[other_project.pk, foreign.pk]) not in body
    assert "in a project you cannot read" in body
    hidden = [n for n in nodes if not n["visible"]]
    assert len(hidden) == 2  # the foreign version and its base model
    for node in hidden:
        assert (node["name"], node["hashes"], node["url"], node["id"]) == ("", {}, None, None)
        assert node["key"].startswith("hidden:")
    assert not any(n["project"] == other_project.pk for n in nodes)
