"""What the database itself holds, past the ORM's converters: encrypted columns read as
their ciphertext."""

from django.db import connection


def stored_item(item_id: int) -> tuple[str, str | None]:
    """An item's (payload, gold_answer) columns as stored."""
    return _row("SELECT payload, gold_answer FROM annotation_item WHERE id = %s", item_id)


def stored_prompt(prompt_id: int) -> tuple[str, str]:
    """A prompt's (text, reference) columns as stored."""
    return _row("SELECT text, reference FROM evaluation_prompt WHERE id = %s", prompt_id)


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
