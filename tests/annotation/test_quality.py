import pytest
from django.core.exceptions import ValidationError

from annotation.models import Dataset, GoldLabel, Item, QualityCheck
from annotation.pii import iban_valid, luhn_valid, redact_text, scan_text
from annotation.services.quality import (
    dataset_chunk,
    duplicates_keep_one,
    pii_apply,
    pii_rule_add,
    quality_check_run,
    quality_check_start,
    synthetic_spot_check,
)
from annotation.services.snapshots import snapshot_create
from core.models import AuditEvent
from tests.annotation.factories import DatasetFactory, ItemFactory, classification_setup, gold_item

pytestmark = pytest.mark.django_db

BASE = "the delivery arrived two days late and the box was damaged on one corner"


def _run(engineer, project, kind, **kwargs):
    check = quality_check_start(actor=engineer, project=project, kind=kind, **kwargs)
    return quality_check_run(check_id=check.pk)


# --- PII recognizers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("write to jane.doe+x@mail.example.co.uk please", "EMAIL"),
        ("call +1 (415) 555-0134 now", "PHONE"),
        ("card 4111-1111-1111-1111 ok", "CREDIT_CARD"),
        ("iban DE89 3704 0044 0532 0130 00 ok", "IBAN"),
        ("from 10.0.12.7 at night", "IP_ADDRESS"),
        ("from fe80::1ff:fe23:4567:890a too", "IP_ADDRESS"),
        ("ssn 078-05-1120", "NATIONAL_ID"),
        ("NI number AB 12 34 56 C", "NATIONAL_ID"),
    ],
)
def test_recognizers_find_each_kind(text, kind):
    spans = scan_text(text)
    assert [s.kind for s in spans] == [kind]


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112",  # fails Luhn
        "iban DE89 3704 0044 0532 0130 01",  # fails mod 97
        "released 2025-01-31, version 1.2.3.4.5",
        "ip 999.1.1.1",
        "order 12345 shipped",
    ],
)
def test_recognizers_ignore_lookalikes(text):
    assert scan_text(text) == []


def test_checksums():
    assert luhn_valid("4539 1488 0343 6467")
    assert not luhn_valid("0000 0000 0000 0000")
    assert iban_valid("GB82WEST12345698765432")
    assert not iban_valid("GB82WEST12345698765433")


def test_redaction_uses_typed_placeholders():
    text = "mail a@b.io, card 4111111111111111"
    assert redact_text(text, scan_text(text)) == "mail [EMAIL], card [CREDIT_CARD]"


# --- checks on hand-built data --------------------------------------------------------------


@pytest.fixture
def dup_data(project):
    first = DatasetFactory(project=project, name="first")
    second = DatasetFactory(project=project, name="second", synthetic=True)
    a = ItemFactory(dataset=first, payload={"text": BASE})
    b = ItemFactory(dataset=first, payload={"text": "  " + BASE.replace(" ", "  ")})  # exact
    c = ItemFactory(dataset=second, payload={"text": BASE + " again"})  # near, other dataset
    d = ItemFactory(
        dataset=first, payload={"text": "a completely different complaint about billing"}
    )
    return first, second, a, b, c, d


def test_duplicates_found_within_and_across_datasets(project, engineer, dup_data):
    first, second, a, b, c, d = dup_data

    check = _run(engineer, project, "duplicates")

    assert check.status == "succeeded"
    assert check.result["exact_clusters"] == [[a.pk, b.pk]]
    assert check.result["near_clusters"] == [[a.pk, c.pk]]
    assert check.result["cross_dataset_clusters"] == 1
    assert check.result["synthetic"] == 1
    assert check.done == check.total == 4
    only_first = _run(engineer, project, "duplicates", dataset=first)
    assert only_first.result["near_clusters"] == []


