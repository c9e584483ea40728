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

        # What serving calls when a deployment's rollback rules take a canary off traffic.
        from governance.services.stages import model_version_canary_withdraw
        from serving.hooks import register_canary_withdraw

        register_canary_withdraw(model_version_canary_withdraw)
