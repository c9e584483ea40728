import os
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from annotation import services as annotation_services
from annotation.models import Item, Lease
from core.models import AuditEvent
from evaluation import services as evaluation_services
from evaluation.models import Battle, Judgment
from portal import housekeeping
from portal.celery import app as celery_app
from tests.annotation.factories import ItemFactory, classification_setup, label_next
from tests.evaluation.factories import build_campaign

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
LONG_AGO = timedelta(hours=3)
# Racing threads need a database server; the embedded SQLite run leaves them out.
ON_POSTGRESQL = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="threads race on a database server only"
)


def _run_out(lease_id: int) -> None:
    Lease.objects.filter(pk=lease_id).update(expires_at=timezone.now() - timedelta(seconds=1))


def _api(user) -> APIClient:
    api = APIClient()
    api.force_authenticate(user)
    return api


def _expiry_events(lease_id: int) -> list[AuditEvent]:
    return [
        event
        for event in AuditEvent.objects.filter(action="annotation.lease.expire")
        if lease_id in event.data["leases"]
    ]


@pytest.fixture
def one_item(project):
    classification_setup(project, k=1)
    return ItemFactory(project=project, dataset__project=project)


@pytest.fixture
def disputed(project, member_of):
    classification_setup(project, k=2)
    ItemFactory(project=project, dataset__project=project, payload={"text": "it is fine"})
    label_next(project, member_of("annotator", "x1"), "pos")
    return label_next(project, member_of("annotator", "x2"), "neg")


@pytest.fixture
def one_pair(project, engineer):
    campaign, _ = build_campaign(engineer, project, prompts=1, contestants=2)
    return campaign


def test_an_annotator_back_after_their_lease_ran_out_gets_the_item_again(
    client, settings, project, one_item, annotator
):
    # As in production, the project-wide sweep has just run and is not due again.
    settings.PORTAL_LEASE_SWEEP_SECONDS = 3600
    api = _api(annotator)
    url = reverse("annotation-api:api-queue-next", args=[project.pk])
    first = api.post(url, format="json")
    _run_out(first.json()["lease"])

    again = api.post(url, format="json")
    client.force_login(annotator)
    page = client.get(reverse("annotation:annotate", args=[project.pk]))

    assert again.status_code == 200, again.content
    assert again.json()["item"] == one_item.pk
    assert again.json()["lease"] != first.json()["lease"]
    assert page.status_code == 200
    assert Lease.objects.get(pk=first.json()["lease"]).state == Lease.State.EXPIRED
    assert Item.objects.get(pk=one_item.pk).assigned_count == 1
    assert len(_expiry_events(first.json()["lease"])) == 1


def test_an_annotation_lease_that_ran_out_goes_to_the_next_annotator(project, one_item, member_of):
    first, second = member_of("annotator", "first"), member_of("annotator", "second")
    url = reverse("annotation-api:api-queue-next", args=[project.pk])
    lease = _api(first).post(url, format="json").json()["lease"]
    _run_out(lease)

    taken = _api(second).post(url, format="json")

    assert taken.status_code == 200, taken.content
    assert taken.json()["item"] == one_item.pk
    assert Lease.objects.get(pk=lease).state == Lease.State.EXPIRED
    assert Item.objects.get(pk=one_item.pk).assigned_count == 1
    assert len(_expiry_events(lease)) == 1
    assert _api(first).post(url, format="json").status_code == 204  # k = 1, taken


def test_an_adjudicator_back_after_their_lease_ran_out_gets_the_item_again(
    client, project, disputed, adjudicator
):
    client.force_login(adjudicator)
    page_url = reverse("annotation:adjudicate", args=[project.pk])
    assert client.get(page_url).status_code == 200
    old = Lease.objects.get(kind=Lease.Kind.ADJUDICATE, annotator=adjudicator)
    _run_out(old.pk)

    page = client.get(page_url)
    again = _api(adjudicator).post(
        reverse("annotation-api:api-adjudication-next", args=[project.pk]), format="json"
    )

    assert page.status_code == 200
    assert again.status_code == 200, again.content
    assert again.json()["item"] == disputed.pk
    old.refresh_from_db()
    assert old.state == Lease.State.EXPIRED
    fresh = Lease.objects.get(kind=Lease.Kind.ADJUDICATE, state=Lease.State.ACTIVE)
    assert (fresh.item_id, fresh.annotator_id) == (disputed.pk, adjudicator.pk)
    assert again.json()["lease"] == fresh.pk
    [event] = _expiry_events(old.pk)
    assert event.data["adjudicate"] == 1
    assert event.data["items"] == [disputed.pk]


