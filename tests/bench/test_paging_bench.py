"""Walking a 100k-item list through the API: by cursor (following `next`), in pages of 1,000
and of 10,000 (the most a page holds), and, for the record, by the deprecated offset. A
cursor page costs what the first page costs and stays right while rows are added; an offset
page makes the database walk every row before it."""

import time

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from tests.annotation.factories import DatasetFactory
from tests.bench.test_curation_bench import _fill

pytestmark = pytest.mark.django_db

ITEMS = 100_000
PAGE = 1_000


def _walk(api, url, params) -> tuple[int, int, float]:
    """(rows, requests, seconds) to read the whole list from `url`."""
    rows = requests = 0
    start = time.perf_counter()
    response = api.get(url, params)
    while True:
        requests += 1
        assert response.status_code == 200, response.content[:300]
        body = response.json()
        rows += len(body["results"])
        if not body["next"]:
            return rows, requests, time.perf_counter() - start
        response = api.get(body["next"])


def test_paging_through_100k_items_by_cursor_and_by_offset(report, project, engineer):
    dataset = DatasetFactory(project=project, created_by=engineer, row_count=ITEMS)
    _fill(dataset, ITEMS, "'item ' || g", gold=False)
    api = APIClient()
    api.force_authenticate(engineer)
    url = reverse("annotation-api:api-items", args=[project.pk])

    rows, requests, cursor_s = _walk(api, url, {"limit": PAGE})
    assert rows == ITEMS
    report("items_100k_cursor_walk_s", cursor_s, "s")
    report("items_100k_cursor_requests", requests, "requests")

    rows, requests, big_s = _walk(api, url, {"limit": 10 * PAGE})
    assert (rows, requests) == (ITEMS, 10)
    report("items_100k_cursor_walk_10k_pages_s", big_s, "s")

    rows, requests, offset_s = _walk(api, url, {"limit": PAGE, "offset": 0})
    assert rows == ITEMS
    report("items_100k_offset_walk_s", offset_s, "s")
