import pytest
from django.urls import reverse

from annotation.models import Item
from core.models import Role
from tests.annotation.factories import ItemFactory, classification_setup
from tests.portal.factories import MembershipFactory

pytestmark = pytest.mark.django_db


def test_nav_links_open_the_queues_not_home_anchors(client, project, adjudicator):
    MembershipFactory(project=project, role=Role.REVIEWER, user=adjudicator)
    client.force_login(adjudicator)

    html = client.get(reverse("home")).content.decode()

    assert f'href="{reverse("work_queue", args=["adjudicate"])}">Adjudicate</a>' in html
    assert f'href="{reverse("work_queue", args=["review"])}">Review</a>' in html
    assert "#adjudicate" not in html
    assert "#review" not in html


def test_adjudicate_link_lands_on_the_project_with_disputes(
    client, project, other_project, adjudicator
):
    MembershipFactory(project=other_project, role=Role.ADJUDICATOR, user=adjudicator)
    classification_setup(other_project, k=2)
    item = ItemFactory(project=other_project, dataset__project=other_project)
    Item.objects.filter(pk=item.pk).update(state=Item.State.DISPUTED)
    client.force_login(adjudicator)

    response = client.get(reverse("work_queue", args=["adjudicate"]))

    assert response.status_code == 302
    assert response["Location"] == reverse("annotation:adjudicate", args=[other_project.pk])


def test_review_link_opens_the_review_queue(client, project, reviewer):
    client.force_login(reviewer)

    response = client.get(reverse("work_queue", args=["review"]))

    assert response["Location"] == reverse("evaluation:review_home", args=[project.pk])


def test_a_queue_of_a_role_not_held_goes_home(client, project, annotator):
    client.force_login(annotator)

    response = client.get(reverse("work_queue", args=["adjudicate"]))

    assert response["Location"] == reverse("home")
    assert client.get(reverse("work_queue", args=["nonsense"])).status_code == 404


def test_engineer_home_links_to_training_jobs(client, project, engineer):
    client.force_login(engineer)

    html = client.get(reverse("home")).content.decode()

    assert f'href="{reverse("training:jobs", args=[project.pk])}"' in html


def test_favicon_is_linked_and_served(client, project, annotator):
    client.force_login(annotator)

    html = client.get(reverse("home")).content.decode()
    response = client.get("/favicon.ico")

    assert 'rel="icon" type="image/svg+xml" href="/static/img/favicon.svg"' in html
    assert response.status_code == 301
    assert response["Location"] == "/static/img/favicon.svg"
    client.logout()
    assert client.get("/favicon.ico").status_code == 301
