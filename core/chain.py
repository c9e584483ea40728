"""The audit chain's hashing rules. They live in the standalone `dossier_verify` package
(no Django), so that a dossier verifier outside the portal computes exactly what the
portal computed: this module is the portal's name for them."""

from dossier_verify.chain import EVENT_PAYLOAD_FIELDS, GENESIS_HASH, canonical_json, event_hash

__all__ = ["EVENT_PAYLOAD_FIELDS", "GENESIS_HASH", "canonical_json", "event_hash"]
