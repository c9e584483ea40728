import pytest

from core.tasks import ping_task
from tests.portal.factories import ProjectFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.celery]


def test_round_trip_through_a_real_worker_on_the_test_database(celery_worker, test_database_url):
    ProjectFactory.create_batch(3)

    result = ping_task.delay().get(timeout=60)

    assert result["projects"] == 3
    assert result["database"] == test_database_url.rsplit("/", 1)[1]
