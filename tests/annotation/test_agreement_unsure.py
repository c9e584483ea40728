"""Entity matching's "unsure": the label schema says whether agreement counts it as a
third category or leaves it out as an abstention, and the page and the API say which."""

import importlib
import uuid

import krippendorff
import numpy as np
import pytest
from django.apps import apps
from django.core.exceptions import ValidationError
from django.urls import reverse
from rest_framework.test import APIClient

from annotation import services
from annotation.metrics import project_agreement
from annotation.models import AnnotationSettings, LabelSchema
from annotation.schemas import normalize_config
from tests.annotation.factories import DatasetFactory, ItemFactory

pytestmark = pytest.mark.django_db

# Three annotators on eight record pairs, FEBRL-like: "unsure" where a surname is
# misspelt or a date of birth is missing.
ANSWERS = [
    ("match", "match", "unsure"),
    ("no_match", "no_match", "no_match"),
    ("match", "unsure", "match"),
    ("unsure", "unsure", "no_match"),
    ("no_match", "match", "no_match"),
    ("match", "match", "match"),
    ("no_match", "unsure", "no_match"),
    ("unsure", "match", "match"),
]
CODES = {"match": 0.0, "no_match": 1.0, "unsure": 2.0}


def _package_alpha(unsure_missing: bool) -> float:
    data = np.array(
        [
            [np.nan if unsure_missing and a == "unsure" else CODES[a] for a in item]
            for item in ANSWERS
        ]
    ).T  # annotators x items, as the package takes reliability data
    return float(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"))


def _labelled(project, member_of, unsure: str | None):
    AnnotationSettings.objects.update_or_create(
        project=project, defaults={"labels_per_item": 3, "majority_min": 2}
    )
    config = {} if unsure is None else {"unsure": unsure}
    services.label_schema_publish(
        project=project,
        task_type="entity_matching",
        config=config,
        published_by=project.created_by,
    )
    dataset = DatasetFactory(project=project)
    items = [
        ItemFactory(
            project=project,
            dataset=dataset,
            payload={"left": {"surname": f"smith{n}"}, "right": {"surname": f"smyth{n}"}},
        )
        for n in range(len(ANSWERS))
    ]
    row_of = {item.pk: n for n, item in enumerate(items)}
    for a in range(3):
        annotator = member_of("annotator", f"ann{a}")
        while (offer := services.item_lease_next(project=project, annotator=annotator)) is not None:
            services.annotation_submit(
                project=project,
                lease_id=offer.lease.pk,
                annotator=annotator,
                value={"match": ANSWERS[row_of[offer.item.pk]][a]},
                submission_id=uuid.uuid4(),
            )


@pytest.mark.parametrize(
    ("unsure", "missing", "treated_as"),
    [("abstain", True, "abstain"), ("category", False, "category"), (None, True, "abstain")],
)
def test_alpha_follows_the_schemas_unsure_setting(project, member_of, unsure, missing, treated_as):
    _labelled(project, member_of, unsure)

    result = project_agreement(project=project)

    expected = _package_alpha(unsure_missing=missing)
    assert result["questions"]["answer"]["alpha"] == pytest.approx(expected, abs=1e-12)
    assert result["unsure"]["treated_as"] == treated_as
    assert result["unsure"]["abstentions"] == (6 if missing else 0)
    assert result["labels"] == (18 if missing else 24)


def test_the_two_treatments_give_different_figures():
    assert abs(_package_alpha(True) - _package_alpha(False)) > 0.05


@pytest.mark.parametrize(("unsure", "phrase"), [("abstain", "abstention"), ("category", "third")])
def test_page_and_api_say_how_unsure_was_counted(
    client, project, member_of, engineer, unsure, phrase
):
    _labelled(project, member_of, unsure)
    client.force_login(engineer)
    api = APIClient()
    api.force_authenticate(engineer)

    page = client.get(reverse("annotation:dashboard", args=[project.pk])).content.decode()
    body = api.get(reverse("annotation-api:api-agreement", args=[project.pk])).json()

    assert 'data-testid="unsure-rule"' in page
    assert phrase in page.split('data-testid="unsure-rule"')[1].split("</p>")[0]
    assert body["unsure"]["treated_as"] == unsure
    assert phrase in body["unsure"]["sentence"]


def test_schema_refuses_an_unknown_unsure_setting_naming_it():
    assert normalize_config("entity_matching", {})["unsure"] == "abstain"
    with pytest.raises(ValidationError) as error:
        normalize_config("entity_matching", {"unsure": "maybe"})
    assert "unsure" in error.value.message_dict


def test_schemas_published_before_the_setting_keep_counting_unsure_as_a_category(project):
    old = LabelSchema.objects.create(
        project=project,
        version=1,
        task_type="entity_matching",
        config={"left_field": "left", "right_field": "right"},
        created_by=project.created_by,
    )
    migration = importlib.import_module(
        "annotation.migrations.0006_time_spent_rule_and_unsure_setting"
    )

    migration.stamp_unsure_as_category(apps, None)

    old.refresh_from_db()
    assert old.config["unsure"] == "category"
