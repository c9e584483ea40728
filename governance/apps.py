from django.apps import AppConfig


class GovernanceConfig(AppConfig):
    name = "governance"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # What the housekeeping sweep (core) does after failing a build whose worker died.
        from core.services.jobs import job_lost_register
        from governance.models import Dossier
        from governance.services.dossiers import dossier_lost

        job_lost_register(Dossier, dossier_lost)
