import sys
from datetime import date
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotation.importing import ImportRefused
from annotation.models import DatasetUpload
from annotation.services.datasets import Provenance, dataset_import_run, dataset_upload_create
from portal.models import Project, Role, User


class Command(BaseCommand):
    help = "Import a JSONL, CSV or Label Studio JSON file into a project, with a progress bar."

    def add_arguments(self, parser):
        parser.add_argument("project", help="project id or slug")
        parser.add_argument("file", type=Path)
        parser.add_argument("--license", required=True, help='SPDX id or "proprietary"')
        parser.add_argument("--source", required=True, help="where the rows come from")
        parser.add_argument("--consent", default="", help="consent basis (required)")
        parser.add_argument(
            "--collected",
            type=date.fromisoformat,
            default=None,
            help="collection date, YYYY-MM-DD (default: today)",
        )
        parser.add_argument("--synthetic", action="store_true")
        parser.add_argument("--name", default="")
        parser.add_argument("--user", required=True, help="the engineer importing (username)")
        parser.add_argument("--required-field", action="append", default=[])
        parser.add_argument("--metadata-field", action="append", default=[])

    def handle(self, *args, **opts):
        project = Project.objects.filter(slug=opts["project"]).first()
        if project is None and str(opts["project"]).isdigit():
            project = Project.objects.filter(pk=int(opts["project"])).first()
        if project is None:
            raise CommandError(f"no project {opts['project']!r}")
        user = User.objects.filter(username=opts["user"]).first()
        if user is None or not project.memberships.filter(user=user, role=Role.ENGINEER).exists():
            raise CommandError(f"{opts['user']!r} is not an engineer of {project.name}")
        path: Path = opts["file"]
        if not path.is_file():
            raise CommandError(f"{path}: no such file")
        provenance = Provenance(
            source_description=opts["source"],
            license=opts["license"],
            consent_basis=opts["consent"] or "",
            synthetic=opts["synthetic"],
            collection_date=opts["collected"] or date.today(),  # noqa: DTZ011 - a calendar day
        )
        try:
            with path.open("rb") as handle:
                upload = dataset_upload_create(
                    project=project,
                    uploaded_by=user,
                    file=handle,
                    file_name=path.name,
                    provenance=provenance,
                    name=opts["name"],
                    run_now=True,
                    required_fields=opts["required_field"],
                    metadata_fields=opts["metadata_field"],
                )
        except (ValidationError, ImportRefused) as error:
            raise CommandError(_message(error)) from None
        upload = dataset_import_run(upload_id=upload.pk, on_progress=self._progress)
        sys.stderr.write("\n")
        if upload.status != DatasetUpload.Status.SUCCEEDED:
            raise CommandError(upload.error)
        self.stdout.write(
            self.style.SUCCESS(f"imported {upload.rows_done} rows into dataset {upload.dataset_id}")
        )

    def _progress(self, rows: int, percent: float) -> None:
        filled = int(percent // 2.5)
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (40 - filled)}] {percent:5.1f}%  {rows} rows")
        sys.stderr.flush()


def _message(error: Exception) -> str:
    if isinstance(error, ValidationError):
        if hasattr(error, "error_dict"):
            return "; ".join(f"{k}: {' '.join(v)}" for k, v in error.message_dict.items())
        return " ".join(error.messages)
    return str(error)
