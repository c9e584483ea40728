"""System checks: the portal's keys are configured and readable before it serves anything.

Without them it cannot store an item (payloads are encrypted) or sign a dossier; better
that `migrate` and the server refuse to start, naming the setting, than that the first
import fails. A warning, too, for a system library pip cannot install and whose absence
would go unnoticed."""

import ctypes.util
from collections.abc import Callable

from django.core.checks import Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured

from core import keys

_KEYS: list[tuple[Callable[[], object], str, str]] = [
    (
        keys.encryption_keys,
        "governance.E001",
        "Item payloads and uploads are encrypted at rest with these keys.",
    ),
    (keys.signing_key, "governance.E002", "Deployment dossiers are signed with this key."),
    (
        keys.audit_checkpoint_key,
        "governance.E003",
        "Checkpoints of the audit log are signed with this key.",
    ),
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


SYSTEM_LIBRARIES = [
    (
        "harfbuzz-subset",
        "governance.W001",
        "Without it WeasyPrint subsets the dossier PDF's fonts with fontTools, whose output "
        "differs from one build to the next, so a rebuilt dossier is not byte-identical. "
        "Install Debian's libharfbuzz-subset0 (scripts/ensure_pdf_libs.sh does).",
    ),
]


def missing_libraries(libraries=SYSTEM_LIBRARIES) -> list[Warning]:
    return [
        Warning(f"The shared library lib{name} is not installed.", hint=hint, id=check_id)
        for name, check_id, hint in libraries
        if ctypes.util.find_library(name) is None
    ]


@register()
def system_libraries_installed(app_configs, **kwargs) -> list[Warning]:
    return missing_libraries()
