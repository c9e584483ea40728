import io
import re
import uuid

import lxml.html
import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from annotation import services
from annotation.models import AnnotationSettings, DatasetUpload, LabelSchema
from tests.annotation.factories import DatasetFactory, ItemFactory
from tests.annotation.test_conversation_import import HH_FILE, import_hh, preference_schema

pytestmark = pytest.mark.django_db

DIALOGUE = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "My dog barks <b>all</b> night."},
    {"role": "assistant", "content": "Have you talked to the owner?"},
    {"role": "user", "content": "Yes. What now?"},
]


def _turns(html: str) -> list[tuple[str, str, str]]:
    """(role, label, text) of each turn the page shows."""
    return [
        (
            li.get("data-role"),
            li.find_class("role")[0].text_content(),
            li.find_class("turn-text")[0].text_content(),
        )
        for li in lxml.html.fromstring(html).xpath('//*[@data-testid="conversation"]/li')
    ]


def _by_test_id(html: str | bytes, test_id: str) -> list:
    return lxml.html.fromstring(html).xpath(f'//*[@data-testid="{test_id}"]')


def _text(element) -> str:
    return " ".join(element.text_content().split())


@pytest.fixture
def dialogue_item(project):
    preference_schema(project)
    return ItemFactory(
        project=project,
        dataset=DatasetFactory(project=project),
        payload={"prompt": DIALOGUE, "responses": ["Try mediation.", ""]},
    )


def test_the_annotator_sees_a_conversation_turn_by_turn_and_an_empty_response_marked(
    client, project, dialogue_item, annotator
):
    client.force_login(annotator)

    html = client.get(reverse("annotation:annotate", args=[project.pk])).content.decode()

    assert _turns(html) == [
        ("system", "System", "Be brief."),
        ("user", "User", "My dog barks <b>all</b> night."),  # escaped, shown as text
        ("assistant", "Assistant", "Have you talked to the owner?"),
        ("user", "User", "Yes. What now?"),
    ]
    assert "<b>all</b>" not in html
    cards = lxml.html.fromstring(html).xpath('//*[@class="response card"]/div[@class="payload"]')
    assert [_text(c) for c in cards] == ["Try mediation.", "(empty response)"]
    assert len(_by_test_id(html, "empty-response")) == 1


def test_a_plain_text_prompt_is_shown_as_before(client, project, annotator):
    preference_schema(project)
    ItemFactory(project=project, payload={"prompt": "Hello there", "responses": ["a", "b"]})
    client.force_login(annotator)

    html = client.get(reverse("annotation:annotate", args=[project.pk])).content.decode()

    assert _turns(html) == []
    (payload,) = _by_test_id(html, "payload")
    assert payload.text_content() == "Hello there"


def test_the_adjudicator_sees_the_conversation_turn_by_turn(
    client, project, dialogue_item, member_of
):
    AnnotationSettings.objects.update_or_create(project=project, defaults={"labels_per_item": 2})
    for n, best in enumerate((0, 1)):
        user = member_of("annotator", username=f"ann{n}")
        offer = services.item_lease_next(project=project, annotator=user)
        services.annotation_submit(
            project=project,
            lease_id=offer.lease.pk,
            annotator=user,
            value={"best": best},
            submission_id=uuid.uuid4(),
        )
    client.force_login(member_of("adjudicator"))

    html = client.get(reverse("annotation:adjudicate", args=[project.pk])).content.decode()

    assert [role for role, _, _ in _turns(html)] == ["system", "user", "assistant", "user"]
    assert "(empty response)" in html


def test_the_upload_and_dataset_pages_report_empty_responses_and_the_synthetic_share(
    client, project, engineer
):
    preference_schema(project)
    upload = import_hh(project, engineer)
    client.force_login(engineer)

    status = client.get(reverse("annotation:upload", args=[project.pk, upload.pk])).content
    dataset = client.get(reverse("annotation:dataset", args=[project.pk, upload.dataset_id]))
    listing = client.get(reverse("annotation:datasets", args=[project.pk]))

    for html in (status, dataset.content):
        (report,) = _by_test_id(html, "upload-report")
        text = _text(report)
        assert "2 rows have an empty response" in text
        assert "line 23: responses[0]" in text
        assert "line 24: responses[1]" in text
        assert "24 rows hold a conversation" in text
    (share,) = _by_test_id(dataset.content, "synthetic-share")
    assert _text(share) == ("prompts 0 % (0 of 24 rows) · responses 100 % (24 of 24)")
    assert "responses 100 %" in listing.content.decode()


