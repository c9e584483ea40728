"""Build one dossier: collect, render, sign, pack. Deterministic: the same database state
and key give the same bytes (no clock, no randomness, sorted everything)."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from annotation.selectors.lineage import snapshot_disagreement_rows, snapshot_figures
from core.signing import key_fingerprint
from governance.dossier.bundle import bundle_build, json_bytes, sha256_hex
from governance.dossier.collect import DOSSIER_FORMAT, dossier_inputs, inputs_sha256
from governance.dossier.render import render_files
from governance.dossier.verify import AUDIT_CHECKPOINT
from training.selectors import ModelVersion

Progress = Callable[[int, str], None]


@dataclass(frozen=True)
class BuiltDossier:
    data: bytes
    inputs_sha256: str
    sha256: str
    warnings: list[str]
    # The audit checkpoint the dossier carries, signed by this portal (None: no checkpoint).
    checkpoint: dict[str, Any] | None = None


def dossier_key(version: ModelVersion, key: Ed25519PrivateKey) -> str:
    """The cache key: the hash of everything the dossier is built from."""
    inputs = dossier_inputs(version, signing_key_id=key_fingerprint(key.public_key()))
    return inputs_sha256(inputs)


def _checkpoint_summary(checkpoint: dict[str, Any] | None) -> dict[str, Any] | None:
    if checkpoint is None:
        return None
    return {k: checkpoint[k] for k in ("tree_size", "head_hash", "timestamp", "key_id")}


def _predicate(inputs: dict[str, Any], key_sha: str) -> dict[str, Any]:
    version = inputs["version"]
    lineage = inputs["lineage"]
    base = next((b for b in lineage["base_models"] if b["id"] == version["base_model"]), None)
    return {
        "dossier_format": DOSSIER_FORMAT,
        "inputs_sha256": key_sha,
        "model_version": {
            "id": version["id"],
            "name": version["name"],
            "stage": version["stage"],
            "kind": version["kind"],
            "project": inputs["project"]["name"],
        },
        "checkpoint_sha256": version["checkpoint_sha256"],
        "base_model": {
            "name": base["name"] if base else None,
            "weights_sha256": version["base_weights_sha256"],
            "license": base["license"] if base else None,
        },
        "snapshots": [
            {k: s[k] for k in ("id", "name", "version", "manifest_sha256")}
            for s in lineage["snapshots"]
        ],
        "datasets": [
            {k: d[k] for k in ("id", "name", "file_sha256", "license")} for d in lineage["datasets"]
        ],
        "audit_chain_head": inputs["audit"]["head"],
        "audit_checkpoint": _checkpoint_summary(inputs["audit"]["checkpoint"]),
        "license_findings": [f for f in inputs["licenses"] if f["severity"] != "ok"],
    }


def dossier_build(
    version: ModelVersion, key: Ed25519PrivateKey, progress: Progress = lambda p, s: None
) -> BuiltDossier:
    progress(5, "Collecting lineage, evaluation and approvals")
    inputs = dossier_inputs(version, signing_key_id=key_fingerprint(key.public_key()))
    key_sha = inputs_sha256(inputs)
    figures, disagreements = [], []
    snapshots = inputs["lineage"]["snapshots"]
    for n, snapshot in enumerate(snapshots):
        progress(
            15 + 40 * n // max(len(snapshots), 1),
            f"Annotation figures: {snapshot['name']} v{snapshot['version']}",
        )
        figures.append(snapshot_figures(snapshot_id=snapshot["id"]))
        disagreements.extend(snapshot_disagreement_rows(snapshot_id=snapshot["id"]))
    files = render_files(inputs, figures, disagreements, progress=progress)
    if inputs["audit"]["checkpoint"] is not None:
        files[AUDIT_CHECKPOINT] = json_bytes(inputs["audit"]["checkpoint"])
    progress(90, "Signing")
    data = bundle_build(files, _predicate(inputs, key_sha), key)
    warnings = [
        f"{f['source']} ({f['license'] or 'no license'}): {f['message']}"
        for f in inputs["licenses"]
        if f["severity"] != "ok"
    ]
    return BuiltDossier(
        data=data,
        inputs_sha256=key_sha,
        sha256=sha256_hex(data),
        warnings=warnings,
        checkpoint=inputs["audit"]["checkpoint"],
    )
