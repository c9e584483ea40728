import threading
import time
import uuid

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from annotation import services
from annotation.models import Annotation, GoldLabel, Item, Lease
from core.models import AuditEvent
from core.services.audit import audit_chain_verify
from tests.annotation.factories import ItemFactory, classification_setup
from tests.conftest import ROLES
from tests.portal.factories import MembershipFactory, UserFactory, api_key_for

pytestmark = pytest.mark.django_db


def _annotators(project, n, prefix="s"):
    return [
        MembershipFactory(
            project=project, role="annotator", user=UserFactory(username=f"{prefix}{i}")
        ).user
        for i in range(n)
    ]


def _submit(project, user, offer, label):
    return services.annotation_submit(
        project=project,
        lease_id=offer.lease.pk,
        annotator=user,
        value={"labels": [label]},
        submission_id=uuid.uuid4(),
    )


def _actions():
    return list(AuditEvent.objects.order_by("seq").values_list("action", flat=True))


def test_agreeing_answers_resolve_in_the_submitting_statement_with_a_verifiable_chain(project):
    classification_setup(project, k=2)
    item = ItemFactory(project=project, dataset__project=project)
    first, second = _annotators(project, 2)

    one = _submit(project, first, services.item_lease_next(project=project, annotator=first), "pos")
    two = _submit(
        project, second, services.item_lease_next(project=project, annotator=second), "pos"
    )

    gold = GoldLabel.objects.get(item=item)
    assert (gold.method, gold.value, gold.annotation_ids) == (
        "unanimous",
        {"labels": ["pos"]},
        [
            one.pk,
            two.pk,
        ],
    )
    assert Item.objects.get(pk=item.pk).state == Item.State.RESOLVED
    assert Item.objects.get(pk=item.pk).label_count == 2
    assert _actions()[-3:] == [
        "annotation.submit",
        "annotation.submit",
        "annotation.gold.agreement",
    ]
    event = AuditEvent.objects.get(action="annotation.gold.agreement")
    assert (event.target_type, event.target_id) == ("annotation.goldlabel", str(gold.pk))
    assert event.data == {"item": item.pk, "method": "unanimous", "votes": 2, "labels": 2}
    assert audit_chain_verify().ok


def test_disagreeing_answers_go_to_adjudication_in_the_submitting_statement(project):
    classification_setup(project, k=2)
    item = ItemFactory(project=project, dataset__project=project)
    first, second = _annotators(project, 2)

    _submit(project, first, services.item_lease_next(project=project, annotator=first), "pos")
    _submit(project, second, services.item_lease_next(project=project, annotator=second), "neg")

    assert Item.objects.get(pk=item.pk).state == Item.State.DISPUTED
    assert not GoldLabel.objects.filter(item=item).exists()
    disputed = AuditEvent.objects.get(action="annotation.item.disputed")
    assert disputed.data == {
        "labels": 2,
        "distinct": 2,
        "rule": "unanimous",
        "k": 2,
        "m": 2,
        "votes": 1,
    }
    assert disputed.project_id == project.pk
    assert audit_chain_verify().ok


def test_the_stored_answer_records_what_the_lease_showed(project):
    schema = classification_setup(project, k=2)
    ItemFactory(project=project, dataset__project=project)
    (user,) = _annotators(project, 1)
    offer = services.item_lease_next(project=project, annotator=user)

    answer = _submit(project, user, offer, "neg")

    stored = Annotation.objects.get(pk=answer.pk)
    assert (stored.schema_id, stored.guideline_id, stored.lease_id) == (
        schema.pk,
        None,
        offer.lease.pk,
    )
    assert stored.value == {"labels": ["neg"]}
    assert Lease.objects.get(pk=offer.lease.pk).state == Lease.State.SUBMITTED
    assert AuditEvent.objects.get(action="annotation.submit").target_id == str(answer.pk)


def test_a_submission_id_used_for_another_answer_is_refused(project):
    classification_setup(project, k=1)
    ItemFactory.create_batch(2, project=project, dataset__project=project)
    (user,) = _annotators(project, 1)
    submission = uuid.uuid4()
    first = services.item_lease_next(project=project, annotator=user)
    services.annotation_submit(
        project=project,
        lease_id=first.lease.pk,
        annotator=user,
        value={"labels": ["pos"]},
        submission_id=submission,
    )
    second = services.item_lease_next(project=project, annotator=user)

    with pytest.raises(ValidationError) as refused:
        services.annotation_submit(
            project=project,
            lease_id=second.lease.pk,
            annotator=user,
            value={"labels": ["pos"]},
            submission_id=submission,
        )

    assert "submission_id" in refused.value.message_dict
    assert Annotation.objects.count() == 1
    assert Lease.objects.get(pk=second.lease.pk).state == Lease.State.ACTIVE


def test_next_returns_the_full_item_and_the_open_lease_again(project):
    classification_setup(project, k=2)
    item = ItemFactory(project=project, dataset__project=project, metadata={"lang": "de"})
    (user,) = _annotators(project, 1)

    offer = services.item_lease_next(project=project, annotator=user)
    again = services.item_lease_next(project=project, annotator=user)

    assert again.lease.pk == offer.lease.pk
    for got in (offer.item, again.item):
        assert (got.pk, got.payload, got.metadata) == (item.pk, item.payload, {"lang": "de"})
        assert got.content_hash == item.content_hash
    assert offer.schema.task_type == "classification"


