import hashlib
import json
from typing import Any

from django.conf import settings
from django.db import models

GENESIS_HASH = "0" * 64


def canonical_json(value: Any) -> bytes:
    """The one byte form of a JSON value that every hash in the portal is computed over."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    ).encode("utf-8")


class AuditEvent(models.Model):
    """An append-only, hash-chained record of one write.

    The database refuses UPDATE and DELETE on this table (a trigger installed by the
    migrations), and `hash` covers the event's canonical JSON and the previous hash, so
    a change made with the trigger out of the way is still caught by verify_audit_log.
    """

    seq = models.BigIntegerField(unique=True)
    created_at = models.DateTimeField()
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+"
    )
    actor_username = models.CharField(max_length=150, blank=True)
    project = models.ForeignKey(
        "portal.Project", on_delete=models.PROTECT, null=True, related_name="+"
    )
    action = models.CharField(max_length=100)
    target_type = models.CharField(max_length=100, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    data = models.JSONField(default=dict)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["seq"]
        indexes = [
            models.Index(fields=["project", "seq"]),
            models.Index(fields=["target_type", "target_id"]),
            models.Index(fields=["action"]),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action}"

    def payload(self) -> dict[str, Any]:
        """The fields the hash covers, in the form they are hashed."""
        return {
            "seq": self.seq,
            "created_at": self.created_at.isoformat(),
            "actor_id": self.actor_id,
            "actor_username": self.actor_username,
            "project_id": self.project_id,
            "action": self.action,
            "target_type": self.target_type,
            "target_id": self.target_id,
            "data": self.data,
        }

    def compute_hash(self) -> str:
        return hashlib.sha256(
            self.prev_hash.encode("ascii") + canonical_json(self.payload())
        ).hexdigest()


class AuditChainHead(models.Model):
    """The newest event's seq and hash; its row lock serialises appends to the chain."""

    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64, default=GENESIS_HASH)

    def __str__(self) -> str:
        return f"head #{self.seq}"
