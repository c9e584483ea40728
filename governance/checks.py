"""System checks: the portal's keys are configured and readable before it serves anything.

Without them it cannot store an item (payloads are encrypted) or sign a dossier; better
that `migrate` and the server refuse to start, naming the setting, than that the first
import fails."""

from django.core.checks import Error, Tags, register
from django.core.exceptions import ImproperlyConfigured

from governance import keys

_KEYS = [
    (
        keys.encryption_keys,
        "governance.E001",
        "Item payloads and uploads are encrypted at rest with these keys.",
    ),
    (keys.signing_key, "governance.E002", "Deployment dossiers are signed with this key."),
]


@register(Tags.security)
def keys_configured(app_configs, **kwargs) -> list[Error]:
    errors = []
    for load, check_id, hint in _KEYS:
        try:
            load()
        except ImproperlyConfigured as error:
            errors.append(Error(str(error), hint=hint, id=check_id))
    return errors
