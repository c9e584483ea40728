"""The SQL of the annotation queue's hot path: what an annotator does several times a
minute, next item and submit, in one or two statements each.

Each write here is one statement run on its own (autocommit), so the row locks it takes,
the audit chain head's among them, are released by the server the moment it ends, without
waiting for a web thread to send COMMIT. A statement checks its own preconditions under
its locks and changes nothing when one no longer holds; the service then reads again."""

import json
from typing import Any

from django.db import connection

from annotation.models import Annotation, Item, answer_join
from core.fields import EncryptedJSONField

ITEM_FIELDS = [f for f in Item._meta.concrete_fields]
ITEM_ATTNAMES = [f.attname for f in ITEM_FIELDS]
_JSON_ATTNAMES = {f.attname for f in ITEM_FIELDS if f.get_internal_type() == "JSONField"}
_ENCRYPTED = {f.attname: f for f in ITEM_FIELDS if isinstance(f, EncryptedJSONField)}


def item_columns(alias: str) -> str:
    return ", ".join(f'{alias}."{f.column}"' for f in ITEM_FIELDS)


def item_from_row(values: tuple) -> Item:
    """An Item from the columns `item_columns` selected, as the ORM would have built it."""
    values = tuple(
        _ENCRYPTED[name].decrypt(v)
        if name in _ENCRYPTED
        else json.loads(v)
        if name in _JSON_ATTNAMES and isinstance(v, str)
        else v
        for name, v in zip(ITEM_ATTNAMES, values, strict=True)
    )
    return Item.from_db(connection.alias, ITEM_ATTNAMES, values)


def payload_value(value: str) -> Any:
    """An item's payload column as selected by raw SQL (ciphertext) in plaintext."""
    return _ENCRYPTED["payload"].decrypt(value)


def json_value(value: Any) -> Any:
    """jsonb and json columns reach raw cursors as text (Django's psycopg setup)."""
    return json.loads(value) if isinstance(value, str) else value


_FREE_TEXT = Annotation._meta.get_field("free_text")


def answer_value(choice: Any, free_text: str | None) -> dict | None:
    """An answer from its raw columns: plain choice (JSON) and encrypted free text."""
    return answer_join(json_value(choice), _FREE_TEXT.decrypt(free_text))


# The annotator's newest active lease (overdue or not) and the project's queue settings, in
# one round trip.
NEXT_READ_SQL = f"""
SELECT s.labels_per_item, s."order", s.lease_seconds, s.gold_rate,
       (SELECT id FROM annotation_labelschema WHERE project_id = s.project_id
        ORDER BY version DESC LIMIT 1),
       (SELECT id FROM annotation_guideline WHERE project_id = s.project_id
        ORDER BY version DESC LIMIT 1),
       l.id, l.created_at, l.expires_at, l.schema_id, l.guideline_id,
       {item_columns("i")}
FROM annotation_annotationsettings s
LEFT JOIN LATERAL (
    SELECT * FROM annotation_lease l
    WHERE l.project_id = s.project_id AND l.annotator_id = %(user)s AND l.kind = 'label'
      AND l.state = 'active'
    ORDER BY l.created_at DESC LIMIT 1
) l ON true
LEFT JOIN annotation_item i ON i.id = l.item_id
WHERE s.project_id = %(project)s
"""  # noqa: S608 - column names only; values are parameters

ORDER_SQL = {
    "sequential": "i.project_id, i.id",
    "random": "i.project_id, i.random_key, i.id",
    "priority": "i.project_id, i.priority DESC, i.id",
}

# Claim one item in one statement: pick it (skipping rows other annotators are claiming),
# count the lease against k, and record the lease.
#
# The candidate must come from a partial index item_queue_*, which holds open items only.
# With `project_id = %s` the planner drops project_id from the ORDER BY and walks the
# primary key instead, filtering out every decided item at the head of the queue on each
# claim: 13 ms once a few thousand are done, and growing. A range on project_id keeps the
# (project_id, ...) order, so only the partial indexes can serve it.
CLAIM_SQL = """
WITH candidate AS (
    SELECT i.id FROM annotation_item i
    WHERE i.project_id >= %(project)s AND i.project_id <= %(project)s
      AND NOT i.is_gold AND i.state = 'open'
      AND i.assigned_count < %(k)s
      AND NOT EXISTS (
          SELECT 1 FROM annotation_lease l
          WHERE l.item_id = i.id AND l.annotator_id = %(user)s AND l.state <> 'expired')
    ORDER BY {order}
    LIMIT 1
    FOR UPDATE OF i SKIP LOCKED
), bumped AS (
    UPDATE annotation_item i SET assigned_count = i.assigned_count + 1
    FROM candidate c WHERE i.id = c.id
    RETURNING {item_columns}
), leased AS (
    INSERT INTO annotation_lease (project_id, item_id, annotator_id, kind, state, created_at,
                                  expires_at, skip_reason, schema_id, guideline_id)
    SELECT %(project)s::bigint, b.id, %(user)s::bigint, 'label', 'active',
           %(now)s::timestamptz, %(expires)s::timestamptz, NULL, %(schema)s::bigint,
           %(guideline)s::bigint
    FROM bumped b
    RETURNING id
)
SELECT leased.id, {item_columns},
       -- A lease lost in a crash only returns its item to the pool, so this statement
       -- need not wait for its commit to reach the disk.
       set_config('synchronous_commit', 'off', true)
FROM leased, bumped i
"""