def _next_when_free(project, user, within=60.0):
    """The queue skips items another transaction holds locked (SKIP LOCKED), so while the
    other annotator's submit of the last open item is still committing, next offers nothing
    yet. Ask again until that submit has committed (slow under CPU load), not a fixed time."""
    deadline = time.monotonic() + within
    while (offer := services.item_lease_next(project=project, annotator=user)) is None:
        assert time.monotonic() < deadline, f"{user.username} was offered nothing for {within} s"
        time.sleep(0.05)
    return offer


@pytest.mark.django_db(transaction=True)
def test_annotators_submitting_the_same_items_at_once_resolve_each_item_once(project):
    classification_setup(project, k=2)
    dataset = ItemFactory(project=project, dataset__project=project).dataset
    ItemFactory.create_batch(11, project=project, dataset=dataset)
    users = _annotators(project, 2, prefix="racer")
    barrier = threading.Barrier(2)
    errors = []

    def work(user):
        try:
            for _ in range(12):
                offer = _next_when_free(project, user)
                barrier.wait(timeout=60)
                _submit(project, user, offer, "pos")
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(repr(error))
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert not errors
    assert GoldLabel.objects.count() == 12
    assert all(len(g.annotation_ids) == 2 for g in GoldLabel.objects.all())
    assert set(Item.objects.values_list("state", "label_count", "assigned_count")) == {
        ("resolved", 2, 2)
    }
    assert AuditEvent.objects.filter(action="annotation.gold.agreement").count() == 12
    assert audit_chain_verify().ok


@pytest.fixture
def token_client(project):
    classification_setup(project, k=2)
    ItemFactory(project=project, dataset__project=project)

    def make(user):
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Token {api_key_for(user)}")
        return api

    return make


@pytest.mark.parametrize("role", ROLES)
def test_queue_next_by_token_follows_the_role_matrix(project, member_of, token_client, role):
    api = token_client(member_of(role))

    response = api.post(f"/api/v1/projects/{project.pk}/queue/next/", {}, format="json")

    assert response.status_code == (200 if role == "annotator" else 403)
    assert Lease.objects.exists() == (role == "annotator")


def test_queue_by_token_hides_a_project_from_a_non_member(project, outsider, token_client):
    response = token_client(outsider).post(
        f"/api/v1/projects/{project.pk}/queue/next/", {}, format="json"
    )

    assert response.status_code == 404
    assert not Lease.objects.exists()


def test_queue_refuses_an_unknown_token_and_an_inactive_user(project, annotator, token_client):
    api = token_client(annotator)
    annotator.is_active = False
    annotator.save(update_fields=["is_active"])
    unknown = APIClient()
    unknown.credentials(HTTP_AUTHORIZATION="Token not-a-token")

    for client in (api, unknown):
        response = client.post(f"/api/v1/projects/{project.pk}/queue/next/", {}, format="json")
        # As everywhere in the API: 401 with the Token scheme.
        assert response.status_code == client.get("/api/v1/me/").status_code == 401
        assert (
            "token" in response.json()["detail"].lower()
            or "inactive" in response.json()["detail"].lower()
        )
    assert not Lease.objects.exists()


def test_queue_round_trip_by_token(project, annotator, token_client):
    api = token_client(annotator)
    base = f"/api/v1/projects/{project.pk}/queue"

    task = api.post(f"{base}/next/", {}, format="json").json()
    body = {
        "lease": task["lease"],
        "value": {"labels": ["pos"]},
        "submission_id": str(uuid.uuid4()),
    }
    first = api.post(f"{base}/submit/", body, format="json")
    retry = api.post(f"{base}/submit/", body, format="json")

    assert first.status_code == retry.status_code == 201
    assert first.json() == retry.json()
    assert Annotation.objects.count() == 1
    assert api.post(f"{base}/next/", {}, format="json").status_code == 204


def test_the_queue_statements_and_the_token_lookup_run_prepared(project):
    """Django turns server-side preparing off; without prepare_threshold in the database
    OPTIONS, psycopg ignores prepare=True and PostgreSQL plans each statement afresh."""
    classification_setup(project, k=2)
    ItemFactory(project=project, dataset__project=project)
    (user,) = _annotators(project, 1)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_key_for(user)}")
    response = client.post(f"/api/v1/projects/{project.pk}/queue/next/", format="json")
    assert response.status_code == 200
    # The test client keeps the request's connection: the statements it prepared are listed.
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]

    assert any("FROM portal_apikey k" in statement for statement in prepared)
    assert any("FROM annotation_annotationsettings s" in statement for statement in prepared)
    assert any("WITH candidate AS" in statement for statement in prepared)


def test_the_queue_by_token_reads_the_callers_roles_only_in_the_key_lookup(project):
    classification_setup(project, k=2)
    ItemFactory(project=project, dataset__project=project)
    (user,) = _annotators(project, 1)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_key_for(user)}")

    with CaptureQueriesContext(connection) as queries:
        response = client.post(f"/api/v1/projects/{project.pk}/queue/next/", format="json")

    assert response.status_code == 200
    # The role check reuses what the key's query read: no second look at the memberships.
    assert [q["sql"] for q in queries if 'FROM "portal_membership"' in q["sql"]] == []
