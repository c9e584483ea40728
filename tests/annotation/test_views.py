import io
import json
import uuid

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from annotation import services
from annotation.models import Annotation, Dataset, GoldLabel, Item, LabelSchema
from core.models import AuditEvent
from tests.annotation.factories import DatasetFactory, ItemFactory, classification_setup

pytestmark = pytest.mark.django_db


@pytest.fixture
def ready(project):
    classification_setup(project, k=2)
    return ItemFactory(
        project=project,
        dataset__project=project,
        payload={"text": "<script>alert(1)</script><img src=x onerror=alert(2)>"},
    )


def test_dataset_of_another_project_is_404(client, project, engineer, other_project):
    foreign = DatasetFactory(project=other_project)
    client.force_login(engineer)

    assert (
        client.get(reverse("annotation:dataset", args=[project.pk, foreign.pk])).status_code == 404
    )


def test_item_payload_is_escaped_on_the_annotator_screen(client, project, ready, annotator):
    client.force_login(annotator)

    html = client.get(reverse("annotation:annotate", args=[project.pk])).content.decode()

    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html


def test_guideline_markdown_is_sanitised(client, project, ready, annotator, engineer):
    services.guideline_publish(
        project=project,
        published_by=engineer,
        markdown="**Bold** <script>alert(3)</script> [x](javascript:alert(4)) <b onclick=y>b</b>",
    )
    client.force_login(annotator)

    html = client.get(reverse("annotation:annotate", args=[project.pk])).content.decode()

    assert "<strong>Bold</strong>" in html
    assert "alert(3)" not in html.replace("&lt;script&gt;alert(3)", "")
    assert "javascript:" not in html
    assert "onclick" not in html


def _annotate_form(client, project):
    response = client.get(reverse("annotation:annotate", args=[project.pk]))
    offer = response.context["offer"]
    return offer, {"lease": offer.lease.pk, "submission_id": str(uuid.uuid4()), "seconds": "2.5"}


def test_form_submit_stores_one_answer_on_a_double_post(client, project, ready, annotator):
    client.force_login(annotator)
    offer, form = _annotate_form(client, project)
    form["labels"] = "pos"

    client.post(reverse("annotation:submit", args=[project.pk]), form)
    client.post(reverse("annotation:submit", args=[project.pk]), form)

    answer = Annotation.objects.get()
    assert answer.value == {"labels": ["pos"]}
    assert answer.seconds_spent == 2.5


def test_form_submit_with_an_unknown_label_shows_the_error(client, project, ready, annotator):
    client.force_login(annotator)
    _, form = _annotate_form(client, project)
    form["labels"] = "bogus"

    response = client.post(
        reverse("annotation:submit", args=[project.pk]), form, headers={"HX-Request": "true"}
    )

    assert "is not one of the schema" in response.content.decode()
    assert not Annotation.objects.exists()


def _schema(project, task_type, config):
    return LabelSchema.objects.create(
        project=project,
        version=LabelSchema.objects.filter(project=project).count() + 1,
        task_type=task_type,
        config=config,
        created_by=project.created_by,
    )


TASKS = [
    (
        "entity_matching",
        {"left_field": "left", "right_field": "right"},
        {"left": {"name": "ACME Inc"}, "right": {"name": "Acme"}},
        {"match": "match"},
        {"match": "maybe"},
        {"match": "match"},
    ),
    (
        "writing",
        {
            "mode": "edit",
            "prompt_field": "instruction",
            "response_field": "response",
            "steps_field": "steps",
        },
        {"instruction": "Say hi", "response": "hi"},
        {"response": "Hello there!"},
        {"response": "  "},
        {"response": "Hello there!"},
    ),
    (
        "writing",
        {
            "mode": "write",
            "prompt_field": "instruction",
            "response_field": "response",
            "steps_field": "steps",
        },
        {"instruction": "Two steps", "steps": [{"instruction": "a"}, {"instruction": "b"}]},
        {"steps": ["one", "two"]},
        {"steps": ["only one"]},
        {"steps": ["one", "two"]},
    ),
    (
        "preference",
        {
            "mode": "best",
            "reason": "optional",
            "prompt_field": "prompt",
            "responses_field": "responses",
        },
        {"prompt": "Capital of France?", "responses": ["Paris", "Lyon"]},
        {"best": "0", "reason": "correct"},
        {"best": "5"},
        {"best": 0, "reason": "correct"},
    ),
    (
        "preference",
        {"mode": "rank", "reason": "off", "prompt_field": "prompt", "responses_field": "responses"},
        {"prompt": "Rank", "responses": ["x", "y", "z"]},
        {"rank-0": "2", "rank-1": "1", "rank-2": "3"},
        {"rank-0": "1", "rank-1": "1", "rank-2": "2"},
        {"ranking": [1, 0, 2], "reason": ""},
    ),
    (
        "rating",
        {
            "criteria": ["helpfulness", "safety"],
            "scale_min": 1,
            "scale_max": 5,
            "text_field": "text",
        },
        {"text": "Answer"},
        {"rating-helpfulness": "4", "rating-safety": "5"},
        {"rating-helpfulness": "9"},
        {"ratings": {"helpfulness": 4, "safety": 5}},
    ),
]


