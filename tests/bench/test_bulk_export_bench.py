import http.client
import time
from urllib.parse import urlsplit

import pytest

from tests.annotation.factories import DatasetFactory, classification_setup
from tests.bench.test_curation_bench import _fill
from tests.bench.test_memory_bench import PeakRss, server  # noqa: F401 - a fixture
from tests.portal.factories import api_key_for

pytestmark = pytest.mark.django_db(transaction=True)

ITEMS = 1_000_000


@pytest.mark.timeout(3600)
@pytest.mark.parametrize("fmt", ["jsonl", "hf"])
def test_server_memory_while_a_1m_item_bulk_export_downloads(
    server,  # noqa: F811
    report,
    project,
    member_of,
    fmt,
):
    pid, base_url = server
    engineer = member_of("engineer")
    classification_setup(project)
    _fill(DatasetFactory(project=project), ITEMS, "'short text number ' || g || ' about it'")
    token = api_key_for(engineer)
    url = urlsplit(base_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=600)

    start = time.perf_counter()
    with PeakRss(pid) as rss:
        connection.request(
            "GET",
            f"/api/v1/projects/{project.pk}/exports/items/{fmt}/",
            headers={"Authorization": f"Token {token}"},
        )
        response = connection.getresponse()
        first_byte = None
        size = 0
        while chunk := response.read(1 << 20):
            if first_byte is None:
                first_byte = time.perf_counter() - start
            size += len(chunk)
    elapsed = time.perf_counter() - start
    connection.close()

    assert response.status == 200
    report(f"export_items_{fmt}_1m_http_first_byte_s", first_byte, "s")
    report(f"export_items_{fmt}_1m_http_s", elapsed, "s")
    report(f"export_items_{fmt}_1m_http_mb", size / 1024**2, "MB")
    report(f"export_items_{fmt}_1m_http_server_rss_growth_mb", rss.growth_mb, "MB")
    assert rss.growth_mb < 150
