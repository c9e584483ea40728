"""The register of public keys this portal has signed with, which it publishes so that an
auditor without an account can check a dossier (governance.selectors.published_key_list)."""

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.services.audit import audit_record
from core.signing import key_fingerprint, public_key_pem
from governance.models import PublishedKey


def published_key_record_use(
    *, purpose: PublishedKey.Purpose, public_key: Ed25519PublicKey
) -> PublishedKey:
    """Record that `public_key` signs for `purpose` now. Its first use retires the key
    used before it (valid until now); a retired key used again is current once more.
    Called when a dossier is built; a concurrent first use of the same key is retried."""
    for _ in range(2):
        try:
            return _record_use(purpose=purpose, public_key=public_key)
        except IntegrityError:
            continue  # a concurrent build recorded the same key first; read it again
    raise RuntimeError("published key recording raced twice")  # pragma: no cover


@transaction.atomic
def _record_use(*, purpose: PublishedKey.Purpose, public_key: Ed25519PublicKey) -> PublishedKey:
    key_id = key_fingerprint(public_key)
    rows = list(PublishedKey.objects.select_for_update().filter(purpose=purpose))
    current = next((row for row in rows if row.valid_until is None), None)
    if current is not None and current.key_id == key_id:
        return current
    now = timezone.now()
    if current is not None:
        current.valid_until = now
        current.save(update_fields=["valid_until"])
        audit_record(
            actor=None,
            action="governance.key.retire",
            target=current,
            data={"purpose": purpose, "key_id": current.key_id, "successor": key_id},
        )
    used_before = next((row for row in rows if row.key_id == key_id), None)
    if used_before is not None:
        used_before.valid_until = None
        used_before.save(update_fields=["valid_until"])
        audit_record(
            actor=None,
            action="governance.key.reinstate",
            target=used_before,
            data={"purpose": purpose, "key_id": key_id},
        )
        return used_before
    row = PublishedKey.objects.create(
        purpose=purpose,
        key_id=key_id,
        public_key_pem=public_key_pem(public_key).decode("ascii"),
        valid_from=now,
    )
    audit_record(
        actor=None,
        action="governance.key.publish",
        target=row,
        data={"purpose": purpose, "key_id": key_id},
    )
    return row
