import hashlib
import time

import psutil
import pytest
from django.db import connection

from annotation.models import QualityCheck
from annotation.services.exports import export_lines
from annotation.services.quality import quality_check_run, quality_check_start
from annotation.services.snapshots import manifest_recompute, snapshot_create
from core.fields import encrypt_json
from tests.annotation.factories import DatasetFactory, classification_setup

pytestmark = pytest.mark.django_db

ITEMS = 1_000_000
NEAR_ITEMS = 100_000


def _fill(dataset, n, text_sql, *, gold=True):
    """n items (and gold labels) whose texts the database itself makes; the payloads are
    encrypted here, as the import encrypts them: the bench measures the snapshot and the
    export, not the set-up."""
    step = 100_000
    columns = (
        "project_id, dataset_id, row_number, external_id, payload, content_hash, metadata, "
        "state, priority, random_key, assigned_count, label_count, is_gold"
    )
    with connection.cursor() as cursor:
        for first in range(1, n + 1, step):
            cursor.execute(
                f"SELECT g, {text_sql} FROM generate_series(%(first)s, %(last)s) AS g",  # noqa: S608 - a constant of this file
                {"first": first, "last": min(first + step - 1, n)},
            )
            texts = cursor.fetchall()
            with cursor.cursor.copy(f"COPY annotation_item ({columns}) FROM STDIN") as copy:
                for g, text in texts:
                    copy.write_row(
                        (
                            dataset.project_id,
                            dataset.pk,
                            g,
                            "",
                            encrypt_json({"text": text}),
                            hashlib.md5(str(g).encode()).hexdigest(),  # noqa: S324 - a filler
                            '{"lang": "fr"}' if g % 3 == 0 else '{"lang": "en"}',
                            "resolved",
                            0,
                            g,
                            0,
                            2,
                            False,
                        )
                    )
        if gold:
            cursor.execute(
                """
                INSERT INTO annotation_goldlabel (project_id, item_id, choice, method, reason,
                    annotation_ids, created_at)
                SELECT project_id, id,
                    jsonb_build_object('labels', jsonb_build_array(
                        CASE WHEN row_number %% 4 = 0 THEN 'neg' ELSE 'pos' END)),
                    'unanimous', %(reason)s, '[]'::jsonb, now()
                FROM annotation_item WHERE dataset_id = %(dataset)s
                """,
                {"dataset": dataset.pk, "reason": encrypt_json("")},
            )
        cursor.execute("ANALYZE annotation_item")
        cursor.execute("ANALYZE annotation_goldlabel")


def test_snapshot_and_sft_export_of_a_million_items(report, project, member_of):
    engineer = member_of("engineer")
    classification_setup(project)
    dataset = DatasetFactory(project=project)
    _fill(dataset, ITEMS, "'short text number ' || g || ' about the order'")

    start = time.perf_counter()
    snapshot = snapshot_create(actor=engineer, project=project, name="bench", seed=1)
    elapsed = time.perf_counter() - start
    assert snapshot.member_count == ITEMS
    report("snapshot_1m_items_s", elapsed, "s")
    assert elapsed <= 60
    assert manifest_recompute(snapshot=snapshot) == snapshot.manifest_sha256

    process = psutil.Process()
    baseline = process.memory_info().rss
    rss_at: dict[int, int] = {}
    rows = 0
    start = time.perf_counter()
    for _ in export_lines(snapshot=snapshot, fmt="sft"):
        rows += 1
        if rows % 100_000 == 0:
            rss_at[rows] = process.memory_info().rss - baseline
    elapsed = time.perf_counter() - start
    assert rows == ITEMS
    report("export_sft_1m_items_s", elapsed, "s")
    growth_100k = rss_at[100_000] / 2**20
    growth_1m = max(rss_at.values()) / 2**20
    report("export_sft_rss_growth_at_100k_mb", growth_100k, "MB")
    report("export_sft_rss_growth_at_1m_mb", growth_1m, "MB")
    assert elapsed <= 60
    # Flat: ten times the rows may not cost more than a few MB beyond the first 100k.
    assert growth_1m - growth_100k < 32


def test_near_duplicates_of_100k_items(report, project, member_of):
    engineer = member_of("engineer")
    dataset = DatasetFactory(project=project)
    # 20 pseudo-random words per row; every 10th row repeats the row before plus one word.
    base = "(g - (g %% 10 = 0)::int)::text"
    words = " || ' ' || ".join(f"substr(md5({base} || '-{k}'), 1, 5)" for k in range(20))
    text_sql = f"{words} || CASE WHEN g %% 10 = 0 THEN ' extra' ELSE '' END"
    _fill(dataset, NEAR_ITEMS, text_sql, gold=False)

    start = time.perf_counter()
    check = quality_check_start(actor=engineer, project=project, kind="duplicates")
    check = quality_check_run(check_id=check.pk)
    elapsed = time.perf_counter() - start
    assert check.status == QualityCheck.Status.SUCCEEDED, check.error
    report("near_dup_100k_items_s", elapsed, "s")
    assert len(check.result["near_clusters"]) >= 0.95 * (NEAR_ITEMS // 10)
    assert elapsed <= 60
