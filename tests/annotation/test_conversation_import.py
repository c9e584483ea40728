"""Preference data in the public hh-rlhf shape: chosen/rejected transcripts sharing a prefix
become a conversational prompt and two replies; empty responses are listed or refused as
the label schema says; provenance is recorded per field."""

import datetime
import io
import json
from dataclasses import replace
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.test import override_settings

from annotation.models import Dataset, DatasetUpload, Item, LabelSchema
from annotation.schemas import normalize_config
from annotation.selectors import dataset_synthetic_shares
from annotation.services.datasets import Provenance, dataset_import_run, dataset_upload_create
from core.models import AuditEvent
from tests.support.stored import stored_item

pytestmark = pytest.mark.django_db

HH_FILE = Path(__file__).parent / "data" / "hh_rlhf_shape.jsonl"
HH_ROWS = 24
EMPTY = [{"line": 23, "fields": ["responses[0]"]}, {"line": 24, "fields": ["responses[1]"]}]
PROVENANCE = Provenance(
    source_description="Dialogues written for the tests in the shape of Anthropic's hh-rlhf",
    license="MIT",
    consent_basis="written for the tests",
    collection_date=datetime.date(2026, 1, 1),
    prompt_synthetic=False,
    response_synthetic=True,
)


def preference_schema(project, **config):
    return LabelSchema.objects.create(
        project=project,
        version=LabelSchema.objects.filter(project=project).count() + 1,
        task_type="preference",
        config=normalize_config("preference", {"mode": "best", **config}),
        created_by=project.created_by,
    )


def import_file(project, engineer, data: bytes, name: str, **kwargs) -> DatasetUpload:
    upload = dataset_upload_create(
        project=project,
        uploaded_by=engineer,
        file=io.BytesIO(data),
        file_name=name,
        provenance=kwargs.pop("provenance", PROVENANCE),
        run_now=True,
        **kwargs,
    )
    return dataset_import_run(upload_id=upload.pk)


def import_hh(project, engineer, **kwargs) -> DatasetUpload:
    return import_file(
        project, engineer, HH_FILE.read_bytes(), HH_FILE.name, mapping="preference_pairs", **kwargs
    )


def test_hh_transcripts_import_as_conversations_and_their_two_final_replies(project, engineer):
    preference_schema(project)

    upload = import_hh(project, engineer)

    assert upload.status == DatasetUpload.Status.SUCCEEDED, upload.error
    assert Item.objects.count() == HH_ROWS
    third = Item.objects.get(row_number=3)
    assert third.payload == {
        "prompt": [
            {"role": "user", "content": "My neighbour's dog barks all night."},
            {
                "role": "assistant",
                "content": "That sounds tiring. Have you been able to talk to your "
                "neighbour about it?",
            },
            {"role": "user", "content": "I tried, they ignored me."},
            {
                "role": "assistant",
                "content": "You could write them a short, polite note, or ask the local "
                "council about noise rules.",
            },
            {"role": "user", "content": "How do I make it stop for good?"},
        ],
        "responses": [
            "Mediation services can help neighbours agree; the council can act if it keeps "
            "happening.",
            "Throw something at the dog when it barks.",
        ],
    }
    first = Item.objects.get(row_number=1)
    assert first.payload["prompt"] == [
        {"role": "user", "content": "How do I get a stain out of a wool jumper?"}
    ]
    # The turns are content like any payload: encrypted at rest.
    payload_column, _ = stored_item(third.pk)
    assert "neighbour" not in payload_column
    assert "role" not in payload_column
    assert upload.report["conversations"] == HH_ROWS


def test_rows_with_an_empty_response_are_kept_counted_and_listed_by_line(project, engineer):
    preference_schema(project, empty_responses="keep")

    upload = import_hh(project, engineer)

    assert upload.status == DatasetUpload.Status.SUCCEEDED, upload.error
    assert upload.report["responses_field"] == "responses"
    assert upload.report["empty_response_rows"] == 2
    assert upload.report["empty_responses"] == EMPTY
    assert Item.objects.get(row_number=23).payload["responses"][0] == ""
    event = AuditEvent.objects.get(action="dataset.import")
    assert (event.data["empty_response_rows"], event.data["conversations"]) == (2, HH_ROWS)


def test_a_schema_that_refuses_empty_responses_refuses_the_file_at_the_line_and_field(
    project, engineer
):
    preference_schema(project, empty_responses="refuse")

    upload = import_hh(project, engineer)

    assert upload.status == DatasetUpload.Status.FAILED
    assert upload.error.startswith("hh_rlhf_shape.jsonl, line 23, field 'responses[0]': is empty")
    assert not Dataset.objects.exists()
    assert not Item.objects.exists()  # nothing half-imported


@override_settings(PORTAL_IMPORT_PARALLEL_MIN_BYTES=0, PORTAL_IMPORT_WORKERS=2)
def test_worker_processes_map_rows_and_report_as_a_serial_import_does(project, engineer):
    preference_schema(project)

    upload = import_hh(project, engineer)

    assert upload.status == DatasetUpload.Status.SUCCEEDED, upload.error
    assert upload.report["empty_responses"] == EMPTY
    assert upload.report["conversations"] == HH_ROWS
    assert len(Item.objects.get(row_number=3).payload["prompt"]) == 5