def test_keep_one_per_cluster_writes_new_versions_and_keeps_originals(project, engineer, dup_data):
    first, second, a, b, c, d = dup_data
    check = _run(engineer, project, "duplicates")

    versions = duplicates_keep_one(actor=engineer, check=check)

    by_source = {v.derived_from_id: v for v in versions}
    assert set(by_source) == {first.pk}
    second.refresh_from_db()
    assert second.status == Dataset.Status.ARCHIVED  # its only row was a near copy
    kept = Item.objects.filter(dataset=by_source[first.pk]).values_list("payload", flat=True)
    assert sorted(p["text"] for p in kept) == sorted([BASE, d.payload["text"]])
    first.refresh_from_db()
    assert first.status == Dataset.Status.ARCHIVED
    assert Item.objects.filter(dataset=first).count() == 3  # the original is untouched
    assert AuditEvent.objects.filter(action="quality.duplicates.keep_one").exists()


@pytest.fixture
def pii_data(project):
    classification_setup(project)
    dataset = DatasetFactory(project=project)
    clean = gold_item(dataset, {"text": "no personal data here"}, {"labels": ["pos"]})
    mail = gold_item(dataset, {"text": "mail me at bob@example.org"}, {"labels": ["neg"]})
    card = gold_item(
        dataset, {"text": "card 4111 1111 1111 1111", "id_no": "EMP-00042"}, {"labels": ["pos"]}
    )
    return dataset, clean, mail, card


def test_pii_scan_reports_spans_and_project_rules(project, engineer, pii_data):
    dataset, clean, mail, card = pii_data
    pii_rule_add(actor=engineer, project=project, name="EMPLOYEE_ID", pattern=r"EMP-\d{5}")

    check = _run(engineer, project, "pii")

    assert check.result["items_with_pii"] == 2
    assert check.result["counts"] == {"CREDIT_CARD": 1, "EMAIL": 1, "EMPLOYEE_ID": 1}
    spans = {f["item"]: f["spans"] for f in check.result["findings"]}
    assert spans[mail.pk] == [{"path": "text", "kind": "EMAIL", "start": 11, "end": 26}]
    assert "bob@example.org" not in str(check.result)  # spans only, never the text


def test_pii_rule_refuses_bad_patterns(project, engineer):
    with pytest.raises(ValidationError, match="pattern"):
        pii_rule_add(actor=engineer, project=project, name="BAD", pattern="(unclosed")
    with pytest.raises(ValidationError, match="name"):
        pii_rule_add(actor=engineer, project=project, name="1BAD", pattern="x")


def test_redact_makes_a_new_version_and_keeps_gold_labels(project, engineer, pii_data):
    dataset, clean, mail, card = pii_data
    check = _run(engineer, project, "pii")

    (redacted,) = pii_apply(actor=engineer, check=check, action="redact")

    payloads = Item.objects.filter(dataset=redacted).values_list("payload", flat=True)
    texts = sorted(p["text"] for p in payloads)
    assert texts == ["card [CREDIT_CARD]", "mail me at [EMAIL]", "no personal data here"]
    assert GoldLabel.objects.filter(item__dataset=redacted).count() == 3
    mail.refresh_from_db()
    assert mail.payload["text"] == "mail me at bob@example.org"  # original kept
    snapshot = snapshot_create(actor=engineer, project=project, name="clean")
    assert snapshot.member_count == 3
    assert set(snapshot.members.values_list("item__dataset", flat=True)) == {redacted.pk}


def test_drop_leaves_rows_with_pii_out(project, engineer, pii_data):
    dataset, clean, mail, card = pii_data
    check = _run(engineer, project, "pii")

    (kept,) = pii_apply(actor=engineer, check=check, action="drop")

    assert list(Item.objects.filter(dataset=kept).values_list("payload", flat=True)) == [
        clean.payload
    ]


def test_distributions_count_labels_lengths_and_slices(project, engineer):
    classification_setup(project)
    dataset = DatasetFactory(project=project)
    for i in range(6):
        gold_item(
            dataset,
            {"text": "word " * (i + 1)},
            {"labels": ["pos" if i < 4 else "neg"]},
            metadata={"lang": "en" if i % 2 else "fr"},
        )

    result = _run(engineer, project, "distributions").result

    assert result["labels"] == {"pos": 4, "neg": 2}
    assert result["imbalance"] == 2.0
    assert sum(result["chars"]["counts"]) == 6
    assert sum(result["tokens"]["counts"]) == 6
    assert result["slices"]["lang"]["en"]["items"] == 3
    assert result["slices"]["lang"]["fr"]["labels"] == {"pos": 2, "neg": 1}


