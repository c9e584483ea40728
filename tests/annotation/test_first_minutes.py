import pytest
from django.urls import reverse

from annotation import services
from tests.annotation.factories import ItemFactory, classification_setup

pytestmark = pytest.mark.django_db


@pytest.fixture
def ready(project):
    classification_setup(project, k=2)
    return ItemFactory(project=project, dataset__project=project, payload={"text": "fine"})


def test_guideline_examples_show_fields_and_label_not_json(client, project, ready, annotator):
    services.guideline_publish(
        project=project,
        published_by=project.created_by,
        markdown="Label the sentiment.",
        examples=[
            {
                "title": "Sarcasm",
                "payload": {"text": "Great, another outage.", "channel": "email"},
                "answer": {"labels": ["neg"]},
                "why": "sarcastic praise",
            }
        ],
    )
    client.force_login(annotator)

    html = client.get(reverse("annotation:annotate", args=[project.pk])).content.decode()

    assert "<dt>text</dt><dd>Great, another outage.</dd>" in html
    assert "<dt>channel</dt><dd>email</dd>" in html
    assert "Answer: <strong>neg</strong> — sarcastic praise" in html
    assert "{&quot;text&quot;" not in html
    assert "<pre>" not in html


def test_submit_badge_names_the_key_that_submits(client, project, ready, annotator):
    client.force_login(annotator)

    html = client.get(reverse("annotation:annotate", args=[project.pk])).content.decode()

    assert 'data-testid="submit">Submit <kbd>Enter</kbd></button>' in html