def test_an_adjudication_lease_that_ran_out_goes_to_another_adjudicator(
    project, disputed, member_of
):
    away, other = member_of("adjudicator", "away"), member_of("adjudicator", "other")
    left = annotation_services.adjudication_lease_next(project=project, adjudicator=away)
    _run_out(left.pk)
    url = reverse("annotation-api:api-adjudication-next", args=[project.pk])

    taken = _api(other).post(url, format="json")
    back = _api(away).post(url, format="json")
    annotation_services.adjudication_resolve(
        project=project,
        item_id=disputed.pk,
        adjudicator=other,
        value={"labels": ["pos"]},
        reason="Mild praise is positive",
    )

    assert taken.status_code == 200, taken.content
    assert taken.json()["item"] == disputed.pk
    assert back.status_code == 204  # the other adjudicator holds it now
    left.refresh_from_db()
    assert left.state == Lease.State.EXPIRED  # not recorded as submitted by the resolve
    assert Lease.objects.get(pk=taken.json()["lease"]).state == Lease.State.SUBMITTED


def test_a_reviewer_back_after_leaving_a_pair_open_gets_it_again_under_a_new_token(
    client, project, one_pair, reviewer
):
    api = _api(reviewer)
    url = reverse("evaluation-api:api-review-next", args=[project.pk, one_pair.pk])
    first = api.get(url).json()["token"]
    Judgment.objects.filter(token=first).update(shown_at=timezone.now() - LONG_AGO)

    again = api.get(url)
    client.force_login(reviewer)
    page = client.get(reverse("evaluation:review", args=[project.pk, one_pair.pk]))
    late = api.post(
        reverse("evaluation-api:api-review-submit", args=[project.pk, one_pair.pk]),
        {"token": first, "outcome": "a"},
        format="json",
    )

    assert again.status_code == 200, again.content
    assert page.status_code == 200
    fresh = Judgment.objects.get(campaign=one_pair)
    assert fresh.token == again.json()["token"] != first
    assert fresh.shown_at > timezone.now() - timedelta(minutes=1)
    assert Battle.objects.get(pk=fresh.battle_id).assigned == 1
    assert late.status_code == 400
    assert "not assigned to you" in late.content.decode()
    [event] = AuditEvent.objects.filter(action="evaluation.judgment.release")
    assert event.data["battles"] == [fresh.battle_id]


def test_a_review_pair_left_open_goes_to_another_reviewer(project, one_pair, member_of):
    away, other = member_of("reviewer", "away"), member_of("reviewer", "other")
    left = evaluation_services.judgment_next(campaign=one_pair, reviewer=away)
    Judgment.objects.filter(pk=left.pk).update(shown_at=timezone.now() - LONG_AGO)

    taken = _api(other).get(
        reverse("evaluation-api:api-review-next", args=[project.pk, one_pair.pk])
    )

    assert taken.status_code == 200, taken.content
    assert Judgment.objects.get(token=taken.json()["token"]).battle_id == left.battle_id
    assert not Judgment.objects.filter(pk=left.pk).exists()


