"""Dossier builds (cached by the hash of their inputs), downloads (the access log) and
verification of uploaded bundles."""

import os
import tempfile
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

from django.conf import settings
from django.db import IntegrityError, transaction
from dossier_verify.keyset import for_purpose

from core import keys, realtime
from core.jobs import runs_under_job_lock
from core.models import AuditEvent, User
from core.services.audit import audit_record, content_hash
from core.services.jobs import job_claim, job_fail, job_finish, job_progress, jobs_requeue
from core.signing import public_key_from_pem
from governance import selectors, tasks
from governance.dossier.build import BuiltDossier, dossier_build, dossier_key
from governance.dossier.verify import VerifyReport, verify_bundle
from governance.models import Dossier, DossierDownload, PublishedKey
from governance.services.keys import published_key_record_use
from training.selectors import ModelVersion


def dossier_dir() -> Path:
    return Path(settings.MEDIA_ROOT) / "dossiers"


def _usable(dossier: Dossier) -> bool:
    if dossier.status != Dossier.Status.SUCCEEDED:
        return True  # queued or running: the caller waits for it
    return bool(dossier.file_path) and Path(dossier.file_path).exists()


def dossier_request(*, actor: User, version: ModelVersion, run_now: bool = False) -> Dossier:
    """The dossier for `version` as the database stands now: a finished or running build
    with the same inputs if there is one, else a new build queued on the worker."""
    inputs_sha = dossier_key(version, keys.signing_key())
    for _ in range(2):
        existing = (
            Dossier.objects.filter(model_version=version, inputs_sha256=inputs_sha)
            .exclude(status=Dossier.Status.FAILED)
            .first()
        )
        if existing is not None and _usable(existing):
            return existing
        try:
            with transaction.atomic():
                if existing is not None:  # its file is gone: build again
                    Dossier.objects.filter(pk=existing.pk).update(
                        status=Dossier.Status.FAILED, error="file missing; rebuilt"
                    )
                dossier = Dossier.objects.create(
                    project_id=version.project_id,
                    model_version=version,
                    inputs_sha256=inputs_sha,
                    requested_by=actor,
                    step="Waiting for a worker",
                )
                audit_record(
                    actor=actor,
                    action="governance.dossier.request",
                    target=dossier,
                    data={"model_version": version.pk, "inputs_sha256": inputs_sha},
                )
                if not run_now:
                    transaction.on_commit(partial(tasks.dossier_build_task.delay, dossier.pk))
        except IntegrityError:
            continue  # a concurrent request created the same build; take that one
        if run_now:
            return dossier_build_run(dossier_id=dossier.pk)
        return dossier
    raise RuntimeError("dossier request raced twice")  # pragma: no cover


def _progress(dossier: Dossier, percent: int, step: str) -> None:
    job_progress(Dossier, pk=dossier.pk, progress=percent, step=step[:200])
    realtime.push_to_project(
        project_id=dossier.project_id,
        event={
            "type": "dossier.progress",
            "dossier": dossier.pk,
            "progress": percent,
            "step": step,
        },
    )


def _building_prefix(dossier: Dossier) -> str:
    return f".building-{dossier.pk}-"


