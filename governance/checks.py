"""System checks: the portal's keys are configured and readable before it serves anything.

Without them it cannot store an item (payloads are encrypted) or sign a dossier; better
that `migrate` and the server refuse to start, naming the setting, than that the first
import fails."""

from django.core.checks import Error, Tags, register
from django.core.exceptions import ImproperlyConfigured

from governance import keys


@register(Tags.security)
def keys_configured(app_configs, **kwargs) -> list[Error]:
    errors = []
    try:
        keys.encryption_keys()
    except ImproperlyConfigured as error:
        errors.append(
            Error(
                str(error),
                hint="Item payloads and uploads are encrypted at rest with these keys.",
                id="governance.E001",
            )
        )
    try:
        keys.signing_key()
    except ImproperlyConfigured as error:
        errors.append(
            Error(
                str(error),
                hint="Deployment dossiers are signed with this key.",
                id="governance.E002",
            )
        )
    return errors