def test_the_sweep_expires_every_kind_of_lease_nobody_came_back_for(
    project, one_pair, disputed, member_of, adjudicator, reviewer
):
    open_item = ItemFactory(project=project, dataset=disputed.dataset)
    label = annotation_services.item_lease_next(
        project=project, annotator=member_of("annotator", "idle")
    ).lease
    adjudicate = annotation_services.adjudication_lease_next(
        project=project, adjudicator=adjudicator
    )
    judgment = evaluation_services.judgment_next(campaign=one_pair, reviewer=reviewer)
    _run_out(label.pk)
    _run_out(adjudicate.pk)
    Judgment.objects.filter(pk=judgment.pk).update(shown_at=timezone.now() - LONG_AGO)

    counts = housekeeping.leases_sweep_expired()

    assert counts == {"annotation lease": 1, "adjudication lease": 1, "review pair": 1}
    states = dict(Lease.objects.filter(pk__in=[label.pk, adjudicate.pk]).values_list("pk", "state"))
    assert states == {label.pk: Lease.State.EXPIRED, adjudicate.pk: Lease.State.EXPIRED}
    assert label.item_id == open_item.pk
    assert Item.objects.get(pk=open_item.pk).assigned_count == 0
    assert not Judgment.objects.filter(pk=judgment.pk).exists()
    assert Battle.objects.get(pk=judgment.battle_id).assigned == 0
    [event] = AuditEvent.objects.filter(action="annotation.lease.expire")
    assert sorted(event.data["leases"]) == sorted([label.pk, adjudicate.pk])
    assert AuditEvent.objects.filter(action="evaluation.judgment.release").count() == 1
    assert housekeeping.leases_sweep_expired() == {
        "annotation lease": 0,
        "adjudication lease": 0,
        "review pair": 0,
    }


def test_beat_runs_the_lease_sweep_within_minutes():
    celery_app.loader.import_default_modules()
    schedule = {e["task"]: e["schedule"] for e in django_settings.CELERY_BEAT_SCHEDULE.values()}

    assert 5 <= schedule["portal.sweep_expired_leases"] <= 300
    assert "portal.sweep_expired_leases" in celery_app.tasks


def _race(calls) -> list:
    """Run the calls at once on threads of their own; their results (or errors) in order."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(index, call):
        barrier.wait()
        try:
            results[index] = call()
        except Exception as error:  # noqa: BLE001 - the test asserts there was none
            results[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=pair) for pair in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@ON_POSTGRESQL
@pytest.mark.django_db(transaction=True)
def test_an_adjudicator_asking_twice_at_once_after_their_lease_ran_out_gets_one_lease(
    project, disputed, adjudicator
):
    left = annotation_services.adjudication_lease_next(project=project, adjudicator=adjudicator)
    _run_out(left.pk)

    def ask():
        return annotation_services.adjudication_lease_next(
            project=project, adjudicator=adjudicator
        ).pk

    first, second = _race([ask, ask])

    assert first == second, (first, second)
    assert Lease.objects.filter(state=Lease.State.ACTIVE).count() == 1
    assert Lease.objects.get(pk=left.pk).state == Lease.State.EXPIRED


@ON_POSTGRESQL
@pytest.mark.django_db(transaction=True)
def test_adjudicators_racing_for_an_item_whose_lease_ran_out_get_it_once(
    project, disputed, member_of
):
    away = member_of("adjudicator", "away")
    racers = [member_of("adjudicator", f"racer{i}") for i in range(3)]
    left = annotation_services.adjudication_lease_next(project=project, adjudicator=away)
    _run_out(left.pk)

    results = _race(
        [
            lambda user=user: annotation_services.adjudication_lease_next(
                project=project, adjudicator=user
            )
            for user in [away, *racers]
        ]
    )

    assert not [r for r in results if isinstance(r, Exception)], results
    assert [r.item_id for r in results if r is not None] == [disputed.pk]
    assert Lease.objects.filter(state=Lease.State.ACTIVE).count() == 1
    assert Lease.objects.get(pk=left.pk).state == Lease.State.EXPIRED


def test_lease_expiry_holds_on_the_embedded_sqlite_database(tmp_path):
    if connection.vendor == "sqlite":
        pytest.skip("this is the run on SQLite")
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'portal.sqlite3'}",
        "PYTHONPATH": str(ROOT),
    }

    run = subprocess.run(  # noqa: S603 - our own test module, a fixed command line
        [
            sys.executable,
            "-m",
            "pytest",
            str(Path(__file__).relative_to(ROOT)),
            "-q",
            "-p",
            "no:cacheprovider",
            f"--basetemp={tmp_path / 'inner'}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )

    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "8 passed" in run.stdout, run.stdout[-2000:]
