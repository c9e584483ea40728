"""Data protection at the bottom of the house: files and column values encrypted at rest
under rotatable Fernet keys. Which files exist is each app's business (governance walks the
uploads when it rotates keys); this module only knows how to read, write and re-encrypt."""

from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import BinaryIO

from django.apps import apps
from django.db import connection, models

from core import at_rest, keys
from core.fields import EncryptedJSONField, rewrite_rows, rotate_token
from core.services.audit import audit_record

ROTATE_BATCH = 2000


def stored_file_open_write(path: str | Path) -> BinaryIO:
    """Where an upload is written: plaintext in, ciphertext on disk under the newest key."""
    return at_rest.open_write(path, keys.encryption_keys())


def stored_file_open_read(path: str | Path) -> BinaryIO:
    """The plaintext of a stored upload, whichever configured key encrypted it."""
    return at_rest.open_read(path, keys.encryption_keys())


def encrypted_columns() -> list[tuple[type[models.Model], list[EncryptedJSONField]]]:
    """Every model with values encrypted at rest, and those fields."""
    found = []
    for model in apps.get_models():
        fields = [f for f in model._meta.concrete_fields if isinstance(f, EncryptedJSONField)]
        if fields and not model._meta.proxy:
            found.append((model, fields))
    return found


def _token_rotate(token: str, column: str, pk: object, *, table: str) -> str:
    return rotate_token(token, where=f"{table}.{column} row {pk}")


def encrypted_columns_rotate(*, on_progress: Callable[[str, int], None] | None = None) -> Counter:
    """Put every value encrypted at rest (item payloads, honeypot answers, prompts and
    references) under the first key; plaintext JSON written before encryption was turned
    on is encrypted. Batches commit one by one: an interrupted run is finished by running
    it again."""
    done: Counter = Counter()
    for model, fields in encrypted_columns():
        label, table = model._meta.label, model._meta.db_table
        done[label] = rewrite_rows(
            connection,
            table=table,
            pk=model._meta.pk.column,
            columns=[f.column for f in fields],
            change=partial(_token_rotate, table=table),
            batch=ROTATE_BATCH,
            on_batch=(None if on_progress is None else partial(on_progress, label)),
        )
        audit_record(
            actor=None,
            action="governance.encryption.rekey_rows",
            data={"model": label, "fields": [f.name for f in fields], "rows": done[label]},
        )
    return done
