from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "training"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # What the housekeeping sweep (core) does after failing a job whose worker died.
        from core.services.jobs import job_lost_register
        from training.models import BaseModelRegistration, TrainingJob
        from training.services.base_models import base_model_registration_lost
        from training.services.jobs import training_job_lost

        job_lost_register(TrainingJob, training_job_lost)
        job_lost_register(BaseModelRegistration, base_model_registration_lost)
