import datetime
import http.client
import json
import statistics
import threading
import time
import uuid
from urllib.parse import urlsplit

import numpy as np
import pytest
from django.db import connection
from django.db.models import Count

from annotation.agreement import LabelTable, agreement_summary
from annotation.models import Annotation, DatasetUpload, Item
from annotation.services.datasets import Provenance, dataset_import_run, dataset_upload_create
from core.services.audit import audit_chain_verify
from tests.annotation.factories import classification_setup
from tests.portal.factories import MembershipFactory, UserFactory, api_key_for

pytestmark = pytest.mark.django_db(transaction=True)

ROWS = 1_000_000


def _write_rows(path, n):
    with open(path, "w") as out:
        for i in range(n):
            out.write(f'{{"id": {i}, "text": "short text number {i}", "meta": {{"lang": "en"}}}}\n')


def import_generated_rows(project, engineer, path, n) -> float:
    """Write and import `n` generated rows; returns the import's seconds. Ends with a
    VACUUM ANALYZE so that what is measured next runs on a settled project, not during
    autovacuum's first pass over the fresh rows."""
    _write_rows(path, n)
    provenance = Provenance(
        source_description="generated",
        license="CC0-1.0",
        consent_basis="synthetic",
        synthetic=True,
        collection_date=datetime.date(2025, 1, 1),
    )
    start = time.perf_counter()
    with path.open("rb") as handle:
        upload = dataset_upload_create(
            project=project,
            uploaded_by=engineer,
            file=handle,
            file_name=path.name,
            provenance=provenance,
            run_now=True,
        )
    upload = dataset_import_run(upload_id=upload.pk)
    elapsed = time.perf_counter() - start
    assert upload.status == DatasetUpload.Status.SUCCEEDED, upload.error
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE) annotation_item")
    return elapsed


class Client:
    """One annotator on one kept-alive HTTP connection, through the JSON API."""

    def __init__(self, base_url, token, project_id):
        url = urlsplit(base_url)
        self.conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        self.headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
        self.prefix = f"/api/v1/projects/{project_id}/queue"

    def post(self, path, body=None):
        self.conn.request("POST", self.prefix + path, json.dumps(body or {}), self.headers)
        response = self.conn.getresponse()
        data = response.read()
        return response.status, (json.loads(data) if data else None)

    def submit_and_next(self, task):
        """The one-request loop the browser uses: submit, and get the next item back."""
        status, body = self.post(
            "/submit/",
            {
                "lease": task["lease"],
                "value": {"labels": ["pos"]},
                "submission_id": str(uuid.uuid4()),
                "next": True,
            },
        )
        assert status == 201, body
        return body["next"]

    def round_trip(self):
        status, task = self.post("/next/")
        if status == 204:
            return False
        assert status == 200, task
        status, body = self.post(
            "/submit/",
            {
                "lease": task["lease"],
                "value": {"labels": ["pos"]},
                "submission_id": str(uuid.uuid4()),
            },
        )
        assert status == 201, body
        return True


def test_import_and_annotate_a_million_item_project(
    asgi_server_2_workers, report, tmp_path, project
):
    asgi_server = asgi_server_2_workers
    engineer = UserFactory(username="bench-engineer")
    MembershipFactory(project=project, user=engineer, role="engineer")
    elapsed = import_generated_rows(project, engineer, tmp_path / "million.jsonl", ROWS)
    report("import_jsonl_1m_rows_s", elapsed, "s")

    classification_setup(project, k=2)
    tokens = []
    for i in range(17):
        user = UserFactory(username=f"bench-annotator-{i}")
        MembershipFactory(project=project, user=user, role="annotator")
        tokens.append(api_key_for(user))

    # Sequential: one annotator, next + submit, p95 of the round trip.
    single = Client(asgi_server, tokens[16], project.pk)
    timings = []
    for i in range(320):
        t0 = time.perf_counter()
        assert single.round_trip()
        if i >= 20:
            timings.append((time.perf_counter() - t0) * 1000)
    report("next_item_submit_p95_ms", statistics.quantiles(timings, n=20)[-1], "ms")

    # Concurrent: 16 annotators for a fixed wall time.
    duration = 20.0
    counts = [0] * 16
    errors = []
    barrier = threading.Barrier(16)

    def annotate(index):
        client = Client(asgi_server, tokens[index], project.pk)
        barrier.wait()
        stop = time.perf_counter() + duration
        try:
            while time.perf_counter() < stop:
                if client.round_trip():
                    counts[index] += 1
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(repr(error))

    threads = [threading.Thread(target=annotate, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    report("annotate_16_clients_per_s", sum(counts) / duration, "submissions/s")

    # The same 16 annotators on the one-request loop (submit returns the next item).
    counts = [0] * 16
    barrier = threading.Barrier(16)

    def annotate_combined(index):
        client = Client(asgi_server, tokens[index], project.pk)
        status, task = client.post("/next/")
        barrier.wait()
        stop = time.perf_counter() + duration
        try:
            while task is not None and time.perf_counter() < stop:
                task = client.submit_and_next(task)
                counts[index] += 1
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(repr(error))

    threads = [threading.Thread(target=annotate_combined, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    report("annotate_16_clients_submit_returns_next_per_s", sum(counts) / duration, "submissions/s")

    over = Item.objects.filter(assigned_count__gt=2).count()
    most = Annotation.objects.values("item").annotate(n=Count("id")).order_by("-n").first()
    report("annotate_16_clients_over_assigned_items", over, "items")
    assert over == 0
    assert most["n"] <= 2
    # Every submission appended to the audit chain in its own statement; the chain holds.
    assert audit_chain_verify().ok


def test_agreement_on_a_million_labels(report):
    rng = np.random.default_rng(7)
    items = 500_000
    truth = rng.integers(0, 5, items)
    item = np.repeat(np.arange(items), 2)
    annotator = rng.integers(0, 40, items * 2)
    # Make the two labels of an item come from different annotators.
    annotator[1::2] = (annotator[0::2] + 1 + rng.integers(0, 39, items)) % 40
    noisy = rng.random(items * 2) < 0.2
    value = np.where(noisy, rng.integers(0, 5, items * 2), np.repeat(truth, 2))
    table = LabelTable(item=item, annotator=annotator, value=value, n_categories=5)

    start = time.perf_counter()
    summary = agreement_summary(table, "nominal")
    elapsed = time.perf_counter() - start

    report("agreement_1m_labels_s", elapsed, "s")
    assert 0.5 < summary["alpha"] < 0.9
    assert elapsed < 10