def _write_atomically(target: Path, data: bytes, prefix: str) -> None:
    """The bundle appears whole or not at all: written beside, then renamed over."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=target.parent, prefix=prefix)
    with os.fdopen(handle, "wb") as out:
        out.write(data)
    os.replace(temp, target)


@runs_under_job_lock(Dossier, "dossier_id")
def dossier_build_run(*, dossier_id: int) -> Dossier:
    """Runs on a worker; a duplicate delivery exits at the claim. Progress is written to the
    row as the build goes, outside any transaction, so pages can show it."""
    claimed = job_claim(Dossier, pk=dossier_id, progress=1, step="Starting")
    dossier = Dossier.objects.select_related("model_version", "model_version__project").get(
        pk=dossier_id
    )
    if not claimed:
        return dossier
    try:
        built = dossier_build(
            dossier.model_version,
            keys.signing_key(),
            progress=lambda p, s: _progress(dossier, p, s),
        )
        if built.inputs_sha256 != dossier.inputs_sha256:
            # The lineage changed between the request and the build; keep the build honest
            # about what it holds by filing it under its own inputs.
            dossier.inputs_sha256 = built.inputs_sha256
        path = dossier_dir() / str(dossier.project_id) / dossier.file_name
        _write_atomically(path, built.data, _building_prefix(dossier))
    except Exception as error:  # noqa: BLE001 - any failure is recorded on the row and re-raised
        message = f"{type(error).__name__}: {error}"[:2000]
        with transaction.atomic():
            job_fail(Dossier, pk=dossier_id, error=message)
            audit_record(
                actor=None,
                action="governance.dossier.failed",
                target=dossier,
                data={"error_sha256": content_hash(message)},
            )
        raise
    _record_signing_keys(built)
    with transaction.atomic():
        job_finish(
            Dossier,
            pk=dossier_id,
            inputs_sha256=dossier.inputs_sha256,
            progress=100,
            step="Ready",
            file_path=str(path),
            bundle_sha256=built.sha256,
            bundle_bytes=len(built.data),
            warnings=built.warnings,
        )
        audit_record(
            actor=None,
            action="governance.dossier.build",
            target=dossier,
            data={"sha256": built.sha256, "bytes": len(built.data), "warnings": built.warnings},
        )
    dossier.refresh_from_db()
    _progress(dossier, 100, "Ready")
    return dossier


def _record_signing_keys(built: BuiltDossier) -> None:
    """Publish the keys the new dossier is signed with, so it verifies outside the portal
    and still does after a key is replaced."""
    published_key_record_use(
        purpose=PublishedKey.Purpose.DOSSIER, public_key=keys.signing_key().public_key()
    )
    if built.checkpoint is not None:
        published_key_record_use(
            purpose=PublishedKey.Purpose.AUDIT_CHECKPOINT,
            public_key=public_key_from_pem(built.checkpoint["public_key"].encode()),
        )


def dossier_lost(dossier: Dossier) -> None:
    """The housekeeping sweep failed a build whose worker died (in its transaction): once
    that commits, remove a bundle it was part-way through writing (never under the final
    name), then tell the pages."""
    transaction.on_commit(lambda: _lost_cleanup(dossier))


def _lost_cleanup(dossier: Dossier) -> None:
    for temp in (dossier_dir() / str(dossier.project_id)).glob(f"{_building_prefix(dossier)}*"):
        temp.unlink(missing_ok=True)
    _progress(dossier, dossier.progress, "Failed: the worker died")


@transaction.atomic
def dossier_download_record(
    *, actor: User, dossier: Dossier, ip_address: str | None, user_agent: str
) -> DossierDownload:
    """The access log row and its audit event; the caller streams the file after this."""
    download = DossierDownload.objects.create(
        project_id=dossier.project_id,
        dossier=dossier,
        model_version_id=dossier.model_version_id,
        user=actor,
        ip_address=ip_address or None,
        user_agent=(user_agent or "")[:300],
    )
    audit_record(
        actor=actor,
        action="governance.dossier.download",
        target=dossier,
        data={"sha256": dossier.bundle_sha256, "ip": ip_address or "", "download": download.pk},
    )
    return download


def dossier_verify(*, data: bytes | BinaryIO, check_chain: bool = True) -> VerifyReport:
    """Verify against the keys this portal publishes (its current keys and the retired
    ones, each within its validity), exactly as `dossier-verify --keys-url` does; with
    `check_chain`, also require that each audit event in the excerpt is the one this
    portal's chain holds at that position."""
    published = selectors.published_key_list()
    report = verify_bundle(
        data,
        trusted_keys=for_purpose(published, PublishedKey.Purpose.DOSSIER),
        trusted_checkpoint_keys=for_purpose(published, PublishedKey.Purpose.AUDIT_CHECKPOINT),
    )
    if not report.ok or not check_chain:
        return report
    checkpoint = report.predicate.get("audit_checkpoint") or {}
    if checkpoint.get("tree_size"):
        stored = (
            AuditEvent.objects.filter(seq=checkpoint["tree_size"])
            .values_list("hash", flat=True)
            .first()
        )
        if stored != checkpoint.get("head_hash"):
            report.ok = False
            report.problem = (
                f"the dossier's audit checkpoint signed event #{checkpoint['tree_size']} as "
                f"{checkpoint.get('head_hash')}, but this portal's chain has "
                f"{stored or 'no such event'}: the audit log was rewritten or truncated"
            )
            return report
        report.passed.append(
            f"audit checkpoint #{checkpoint['tree_size']} matches this portal's chain"
        )
    head = report.predicate.get("audit_chain_head") or {}
    if head.get("seq"):
        stored = AuditEvent.objects.filter(seq=head["seq"]).values_list("hash", flat=True).first()
        if stored is None:
            report.ok = False
            report.problem = (
                f"audit event #{head['seq']} named by the manifest is not in this portal's chain"
            )
        elif stored != head.get("hash"):
            report.ok = False
            report.problem = (
                f"audit event #{head['seq']} in this portal's chain has hash {stored}, "
                f"the dossier says {head.get('hash')}"
            )
        else:
            report.passed.append(f"audit head #{head['seq']} matches this portal's chain")
    return report


@transaction.atomic
def dossier_builds_requeue_abandoned(*, actor: User | None, project: Any) -> int:
    """Dossier builds left queued or running when an embedded portal's workers stopped:
    queued again and sent. Only while no worker runs (`seed_demo`). Returns how many."""
    stuck = jobs_requeue(Dossier.objects.filter(project=project), progress=0, step="")
    for dossier in stuck:
        transaction.on_commit(partial(tasks.dossier_build_task.delay, dossier.pk))
    if stuck:
        audit_record(
            actor=actor,
            action="governance.dossier.requeue",
            target=project,
            data={"dossiers": [d.pk for d in stuck]},
        )
    return len(stuck)
