import base64
import re
from urllib.parse import quote

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from core import services
from core.models import AuditEvent
from tests.annotation.factories import DatasetFactory, ItemFactory, gold_item

pytestmark = pytest.mark.django_db


def _api(user):
    api = APIClient()
    api.force_authenticate(user)
    return api


@pytest.fixture
def items(project, engineer):
    dataset = DatasetFactory(project=project, created_by=engineer)
    return dataset, [ItemFactory(dataset=dataset) for _ in range(5)]


def _items_url(project):
    return reverse("annotation-api:api-items", args=[project.pk])


def _walk(api, url, query=None):
    """Every page from `url` by its next links; (pages, rows)."""
    pages, rows = [], []
    response = api.get(url, query)
    while True:
        assert response.status_code == 200, response.content
        body = response.json()
        pages.append(body)
        rows += body["results"]
        if not body["next"]:
            return pages, rows
        response = api.get(body["next"])


def test_items_page_by_cursor_with_every_item_once(project, engineer, items):
    _, made = items

    pages, rows = _walk(_api(engineer), _items_url(project), {"limit": 2})

    assert [row["id"] for row in rows] == [item.pk for item in made]
    assert [len(page["results"]) for page in pages] == [2, 2, 1]
    assert {page["count"] for page in pages} == {5}
    assert "cursor=" in pages[0]["next"]
    assert "offset" not in pages[0]["next"]
    back = _api(engineer).get(pages[1]["previous"]).json()
    assert [row["id"] for row in back["results"]] == [made[0].pk, made[1].pk]


def test_an_item_added_while_paging_is_served_once_at_the_end(project, engineer, items):
    dataset, made = items
    api = _api(engineer)
    first = api.get(_items_url(project), {"limit": 3}).json()

    added = ItemFactory(dataset=dataset)
    rest = api.get(first["next"]).json()

    seen = [row["id"] for row in first["results"] + rest["results"]]
    assert seen == [item.pk for item in [*made, added]]


def test_offset_paging_still_works_for_old_clients(project, engineer, items):
    _, made = items

    body = _api(engineer).get(_items_url(project), {"limit": 2, "offset": 2}).json()

    assert [row["id"] for row in body["results"]] == [made[2].pk, made[3].pk]
    assert body["count"] == 5
    assert "offset=4" in body["next"]


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        base64.b64encode(b"p=abc").decode(),
        base64.b64encode(b"p=" + b"9" * 30).decode(),
    ],
)
def test_a_forged_cursor_is_a_400_naming_it(project, engineer, items, cursor):
    response = _api(engineer).get(_items_url(project), {"cursor": cursor})

    assert response.status_code == 400
    assert "cursor" in response.json()


def test_a_cursor_with_a_huge_offset_is_an_ordinary_page(project, engineer, items):
    cursor = base64.b64encode(b"o=99999999999999999999").decode()

    response = _api(engineer).get(_items_url(project), {"cursor": cursor})

    assert response.status_code == 200  # DRF caps a cursor's offset


def test_gold_questions_and_gold_labels_are_different_filters(project, engineer, items):
    dataset, made = items
    question = ItemFactory(dataset=dataset, is_gold=True, gold_answer={"labels": ["pos"]})
    labelled = gold_item(dataset, {"text": "decided"}, {"labels": ["neg"]})
    api = _api(engineer)

    def ids(**query):
        response = api.get(_items_url(project), query)
        assert response.status_code == 200, response.content
        return [row["id"] for row in response.json()["results"]]

    assert ids(is_gold_question="true") == [question.pk]
    assert ids(is_gold="true") == [question.pk]  # the deprecated name
    assert ids(has_gold_label="true") == [labelled.pk]
    assert ids(has_gold_label="false", is_gold_question="false") == [i.pk for i in made]


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ({"is_gold_question": "perhaps"}, "is_gold_question"),
        ({"has_gold_label": "2"}, "has_gold_label"),
        ({"state": "lost"}, "state"),
        ({"gold": "true"}, "gold"),
    ],
)
def test_a_bad_item_filter_is_a_400_naming_it(project, engineer, items, query, name):
    response = _api(engineer).get(_items_url(project), query)

    assert response.status_code == 400
    assert name in response.json()


def test_bare_array_lists_page_by_link_header(project, admin, member_of):
    for role in ("annotator", "reviewer", "engineer"):
        member_of(role)
    api = _api(admin)
    url = reverse("api-memberships", args=[project.pk])

    seen, response = [], api.get(url, {"limit": 2})
    while True:
        assert isinstance(response.json(), list)
        seen += [row["id"] for row in response.json()]
        found = re.search(r'<([^>]+)>; rel="next"', response.get("Link", ""))
        if not found:
            break
        response = api.get(found.group(1))

    assert sorted(seen) == sorted(row["id"] for row in api.get(url).json())
    assert len(seen) == len(set(seen)) == 4
    assert "Link" not in api.get(url)


def test_audit_events_page_newest_first_by_cursor(project, admin):
    for n in range(3):
        services.project_update(project=project, updated_by=admin, name=f"name {n}")

    pages, rows = _walk(_api(admin), reverse("api-audit-events", args=[project.pk]), {"limit": 2})

    seqs = [row["seq"] for row in rows]
    assert seqs == sorted(AuditEvent.objects.values_list("seq", flat=True), reverse=True)
    assert len(pages) == 2


def test_accounts_page_by_cursor(staff):
    for n in range(3):
        services.user_create(username=f"person{n}", password="x", created_by=staff, validate=False)

    _, rows = _walk(_api(staff), "/api/v1/users/", {"limit": 2})

    assert [row["username"] for row in rows] == ["root", "person0", "person1", "person2"]


def test_a_cursor_survives_being_quoted_again(project, engineer, items):
    # Clients often rebuild the query string; the cursor is URL-safe as it is.
    api = _api(engineer)
    first = api.get(_items_url(project), {"limit": 2}).json()
    cursor = re.search(r"cursor=([^&]+)", first["next"]).group(1)

    again = api.get(f"{_items_url(project)}?limit=2&cursor={quote(cursor, safe='%')}")

    assert again.status_code == 200
    assert len(again.json()["results"]) == 2
