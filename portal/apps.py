from django.apps import AppConfig


class PortalConfig(AppConfig):
    verbose_name = "Portal: the site, its home page, project journey and demo"
    name = "portal"
    default_auto_field = "django.db.models.BigAutoField"
