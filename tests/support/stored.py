"""What the database itself holds, past the ORM's converters: encrypted columns read as
their ciphertext."""

from django.db import connection


def stored_item(item_id: int) -> tuple[str, str | None]:
    """An item's (payload, gold_answer) columns as stored."""
    return _row("SELECT payload, gold_answer FROM annotation_item WHERE id = %s", item_id)


def stored_prompt(prompt_id: int) -> tuple[str, str]:
    """A prompt's (text, reference) columns as stored."""
    return _row("SELECT text, reference FROM evaluation_prompt WHERE id = %s", prompt_id)


def stored_annotation(annotation_id: int) -> tuple[str | None, str | None]:
    """An answer's (choice, free_text) columns as stored: choice as JSON text."""
    return _row(
        "SELECT choice::text, free_text FROM annotation_annotation WHERE id = %s", annotation_id
    )


def stored_gold_label(gold_id: int) -> tuple[str | None, str | None, str]:
    """A gold label's (choice, free_text, reason) columns as stored."""
    return _row(
        "SELECT choice::text, free_text, reason FROM annotation_goldlabel WHERE id = %s", gold_id
    )


def stored_member(member_id: int) -> tuple[str | None, str | None]:
    """A snapshot member's (choice, free_text) columns as stored."""
    return _row(
        "SELECT choice::text, free_text FROM annotation_snapshotmember WHERE id = %s", member_id
    )


def stored_rows_text(table: str) -> str:
    """Every row of an annotation table as one text, to search for plaintext."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT string_agg(t::text, '\n') FROM {table} t")  # noqa: S608 - tests name the table
        return cursor.fetchone()[0] or ""


def _row(sql: str, pk: int) -> tuple:
    with connection.cursor() as cursor:
        cursor.execute(sql, [pk])
        return cursor.fetchone()


def stored_column(table: str, column: str) -> list[str | None]:
    """Every value of one column of `table` as stored (test tables and columns only)."""
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {quote(column)} FROM {quote(table)} ORDER BY id")  # noqa: S608
        return [row[0] for row in cursor.fetchall()]