@pytest.mark.parametrize(
    ("task_type", "config", "payload", "good", "bad", "stored"),
    TASKS,
    ids=[f"{t[0]}-{i}" for i, t in enumerate(TASKS)],
)
def test_each_task_type_view_takes_valid_and_refuses_invalid_answers(
    client, project, annotator, task_type, config, payload, good, bad, stored
):
    classification_setup(project, k=2)
    _schema(project, task_type, config)
    ItemFactory(project=project, dataset__project=project, payload=payload)
    client.force_login(annotator)

    page = client.get(reverse("annotation:annotate", args=[project.pk]))
    assert page.status_code == 200
    _, form = _annotate_form(client, project)
    client.post(reverse("annotation:submit", args=[project.pk]), {**form, **bad})
    assert not Annotation.objects.exists()
    client.post(reverse("annotation:submit", args=[project.pk]), {**form, **good})

    assert Annotation.objects.get().value == stored


def test_adjudicator_resolves_through_the_page(client, project, ready, adjudicator, annotator):
    Item.objects.filter(pk=ready.pk).update(state=Item.State.DISPUTED)
    client.force_login(adjudicator)

    page = client.get(reverse("annotation:adjudicate", args=[project.pk]))
    assert page.context["lease"].item_id == ready.pk
    client.post(
        reverse("annotation:adjudicate", args=[project.pk]),
        {"item": ready.pk, "labels": "neg", "reason": "clearly negative"},
    )

    gold = GoldLabel.objects.get(item=ready)
    assert (gold.value, gold.reason) == ({"labels": ["neg"]}, "clearly negative")


def test_adjudication_with_a_garbled_item_id_is_refused_by_name(
    client, project, ready, adjudicator
):
    Item.objects.filter(pk=ready.pk).update(state=Item.State.DISPUTED)
    client.force_login(adjudicator)

    response = client.post(
        reverse("annotation:adjudicate", args=[project.pk]),
        {"item": "one", "labels": "neg", "reason": "clearly negative"},
    )

    assert response.status_code == 200
    assert response.context["error"] == "item: Enter a whole number."
    assert not GoldLabel.objects.exists()


def test_disagreement_csv_defuses_formulas(client, project, ready, adjudicator, engineer):
    Item.objects.filter(pk=ready.pk).update(state=Item.State.DISPUTED)
    services.adjudication_resolve(
        project=project,
        item_id=ready.pk,
        adjudicator=adjudicator,
        value={"labels": ["neg"]},
        reason='=HYPERLINK("http://x")',
    )
    client.force_login(engineer)

    response = client.get(reverse("annotation:disagreements", args=[project.pk]), {"format": "csv"})
    body = b"".join(response.streaming_content).decode()

    assert "'=HYPERLINK" in body
    assert ",=HYPERLINK" not in body


def test_disagreement_json_download(client, project, ready, adjudicator, engineer):
    Item.objects.filter(pk=ready.pk).update(state=Item.State.DISPUTED)
    client.force_login(engineer)

    data = json.loads(
        client.get(
            reverse("annotation:disagreements", args=[project.pk]), {"format": "json"}
        ).content
    )

    assert [row["item"] for row in data["rows"]] == [ready.pk]


def test_item_api_returns_payloads_as_json_objects(project, engineer):
    item = ItemFactory(project=project, dataset__project=project, payload={"text": "hi", "n": 2})
    api = APIClient()
    api.force_authenticate(engineer)

    response = api.get(reverse("annotation-api:api-items", args=[project.pk]))

    assert response.status_code == 200
    (row,) = [r for r in response.json()["results"] if r["id"] == item.pk]
    assert row["payload"] == {"text": "hi", "n": 2}


def test_item_api_refuses_double_underscore_filters(project, engineer, ready):
    api = APIClient()
    api.force_authenticate(engineer)

    response = api.get(
        reverse("annotation-api:api-items", args=[project.pk]),
        {"dataset__created_by__password__startswith": "pbkdf2"},
    )

    assert response.status_code == 400


def test_api_upload_is_accepted_and_queued(project, engineer):
    api = APIClient()
    api.force_authenticate(engineer)
    upload = io.BytesIO(b'{"text": "from the api"}\n')
    upload.name = "api.jsonl"

    response = api.post(
        reverse("annotation-api:api-datasets", args=[project.pk]),
        {
            "file": upload,
            "source_description": "API test",
            "license": "MIT",
            "consent_basis": "synthetic",
            "collection_date": "2025-01-01",
            "synthetic": True,
        },
        format="multipart",
    )

    assert response.status_code == 202, response.content
    assert response.json()["status"] == "queued"
    assert AuditEvent.objects.filter(action="dataset.upload").count() == 1
    assert not Dataset.objects.exists()  # the import itself runs on a worker
