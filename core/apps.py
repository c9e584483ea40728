from django.apps import AppConfig


class CoreConfig(AppConfig):
    """The foundation every other app stands on: accounts, projects and roles, the audit
    log, encryption at rest and the plumbing of background jobs and live updates."""

    name = "core"
    verbose_name = "Core: accounts, projects, roles and the audit log"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from core import checks  # noqa: F401 - registers the key checks