_CLAIM_BY_ORDER = {
    order: CLAIM_SQL.format(order=columns, item_columns=item_columns("i"))
    for order, columns in ORDER_SQL.items()
}


def claim_sql(order: str) -> str:
    return _CLAIM_BY_ORDER[order]


# Everything a submit decides on, without locks: the statement that writes re-checks it.
# Ids for the answer and, when this answer completes the item, its gold label are drawn
# here, because the audit events that name them are hashed before the rows exist.
SUBMIT_READ_SQL = """
SELECT l.annotator_id, l.state, l.item_id, l.schema_id, l.guideline_id, l.created_at,
       l.expires_at, i.payload, i.is_gold, i.state, i.label_count,
       s.labels_per_item, s.agreement_rule, s.majority_min,
       (SELECT a.lease_id FROM annotation_annotation a WHERE a.submission_id = %(submission)s),
       (SELECT json_agg(json_build_array(a.id, a.choice, a.free_text)
                 ORDER BY a.submitted_at, a.id)
        FROM annotation_annotation a WHERE a.item_id = l.item_id AND NOT a.undone),
       nextval(pg_get_serial_sequence('annotation_annotation', 'id')),
       CASE WHEN NOT i.is_gold AND l.state = 'active'
                 AND i.label_count + 1 >= s.labels_per_item
            THEN nextval(pg_get_serial_sequence('annotation_goldlabel', 'id')) END
FROM annotation_lease l
JOIN annotation_item i ON i.id = l.item_id
LEFT JOIN annotation_annotationsettings s ON s.project_id = l.project_id
WHERE l.id = %(lease)s AND l.project_id = %(project)s AND l.kind = 'label'
"""

# Lock order as everywhere in the queue: answers, then lease and item. `locked` returns a
# row only if nothing the read saw has changed: the lease is still this annotator's and
# active, the item holds the same number of answers, and the answers agreement was decided
# on still stand. Every write below hangs off `locked`.
SUBMIT_WRITE_SQL = """
WITH standing AS (
    SELECT id FROM annotation_annotation
    WHERE id = ANY(%(others)s::bigint[]) AND NOT undone
    FOR UPDATE
), locked AS (
    SELECT l.id, l.item_id FROM annotation_lease l
    JOIN annotation_item i ON i.id = l.item_id
    WHERE l.id = %(lease)s AND l.annotator_id = %(user)s AND l.state = 'active'
      AND l.expires_at >= %(now)s AND i.label_count = %(label_count)s
      AND i.state = %(item_state)s::text
      AND (SELECT count(*) FROM standing) = %(standing)s::bigint
      -- The audit below must be able to append, or nothing is written.
      AND EXISTS (SELECT 1 FROM governance_auditchainhead WHERE id = 1)
    FOR UPDATE OF l, i
), item_counted AS (
    UPDATE annotation_item i
    SET label_count = i.label_count + %(counted)s::int, state = %(new_state)s::text
    FROM locked WHERE i.id = locked.item_id
    RETURNING i.id
), lease_closed AS (
    UPDATE annotation_lease l SET state = 'submitted'
    FROM locked WHERE l.id = locked.id
    RETURNING l.id
), answer AS (
    INSERT INTO annotation_annotation (id, project_id, item_id, annotator_id, choice,
        free_text, schema_id, guideline_id, submission_id, lease_id, started_at,
        submitted_at, seconds_spent, seconds_source, too_fast, undone)
    SELECT %(annotation)s::bigint, %(project)s::bigint, locked.item_id, %(user)s::bigint,
           %(choice)s::jsonb, %(free_text)s::text, %(schema)s::bigint, %(guideline)s::bigint,
           %(submission)s::uuid, locked.id, %(started)s::timestamptz, %(now)s::timestamptz,
           %(seconds)s::float8, %(seconds_source)s::text, %(too_fast)s::boolean, false
    FROM locked
    RETURNING id
){gold},
{audit}
SELECT (SELECT count(*) FROM answer), (SELECT count(*) FROM audit_rows)
"""

GOLD_INSERT_SQL = """, gold AS (
    INSERT INTO annotation_goldlabel (id, project_id, item_id, choice, free_text, method,
        decided_by_id, reason, annotation_ids, created_at)
    SELECT %(gold)s::bigint, %(project)s::bigint, answer_item.item_id,
           %(gold_choice)s::jsonb, %(gold_free_text)s::text, %(method)s::text, NULL::bigint,
           %(gold_reason)s::text, %(gold_ids)s::jsonb,
           %(now)s::timestamptz
    FROM answer, locked answer_item
    RETURNING id
)"""