@override_settings(PORTAL_IMPORT_PARALLEL_MIN_BYTES=0, PORTAL_IMPORT_WORKERS=2)
def test_worker_processes_refuse_an_empty_response_the_schema_refuses(project, engineer):
    preference_schema(project, empty_responses="refuse")

    upload = import_hh(project, engineer)

    assert upload.status == DatasetUpload.Status.FAILED
    assert "line 23, field 'responses[0]'" in upload.error
    assert not Item.objects.exists()


def test_the_mapping_works_before_any_schema_and_reports_empty_responses(project, engineer):
    upload = import_hh(project, engineer)

    assert upload.status == DatasetUpload.Status.SUCCEEDED, upload.error
    assert upload.report["empty_response_rows"] == 2


def test_transcripts_that_differ_before_the_final_reply_are_refused_with_their_line(
    project, engineer
):
    rows = [
        {"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: a\n\nAssistant: c"},
        {
            "chosen": "\n\nHuman: a\n\nAssistant: b\n\nHuman: d\n\nAssistant: e",
            "rejected": "\n\nHuman: X\n\nAssistant: b\n\nHuman: d\n\nAssistant: f",
        },
    ]
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()

    upload = import_file(project, engineer, data, "pairs.jsonl", mapping="preference_pairs")

    assert upload.status == DatasetUpload.Status.FAILED
    assert upload.error.startswith("pairs.jsonl, line 2, field 'rejected': chosen and rejected")
    assert not Item.objects.exists()


def test_plain_text_prompts_keep_working_and_a_bad_turn_is_refused_at_its_field(project, engineer):
    preference_schema(project)
    plain = json.dumps({"prompt": "Hi", "responses": ["Hello", "Go away"]}) + "\n"

    upload = import_file(project, engineer, plain.encode(), "plain.jsonl")

    assert upload.status == DatasetUpload.Status.SUCCEEDED, upload.error
    assert Item.objects.get().payload == {"prompt": "Hi", "responses": ["Hello", "Go away"]}
    assert upload.report["conversations"] == 0

    bad = plain + json.dumps(
        {"prompt": [{"role": "user", "content": "q"}, {"role": "bot", "content": "a"}]}
    )
    upload = import_file(project, engineer, bad.encode(), "bad.jsonl")
    assert upload.status == DatasetUpload.Status.FAILED
    assert upload.error.startswith("bad.jsonl, line 2, field 'prompt[1].role'")


def test_an_unknown_mapping_is_refused_before_anything_is_stored(project, engineer):
    with pytest.raises(ValidationError) as refused:
        dataset_upload_create(
            project=project,
            uploaded_by=engineer,
            file=io.BytesIO(HH_FILE.read_bytes()),
            file_name=HH_FILE.name,
            provenance=PROVENANCE,
            mapping="alpaca",
        )

    assert "mapping" in refused.value.message_dict
    assert not DatasetUpload.objects.exists()


def test_provenance_is_recorded_per_field_with_the_synthetic_share_of_each(project, engineer):
    preference_schema(project)
    upload = import_hh(project, engineer)

    dataset = Dataset.objects.get(pk=upload.dataset_id)
    assert (dataset.prompt_synthetic, dataset.response_synthetic) == (False, True)
    assert dataset.synthetic is False  # the rows are not wholly generated
    share = dataset_synthetic_shares(dataset_ids=[dataset.pk])[dataset.pk]
    assert (share.rows, share.prompt, share.response) == (HH_ROWS, 0.0, 1.0)
    event = AuditEvent.objects.get(action="dataset.import")
    assert event.data["synthetic_fields"] == {"prompt": False, "response": True}


def test_row_metadata_can_mark_single_fields_synthetic(project, engineer):
    rows = [
        {"prompt": "written by a person", "responses": ["a", "b"]},
        {"prompt": "generated", "responses": ["a", "b"], "meta": {"prompt_synthetic": "yes"}},
        {"prompt": "generated too", "responses": ["a", "b"], "meta": {"synthetic": "true"}},
        {"prompt": "by a person", "responses": ["a", "b"]},
    ]
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    human = replace(PROVENANCE, response_synthetic=False)

    upload = import_file(project, engineer, data, "mixed.jsonl", provenance=human)

    share = dataset_synthetic_shares(dataset_ids=[upload.dataset_id])[upload.dataset_id]
    assert (share.prompt_rows, share.response_rows, share.rows) == (2, 1, 4)
    assert share.as_dict()["prompt"] == {"rows": 2, "share": 0.5}


def test_the_single_flag_of_earlier_versions_means_both_fields(project, engineer):
    whole = replace(PROVENANCE, synthetic=True, response_synthetic=False)

    upload = import_file(project, engineer, b'{"text": "x"}\n', "gen.jsonl", provenance=whole)

    dataset = Dataset.objects.get(pk=upload.dataset_id)
    assert (dataset.synthetic, dataset.prompt_synthetic, dataset.response_synthetic) == (
        True,
        True,
        True,
    )