def test_leakage_between_splits_is_reported(project, engineer):
    classification_setup(project)
    dataset = DatasetFactory(project=project)
    for i in range(30):
        gold_item(
            dataset,
            {"text": f"unique sentence number {i} about topic {i * 7}"},
            {"labels": ["pos"]},
        )
    # the same text twice and a near copy: with 30 rows some land in different splits
    for copy in range(6):
        gold_item(dataset, {"text": BASE}, {"labels": ["pos"]})
        gold_item(dataset, {"text": BASE + f" {copy}"}, {"labels": ["pos"]})
    snapshot = snapshot_create(actor=engineer, project=project, name="leaky", seed=2)

    result = _run(engineer, project, "leakage", snapshot=snapshot).result

    assert result["leaks"] >= 1
    assert not result["clean"]
    leaked = {i for group in result["exact"] + result["near"] for i in group["items"]}
    payloads = Item.objects.filter(pk__in=leaked).values_list("payload", flat=True)
    texts = {p["text"] for p in payloads}
    assert all(t.startswith(BASE) for t in texts)


def test_leakage_needs_a_snapshot(project, engineer):
    with pytest.raises(ValidationError, match="snapshot"):
        quality_check_start(actor=engineer, project=project, kind="leakage")


def test_synthetic_counts_divergence_and_spot_check(project, engineer):
    real = DatasetFactory(project=project)
    synthetic = DatasetFactory(project=project, synthetic=True)
    for i in range(20):
        ItemFactory(dataset=real, payload={"text": "short real " + str(i)})
        ItemFactory(
            dataset=synthetic, payload={"text": "a much longer synthetic row " * 5 + str(i)}
        )

    result = _run(engineer, project, "synthetic").result

    assert (result["synthetic"], result["real"]) == (20, 20)
    assert result["chars"]["divergence"]["jensen_shannon"] == 1.0  # disjoint lengths
    review = synthetic_spot_check(actor=engineer, project=project, n=5, seed=1)
    sampled = Item.objects.filter(dataset=review)
    assert sampled.count() == 5
    assert all(i.state == "open" and i.priority > 0 for i in sampled)
    with pytest.raises(ValidationError, match="already exists"):  # same seed, same rows
        synthetic_spot_check(actor=engineer, project=project, n=5, seed=1)
    other = synthetic_spot_check(actor=engineer, project=project, n=5, seed=2)
    assert Item.objects.filter(dataset=other).count() == 5


def test_chunking_keeps_source_and_position(project, engineer):
    dataset = DatasetFactory(project=project)
    long = ItemFactory(dataset=dataset, payload={"text": " ".join(f"w{i}" for i in range(10))})
    ItemFactory(dataset=dataset, payload={"text": "short"})

    chunked = dataset_chunk(actor=engineer, dataset=dataset, field="text", max_tokens=4, overlap=1)

    chunks = list(Item.objects.filter(dataset=chunked).order_by("row_number"))
    assert [c.payload["text"] for c in chunks] == [
        "w0 w1 w2 w3",
        "w3 w4 w5 w6",
        "w6 w7 w8 w9",
        "short",
    ]
    assert [c.metadata["chunk"] for c in chunks] == ["0", "1", "2", "0"]
    assert chunks[1].metadata["source_item"] == str(long.pk)
    assert chunks[1].metadata["token_start"] == "3"
    assert chunked.derived_from_id == dataset.pk
    with pytest.raises(ValidationError, match="overlap"):
        dataset_chunk(actor=engineer, dataset=dataset, field="text", max_tokens=4, overlap=4)


@pytest.mark.django_db(transaction=True)
def test_check_runs_on_a_real_worker(celery_worker, project, engineer, dup_data):
    check = quality_check_start(actor=engineer, project=project, kind="duplicates")
    for _ in range(300):
        check.refresh_from_db()
        if check.status in ("succeeded", "failed"):
            break
        import time

        time.sleep(0.1)
    assert check.status == QualityCheck.Status.SUCCEEDED, check.error
    assert check.result["exact_clusters"]
