"""Model fields whose values are encrypted at rest.

`EncryptedJSONField` keeps a JSON value as a Fernet token (text) under the first key of
PORTAL_ENCRYPTION_KEYS; any configured key decrypts, and `rotate_encryption_key` puts every
stored value under the newest one. The database sees only ciphertext, so it cannot filter,
index or cast such a column: the field refuses every lookup but `isnull`, and code that
needs the value reads it into Python (the ORM's converters decrypt it; raw SQL passes the
column through `EncryptedJSONField.decrypt`).
"""

import json
from collections.abc import Callable
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django import forms
from django.db import models, transaction

from core import keys

# Every Fernet token starts with its version byte 0x80 and a 64-bit timestamp whose high
# bytes are zero, which base64 writes as "gAAAAA"; JSON text never starts with a "g".
TOKEN_PREFIX = "gAAAAA"  # noqa: S105 - a format marker, not a secret


class EncryptedValueError(ValueError):
    """A stored value that none of the configured keys decrypts."""


_compact_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def encrypt_json(value: Any, fernet: Fernet | MultiFernet | None = None) -> str:
    """`value` as a token under the first configured key (or under `fernet`, for a process
    that has no settings)."""
    fernet = fernet or keys.encryption_keys()
    return fernet.encrypt(_compact_json(value).encode("utf-8")).decode("ascii")


def decrypt_json(token: str, *, where: str = "value") -> Any:
    try:
        return json.loads(keys.encryption_keys().decrypt(token.encode("ascii")))
    except InvalidToken:
        raise EncryptedValueError(
            f"{where}: cannot be decrypted with the configured PORTAL_ENCRYPTION_KEYS "
            "(a key that encrypted it was removed, or the stored value was altered)"
        ) from None


def rotate_token(token: str, *, where: str = "value") -> str:
    """The same value under the first configured key (plaintext JSON from before
    encryption was on is encrypted)."""
    if not token.startswith(TOKEN_PREFIX):
        return encrypt_json(json.loads(token))
    try:
        return keys.encryption_keys().rotate(token.encode("ascii")).decode("ascii")
    except InvalidToken:
        raise EncryptedValueError(
            f"{where}: cannot be decrypted with any of PORTAL_ENCRYPTION_KEYS"
        ) from None


def rewrite_rows(
    connection,
    *,
    table: str,
    columns: list[str],
    change: Callable[[str, str, Any], Any],
    pk: str = "id",
    batch: int = 2000,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Walk `table` in primary-key order, `batch` rows at a time, and write each non-null
    value of `columns` back as `change(value, column, row_pk)`. Each batch is its own
    transaction (a savepoint inside a migration's), its rows locked while rewritten, so an
    edit made meanwhile is neither lost nor overwritten. Returns the rows walked; an
    interrupted walk is finished by running it again. Raw SQL on table and column names, so
    migrations use it as well as the key rotation."""
    quote = connection.ops.quote_name
    table, pk_column = quote(table), quote(pk)
    quoted = [quote(c) for c in columns]
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    select = f"SELECT {pk_column}, {', '.join(quoted)} FROM {table} "  # noqa: S608 - quoted
    update = (
        f"UPDATE {table} SET {', '.join(f'{c} = %s' for c in quoted)} "  # noqa: S608 - quoted
        f"WHERE {pk_column} = %s"
    )
    done, after = 0, None
    while True:
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            if after is None:
                cursor.execute(f"{select}ORDER BY {pk_column} LIMIT %s{lock}", [batch])
            else:
                cursor.execute(
                    f"{select}WHERE {pk_column} > %s ORDER BY {pk_column} LIMIT %s{lock}",
                    [after, batch],
                )
            rows = cursor.fetchall()
            if not rows:
                return done
            cursor.executemany(
                update,
                [
                    [
                        *(
                            None if value is None else change(value, column, row[0])
                            for column, value in zip(columns, row[1:], strict=True)
                        ),
                        row[0],
                    ]
                    for row in rows
                ],
            )
        done, after = done + len(rows), rows[-1][0]
        if on_batch is not None:
            on_batch(done)


class EncryptedJSONField(models.TextField):
    description = "JSON, encrypted at rest (Fernet)"
    # For django-stubs: the attribute holds any JSON value, not TextField's str.
    _pyi_private_set_type: Any
    _pyi_private_get_type: Any
    empty_strings_allowed = False

    @property
    def where(self) -> str:
        return f"{self.model._meta.db_table}.{self.column}"

    def decrypt(self, value: str | None) -> Any:
        """A raw column value (from SQL the ORM did not build) as the model holds it."""
        return None if value is None else decrypt_json(value, where=self.where)

    def from_db_value(self, value, expression, connection):
        return self.decrypt(value)

    def to_python(self, value):
        return value

    def get_prep_value(self, value):
        if value is None:
            return None
        if hasattr(value, "resolve_expression"):
            return value
        return encrypt_json(value)

    def value_to_string(self, obj) -> Any:
        # As JSONField does: serializers (dumpdata) carry the plaintext value itself.
        return self.value_from_object(obj)

    def get_lookup(self, lookup_name):
        # Ciphertext is randomised: equal values do not compare equal, nor order, in SQL.
        if lookup_name == "isnull":
            return super().get_lookup(lookup_name)
        return None

    def get_transform(self, name):
        return None

    def formfield(self, form_class=None, choices_form_class=None, **kwargs):
        return super(models.TextField, self).formfield(
            form_class=form_class or forms.JSONField,
            choices_form_class=choices_form_class,
            **kwargs,
        )
