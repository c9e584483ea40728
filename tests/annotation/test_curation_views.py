import json

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from annotation.models import QualityCheck, Snapshot
from annotation.services.quality import pii_apply, quality_check_run, quality_check_start
from annotation.services.snapshots import snapshot_create
from core.models import Role
from tests.annotation.factories import DatasetFactory, classification_setup, gold_item

pytestmark = pytest.mark.django_db

ROLES = [r.value for r in Role]
READERS = {"engineer", "admin", "compliance"}
SECRET = "reach me at carol@example.net"


@pytest.fixture
def curated(project, engineer):
    classification_setup(project)
    dataset = DatasetFactory(project=project, name="tickets")
    gold_item(dataset, {"text": SECRET}, {"labels": ["pos"]})
    for i in range(9):
        gold_item(dataset, {"text": f"plain ticket {i}"}, {"labels": ["neg" if i % 3 else "pos"]})
    check = quality_check_start(actor=engineer, project=project, kind="pii")
    check = quality_check_run(check_id=check.pk)
    (redacted,) = pii_apply(actor=engineer, check=check, action="redact")
    snapshot = snapshot_create(actor=engineer, project=project, name="v1", seed=3)
    leakage = quality_check_start(
        actor=engineer, project=project, kind="leakage", snapshot=snapshot
    )
    quality_check_run(check_id=leakage.pk)
    return {"original": dataset, "redacted": redacted, "check": check, "snapshot": snapshot}


@pytest.mark.parametrize("role", ROLES)
def test_only_engineers_download_exports(client, project, curated, member_of, role):
    client.force_login(member_of(role))
    url = reverse(
        "annotation:snapshot-export", args=[project.pk, curated["snapshot"].pk, "classification"]
    )
    response = client.get(url)
    if role != "engineer":
        assert response.status_code == 403
        return
    assert response.status_code == 200
    assert response["X-Manifest-SHA256"] == curated["snapshot"].manifest_sha256
    rows = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]
    assert len(rows) == 10
    assert "[EMAIL]" in " ".join(r["text"] for r in rows)  # the redacted version went in
    bad = client.get(url.replace("classification", "preference"))
    assert bad.status_code == 400


@pytest.mark.parametrize("role", ROLES)
def test_only_engineers_see_unredacted_originals(client, project, curated, member_of, role):
    user = member_of(role)
    client.force_login(user)
    original = reverse("annotation:dataset", args=[project.pk, curated["original"].pk])
    report = reverse("annotation:check", args=[project.pk, curated["check"].pk])
    pages = [client.get(original), client.get(report)]
    api = APIClient()
    api.force_authenticate(user)
    items = api.get(reverse("annotation-api:api-items", args=[project.pk]))
    if role not in READERS:
        assert all(p.status_code == 403 for p in pages)
        return
    seen = [p.content.decode() for p in pages]
    if items.status_code == 200:
        seen.append(items.content.decode())
    shown = any("carol@example.net" in text for text in seen)
    assert shown == (role == "engineer")


@pytest.mark.parametrize("role", ROLES)
def test_only_engineers_start_checks_and_take_snapshots(client, project, curated, member_of, role):
    client.force_login(member_of(role))
    url = reverse("annotation:curation", args=[project.pk])
    checks, snapshots = QualityCheck.objects.count(), Snapshot.objects.count()

    client.post(url, {"form": "check", "kind": "duplicates"})
    client.post(
        url,
        {
            "form": "snapshot",
            "name": "v2",
            "seed": "1",
            "train": "0.8",
            "validation": "0.1",
            "test": "0.1",
        },
    )

    if role == "engineer":
        assert QualityCheck.objects.count() == checks + 2  # duplicates, and leakage of v2
        assert Snapshot.objects.filter(name="v2").exists()
    else:
        assert (QualityCheck.objects.count(), Snapshot.objects.count()) == (checks, snapshots)


def test_snapshot_form_names_the_bad_field(client, project, curated, engineer):
    client.force_login(engineer)
    response = client.post(
        reverse("annotation:curation", args=[project.pk]),
        {"form": "snapshot", "name": "x", "train": "0.9", "validation": "0.2", "test": "0.1"},
        follow=True,
    )
    assert "split_ratios" in response.content.decode()
    assert not Snapshot.objects.filter(name="x").exists()


def test_snapshot_page_shows_manifest_leakage_and_comparison(client, project, curated, engineer):
    client.force_login(engineer)
    first = curated["snapshot"]
    second = snapshot_create(actor=engineer, project=project, name="v1", seed=4)
    html = client.get(
        reverse("annotation:snapshot", args=[project.pk, second.pk]) + f"?compare={first.pk}"
    ).content.decode()
    assert second.manifest_sha256 in html
    assert 'data-testid="comparison"' in html
    assert "not checked yet</strong> (queued)" in html  # v2's check has not run yet
    first_html = client.get(
        reverse("annotation:snapshot", args=[project.pk, first.pk])
    ).content.decode()
    assert "none between splits" in first_html or "duplicates across splits" in first_html


def test_snapshot_checks_card_refreshes_itself_while_leakage_is_checked(
    client, project, curated, engineer
):
    from annotation.services import quality

    client.force_login(engineer)
    snapshot = snapshot_create(actor=engineer, project=project, name="v9", seed=9)
    check = QualityCheck.objects.get(snapshot=snapshot, kind="leakage")  # started with it
    url = reverse("annotation:snapshot", args=[project.pk, snapshot.pk])

    card = client.get(url, headers={"HX-Request": "true"}).content.decode()

    assert card.lstrip().startswith('<section class="card" id="snapshot-checks"')
    assert 'hx-trigger="every 2s"' in card
    assert "not checked yet</strong> (queued)" in card
    quality.quality_check_run(check_id=check.pk)
    card = client.get(url, headers={"HX-Request": "true"}).content.decode()
    assert "hx-trigger" not in card
    assert "none between splits" in card or "duplicates across splits" in card


@pytest.mark.parametrize("role", ROLES)
def test_snapshot_api_by_role(project, curated, member_of, role):
    api = APIClient()
    api.force_authenticate(member_of(role))
    listing = api.get(reverse("annotation-api:api-snapshots", args=[project.pk]))
    created = api.post(
        reverse("annotation-api:api-snapshots", args=[project.pk]),
        {"name": "api", "seed": 2},
        format="json",
    )
    export = api.get(
        reverse(
            "annotation-api:api-snapshot-export",
            args=[project.pk, curated["snapshot"].pk, "classification"],
        )
    )
    assert listing.status_code == (200 if role in READERS else 403)
    assert created.status_code == (201 if role == "engineer" else 403)
    assert export.status_code == (200 if role == "engineer" else 403)
    if role == "engineer":
        detail = api.get(
            reverse("annotation-api:api-snapshot", args=[project.pk, curated["snapshot"].pk])
        )
        assert detail.json()["leakage"]["checked"] is True


def test_check_api_reports_progress_and_result(project, curated, engineer):
    api = APIClient()
    api.force_authenticate(engineer)
    response = api.get(reverse("annotation-api:api-check", args=[project.pk, curated["check"].pk]))
    body = response.json()
    assert body["status"] == "succeeded"
    assert body["done"] == body["total"] == 10
    assert body["result"]["counts"] == {"EMAIL": 1}
    bad = api.post(
        reverse("annotation-api:api-checks", args=[project.pk]), {"kind": "leakage"}, format="json"
    )
    assert bad.status_code == 400
    assert "snapshot" in bad.json()
