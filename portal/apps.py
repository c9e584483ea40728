from django.apps import AppConfig


class PortalConfig(AppConfig):
    verbose_name = "Portal: accounts, projects and roles"
    name = "portal"
    default_auto_field = "django.db.models.BigAutoField"
