from django.apps import AppConfig


class AnnotationConfig(AppConfig):
    name = "annotation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # What the housekeeping sweep (core) does after failing an import whose worker died.
        from annotation.models import DatasetUpload
        from annotation.services.datasets import dataset_upload_lost
        from core.services.jobs import job_lost_register

        job_lost_register(DatasetUpload, dataset_upload_lost)
