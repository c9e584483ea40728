"""Every write of the annotation app. Split by stage; import from here."""

from annotation.services.configuration import (
    SETTINGS_FIELDS,
    annotation_settings_get,
    annotation_settings_update,
    guideline_publish,
    label_schema_publish,
)
from annotation.services.leases import leases_expire, leases_expire_all
from annotation.services.queue import (
    LeaseOffer,
    annotation_submit,
    annotation_undo,
    item_lease_next,
    item_skip,
)
from annotation.services.resolution import (
    adjudication_lease_next,
    adjudication_resolve,
    adjudication_undo,
    item_resolve_by_agreement,
    label_model_apply,
)
from annotation.services.snapshots import snapshot_create, snapshot_create_from_pairs

__all__ = [
    "SETTINGS_FIELDS",
    "LeaseOffer",
    "adjudication_lease_next",
    "adjudication_resolve",
    "adjudication_undo",
    "annotation_settings_get",
    "annotation_settings_update",
    "annotation_submit",
    "annotation_undo",
    "guideline_publish",
    "item_lease_next",
    "item_resolve_by_agreement",
    "item_skip",
    "label_model_apply",
    "label_schema_publish",
    "leases_expire",
    "leases_expire_all",
    "snapshot_create",
    "snapshot_create_from_pairs",
]
