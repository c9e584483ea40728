"""Signed dossiers of model versions, sign-offs, stage changes, use declarations and the
project's audit log."""

import builtins
import hashlib
import time
from pathlib import Path
from typing import Any

from tuning_portal._exceptions import TuningPortalError
from tuning_portal.pagination import CursorPaginator, Paginator
from tuning_portal.resources._base import Resource
from tuning_portal.types import (
    Approval,
    AuditEvent,
    Dossier,
    DossierFile,
    SignOff,
    StageChange,
    StageChangeResult,
    UseDeclaration,
)

CHUNK = 64 * 1024


class Dossiers(Resource):
    """projects/<p>/models/<v>/dossiers/ (list, request) and projects/<p>/dossiers/<id>/
    (retrieve, download/)."""

    def list(self, version_id: int, *, project: int | None = None) -> builtins.list[Dossier]:
        path = self._path(project, f"models/{int(version_id)}/dossiers/")
        return [Dossier.from_dict(row) for row in self._client._get(path)]

    def create(self, version_id: int, *, project: int | None = None) -> Dossier:
        """The dossier of the version as its data stands now: a finished build with the
        same inputs if there is one, else a new build, queued. Safe to repeat."""
        path = self._path(project, f"models/{int(version_id)}/dossiers/")
        return Dossier.from_dict(self._client._post(path, idempotent=True))

    def retrieve(self, dossier_id: int, *, project: int | None = None) -> Dossier:
        path = self._path(project, f"dossiers/{int(dossier_id)}/")
        return Dossier.from_dict(self._client._get(path))

    def wait(
        self,
        dossier_id: int,
        *,
        project: int | None = None,
        timeout: float = 300.0,
        poll_interval: float = 0.5,
    ) -> Dossier:
        deadline = time.monotonic() + timeout
        while True:
            dossier = self.retrieve(dossier_id, project=project)
            if dossier.done:
                return dossier
            if time.monotonic() > deadline:
                raise TimeoutError(f"dossier {dossier_id} still {dossier.status} after {timeout} s")
            time.sleep(poll_interval)

    def download(
        self,
        version_id: int,
        path: str | Path,
        *,
        project: int | None = None,
        timeout: float = 300.0,
        poll_interval: float = 0.5,
    ) -> DossierFile:
        """Request the version's dossier, wait for its build and write the signed bundle
        (a zip) to `path`. The download is recorded in the portal's access log."""
        dossier = self.create(version_id, project=project)
        if not dossier.done:
            dossier = self.wait(
                dossier.id, project=project, timeout=timeout, poll_interval=poll_interval
            )
        if dossier.status != "succeeded":
            raise TuningPortalError(f"dossier {dossier.id} {dossier.status}: {dossier.error}")
        target = Path(path)
        partial = target.with_name(target.name + ".part")
        digest, size = hashlib.sha256(), 0
        with self._client._stream(
            self._path(project, f"dossiers/{dossier.id}/download/")
        ) as response:
            try:
                with partial.open("wb") as out:
                    for chunk in response.iter_bytes(CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
        partial.replace(target)
        if dossier.bundle_sha256 and digest.hexdigest() != dossier.bundle_sha256:
            target.unlink(missing_ok=True)
            raise TuningPortalError(
                f"dossier {dossier.id}: downloaded sha256 {digest.hexdigest()} is not the "
                f"recorded {dossier.bundle_sha256}"
            )
        return DossierFile(path=target, bytes=size, sha256=digest.hexdigest(), dossier=dossier)


class AuditEvents(Resource):
    """GET projects/<p>/audit-events/ (paginated, newest first; compliance and admins)."""

    def list(
        self, *, project: int | None = None, page_size: int = 100, **filters: Any
    ) -> Paginator[AuditEvent]:
        """Filters: action, actor_username, target_type, target_id."""
        path = self._path(project, "audit-events/")
        return Paginator(
            lambda query: self._client._get(path, params=query),
            AuditEvent.from_dict,
            params=filters,
            page_size=page_size,
        )


class Approvals(Resource):
    """projects/<p>/models/<v>/signoffs/: a version's sign-offs and what its promotion
    still needs (GET); record the caller's sign-off (POST)."""

    def retrieve(self, version_id: int, *, project: int | None = None) -> Approval:
        path = self._path(project, f"models/{int(version_id)}/signoffs/")
        return Approval.from_dict(self._client._get(path))

    def sign(
        self,
        version_id: int,
        *,
        role: str,
        comment: str,
        decision: str = "approve",
        project: int | None = None,
    ) -> SignOff:
        """Sign off as `role` (engineering_lead needs the engineer role, compliance the
        compliance role), once per person and version; `decision` approve or reject."""
        path = self._path(project, f"models/{int(version_id)}/signoffs/")
        body = {"role": role, "decision": decision, "comment": comment}
        return SignOff.from_dict(self._client._post(path, json=body))


class Stages(Resource):
    """projects/<p>/models/<v>/stage-changes/ (history, promote) and projects/<p>/rollback/."""

    def list(
        self, version_id: int, *, project: int | None = None, page_size: int = 100
    ) -> CursorPaginator[StageChange]:
        path = self._path(project, f"models/{int(version_id)}/stage-changes/")
        return self._pages(path, StageChange.from_dict, None, page_size)

    def promote(
        self, version_id: int, *, stage: str, reason: str = "", project: int | None = None
    ) -> StageChangeResult:
        """Move the version on: candidate → canary → production. Needs a passed gate run
        and the policy's sign-offs; a refusal is a BadRequestError saying what is missing."""
        path = self._path(project, f"models/{int(version_id)}/stage-changes/")
        body = {"stage": stage, "reason": reason}
        return StageChangeResult.from_dict(self._client._post(path, json=body))

    def rollback(self, *, reason: str, project: int | None = None) -> StageChangeResult:
        """Put back in production the version that held it before the current one."""
        path = self._path(project, "rollback/")
        return StageChangeResult.from_dict(self._client._post(path, json={"reason": reason}))


class Declarations(Resource):
    """projects/<p>/models/<v>/declaration/: what a version is for and its license."""

    def retrieve(self, version_id: int, *, project: int | None = None) -> UseDeclaration:
        path = self._path(project, f"models/{int(version_id)}/declaration/")
        return UseDeclaration.from_dict(self._client._get(path))

    def set(
        self,
        version_id: int,
        *,
        intended_use: str,
        license: str,
        commercial_use: bool = False,
        limitations: str = "",
        out_of_scope: str = "",
        project: int | None = None,
    ) -> UseDeclaration:
        path = self._path(project, f"models/{int(version_id)}/declaration/")
        body = {
            "intended_use": intended_use,
            "license": license,
            "commercial_use": commercial_use,
            "limitations": limitations,
            "out_of_scope": out_of_scope,
        }
        response = self._client._request("PUT", path, json=body)
        return UseDeclaration.from_dict(response.json())