def test_the_api_gives_the_report_the_field_flags_and_the_share(project, engineer):
    preference_schema(project)
    upload = import_hh(project, engineer)
    api = APIClient()
    api.force_authenticate(engineer)

    got = api.get(reverse("annotation-api:api-upload", args=[project.pk, upload.pk])).json()
    dataset = api.get(
        reverse("annotation-api:api-dataset", args=[project.pk, upload.dataset_id])
    ).json()
    listing = api.get(reverse("annotation-api:api-datasets", args=[project.pk])).json()

    assert got["report"]["empty_response_rows"] == 2
    assert got["report"]["empty_responses"][0] == {"line": 23, "fields": ["responses[0]"]}
    assert (dataset["prompt_synthetic"], dataset["response_synthetic"]) == (False, True)
    assert dataset["synthetic_share"] == {
        "rows": 24,
        "prompt": {"rows": 0, "share": 0.0},
        "response": {"rows": 24, "share": 1.0},
    }
    assert listing[0]["synthetic_share"] == dataset["synthetic_share"]


def test_the_api_upload_takes_the_mapping_and_the_field_flags(project, engineer):
    api = APIClient()
    api.force_authenticate(engineer)
    data = io.BytesIO(HH_FILE.read_bytes())
    data.name = HH_FILE.name
    body = {
        "file": data,
        "source_description": "hh-shaped",
        "license": "MIT",
        "consent_basis": "written for the tests",
        "collection_date": "2026-01-01",
        "response_synthetic": True,
        "mapping": "preference_pairs",
    }

    response = api.post(
        reverse("annotation-api:api-datasets", args=[project.pk]), body, format="multipart"
    )

    assert response.status_code == 202, response.content
    options = DatasetUpload.objects.get().options
    assert options["mapping"] == "preference_pairs"
    assert options["provenance"]["response_synthetic"] is True
    assert options["provenance"]["prompt_synthetic"] is False

    data.seek(0)
    bad = api.post(
        reverse("annotation-api:api-datasets", args=[project.pk]),
        {**body, "file": data, "mapping": "alpaca"},
        format="multipart",
    )
    assert bad.status_code == 400
    assert "mapping" in str(bad.json())
    assert DatasetUpload.objects.count() == 1


def test_the_setup_page_publishes_the_empty_response_rule(client, project, engineer):
    client.force_login(engineer)

    client.post(
        reverse("annotation:setup", args=[project.pk]),
        {
            "form": "schema",
            "schema-task_type": "preference",
            "schema-mode": "best",
            "schema-empty_responses": "refuse",
        },
    )

    schema = LabelSchema.objects.get(project=project)
    assert schema.config["empty_responses"] == "refuse"


def test_a_schema_refuses_an_unknown_empty_response_rule(project, engineer):
    with pytest.raises(Exception, match=re.escape("empty_responses")):
        services.label_schema_publish(
            project=project,
            task_type="preference",
            config={"empty_responses": "drop"},
            published_by=engineer,
        )


def test_the_upload_form_takes_the_mapping_and_the_field_flags(client, project, engineer):
    client.force_login(engineer)
    data = io.BytesIO(HH_FILE.read_bytes())
    data.name = HH_FILE.name

    response = client.post(
        reverse("annotation:datasets", args=[project.pk]),
        {
            "file": data,
            "source_description": "hh-shaped",
            "license": "MIT",
            "consent_basis": "written for the tests",
            "collection_date": "2026-01-01",
            "response_synthetic": "on",
            "mapping": "preference_pairs",
        },
    )

    assert response.status_code == 302
    options = DatasetUpload.objects.get().options
    assert options["mapping"] == "preference_pairs"
    assert options["shape"]["pairs"] is True
    assert (
        options["provenance"]["prompt_synthetic"],
        options["provenance"]["response_synthetic"],
    ) == (False, True)
