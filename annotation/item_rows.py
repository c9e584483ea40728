"""What an import writes for each parsed row: the items table's columns, ready for COPY.

Nothing here reads the settings or the database (the encryption key is passed in), so the
import's worker processes (annotation.import_workers) build the very rows the importing
process would, without setting Django up."""

import hashlib
import math
from dataclasses import dataclass

from cryptography.fernet import Fernet, MultiFernet

from annotation.importing import ImportRefused, ParsedRow, canonical_text, content_hash
from core.fields import encrypt_json

ITEM_COLUMNS = (
    "project_id",
    "dataset_id",
    "row_number",
    "external_id",
    "payload",
    "content_hash",
    "metadata",
    "state",
    "priority",
    "random_key",
    "assigned_count",
    "label_count",
    "is_gold",
    "gold_answer",
)
OPEN = "open"  # Item.State.OPEN; a test pins the two together


def random_key(sha256: str, row_number: int) -> int:
    """A row's place in the seeded random queue order: fixed by the file and the row."""
    digest = hashlib.blake2b(f"{sha256}:{row_number}".encode(), digest_size=7).digest()
    return int.from_bytes(digest, "big")


@dataclass(frozen=True)
class ItemRows:
    project_id: int
    dataset_id: int
    sha256: str  # the file's, which seeds the random order
    fernet: Fernet | MultiFernet | None = None  # None: the configured keys

    def values(self, row: ParsedRow) -> tuple:
        """The item's column values (ITEM_COLUMNS), as the model holds them."""
        payload, digest = row.payload, row.content_hash
        gold_answer = None
        if "gold_answer" in payload:  # a honeypot row carries its known answer
            payload = dict(payload)
            gold_answer = payload.pop("gold_answer")
            digest = content_hash(payload)
        given = row.metadata.get("priority")
        try:
            priority = float(given) if given else 0.0
        except ValueError:
            raise ImportRefused(
                file=None, line=row.row_number, field="priority", reason="is not a number"
            ) from None
        if not math.isfinite(priority):
            # "1e400", "inf" and "nan" parse as floats but cannot order a queue.
            raise ImportRefused(
                file=None, line=row.row_number, field="priority", reason="is not a finite number"
            )
        return (
            self.project_id,
            self.dataset_id,
            row.row_number,
            row.external_id or "",
            payload,
            digest,
            row.metadata,
            OPEN,
            priority,
            random_key(self.sha256, row.row_number),
            0,
            0,
            gold_answer is not None,
            gold_answer,
        )

    def copy_row(self, row: ParsedRow) -> tuple:
        """As `values`, with JSON columns as JSON text and the payload and a honeypot's
        answer as ciphertext, as their fields store them."""
        values = list(self.values(row))
        values[6] = canonical_text(values[6])  # metadata
        for index in (4, 13):  # payload, gold_answer
            if values[index] is not None:
                values[index] = encrypt_json(values[index], self.fernet)
        return tuple(values)
