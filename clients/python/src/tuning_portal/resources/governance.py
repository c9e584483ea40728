"""Signed dossiers of model versions, and the project's audit log."""

import builtins
import hashlib
import time
from pathlib import Path
from typing import Any

from tuning_portal._exceptions import TuningPortalError
from tuning_portal.pagination import Paginator
from tuning_portal.resources._base import Resource
from tuning_portal.types import AuditEvent, Dossier, DossierFile

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
